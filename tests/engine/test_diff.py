"""`diff_rules` and `cohort_changes` on the golden demo rules and edited copies of them."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.engine.diff import ChangeKind, cohort_changes, diff_rules
from app.engine.evaluate import Status
from app.engine.inputs import normalise
from app.engine.load import load_rules
from app.engine.model import RuleBase
from tests.conftest import GOLDEN_RULES
from tests.demo_patients import DEMO_CANDIDATE


def _edited(tmp_path: Path, edits: dict[str, list[tuple[str, str]]]) -> RuleBase:
    target = tmp_path / "rules"
    shutil.copytree(GOLDEN_RULES, target)
    for name, replacements in edits.items():
        path = target / name
        text = path.read_text(encoding="utf-8")
        for old, new in replacements:
            assert old in text, old
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    return load_rules(target)


def _lines(old: RuleBase, new: RuleBase) -> list[str]:
    return [f"{c.ruleset} {c}" for c in diff_rules(old, new)]


def test_identical_rules_have_no_changes(golden_rules: RuleBase, tmp_path: Path) -> None:
    assert diff_rules(golden_rules, _edited(tmp_path, {})) == []


def test_a_threshold_rewritten_in_another_unit_is_no_change(
    golden_rules: RuleBase, tmp_path: Path
) -> None:
    # 177 umol/L of creatinine (113.12 g/mol) is 2.002224 mg/dL.
    new = _edited(
        tmp_path,
        {
            "therapies/demo.yaml": [
                ("serum_creatinine > 177 umol/L", "serum_creatinine > 2.002224 mg/dL")
            ]
        },
    )
    assert new.rulesets["demo"].hash != golden_rules.rulesets["demo"].hash  # the text changed
    assert diff_rules(golden_rules, new) == []  # the meaning did not


def test_each_kind_of_change_is_named(golden_rules: RuleBase, tmp_path: Path) -> None:
    new = _edited(
        tmp_path,
        {
            "therapies/demo.yaml": [
                ("version: 1.0.0", "version: 1.1.0"),
                ("lvef_percent < 45 %", "lvef_percent < 50 %"),
                ("- any: [organ_a, organ_b]", "- organ_a"),
                ("when: smoker\n    cite: [guideline-b]", "when: smoker\n    cite: [trial-a]"),
                ("figure: 5 %", "figure: 7 %"),
            ],
            "evidence.yaml": [("title: Trial A,", "title: Trial A (final report),")],
            "features.yaml": [("range: [0, 51]", "range: [0, 60]")],
        },
    )
    assert _lines(golden_rules, new) == [
        "None ~ feature score.range: [0.0, 51.0] -> [0.0, 60.0]",
        "None ~ evidence trial-a.title: Trial A -> Trial A (final report)",
        "demo ~ ruleset demo.version: 1.0.0 -> 1.1.0",
        "demo ~ logic skin-and-organ: score > 14 and (organ_a or organ_b)"
        " -> score > 14 and organ_a",
        "demo ~ threshold lvef: lvef_percent < 45 % -> lvef_percent < 50 %",
        "demo ~ citations smoker: [guideline-b] -> [trial-a]",
        "demo ~ risk trm.figure: 5 % -> 7 %",
    ]


def test_added_and_removed_criteria_and_rule_sets(golden_rules: RuleBase, tmp_path: Path) -> None:
    new = _edited(
        tmp_path,
        {
            "therapies/demo.yaml": [
                (
                    "  - id: smoker\n    title: Current smoker",
                    "  - id: tobacco\n    title: Tobacco",
                ),
            ]
        },
    )
    changes = diff_rules(golden_rules, new)
    assert [(c.subject, c.ident, c.kind) for c in changes] == [
        ("caution", "smoker", ChangeKind.REMOVED),
        ("caution", "tobacco", ChangeKind.ADDED),
    ]
    gone = RuleBase(golden_rules.features, golden_rules.evidence, {}, "sha256:none")
    (removed,) = diff_rules(golden_rules, gone)
    assert (removed.subject, removed.kind, removed.old) == (
        "ruleset",
        ChangeKind.REMOVED,
        "Demo rule set for the language tests",
    )


def test_cohort_changes_lists_patients_whose_status_moves(
    golden_rules: RuleBase, tmp_path: Path
) -> None:
    new = _edited(
        tmp_path, {"therapies/demo.yaml": [("lvef_percent < 45 %", "lvef_percent < 50 %")]}
    )
    base = {k: v for k, v in DEMO_CANDIDATE.items() if k != "lvef_percent"}
    patients = {
        "moves": {**base, "lvef_percent": 47},
        "stays-eligible": {**base, "lvef_percent": 60},
        "stays-ineligible": {**base, "lvef_percent": 30},
        "unknown-lvef": base,
    }
    rows = [
        (ident, normalise(raw, golden_rules.features), normalise(raw, new.features))
        for ident, raw in patients.items()
    ]
    (change,) = cohort_changes(golden_rules, new, rows)
    assert (change.patient, change.ruleset, change.old, change.new, change.reasons) == (
        "moves",
        "demo",
        Status.ELIGIBLE,
        Status.INELIGIBLE,
        ("lvef",),
    )
