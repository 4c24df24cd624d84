"""Shared fragments: included criteria, their origin, the hash and snapshots; and the stable
diagnostics for an unknown fragment, an include cycle, an id clash and a fragment of another
therapy (E024-E027), each at the file:line:col an author must edit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.engine import present
from app.engine.diagnostics import Diagnostic
from app.engine.diff import diff_rules
from app.engine.evaluate import Status, decide
from app.engine.inputs import normalise
from app.engine.load import check_rules, load_rules, rebuild
from app.engine.model import RuleBase
from tests.conftest import GOLDEN_RULES

GENERAL = """\
id: general
title: General contraindications
applies_to: every therapy of the demo
therapies: [hsct, msc]
source: Guideline B Table 1
include: [{include}]
exclusions:
  - id: organ-b
    title: Organ B involved
    when: organ_b
    cite: [guideline-b]
    source: Guideline B Table 1
    evidence: verified
"""

BASE = """\
id: base
title: Base criteria
applies_to: all demo rule sets
therapies: [hsct, msc, car_t]
source: Guideline B
cautions:
  - id: old-age
    title: Age over 60
    when: age_years > 60
    cite: [guideline-b]
    source: Guideline B Table 2
    evidence: partial
"""


def _rules(tmp_path: Path, fragments: dict[str, str], include: str = "[general]") -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(GOLDEN_RULES, rules, ignore=shutil.ignore_patterns("tests"))
    (rules / "fragments").mkdir()
    for name, text in fragments.items():
        (rules / "fragments" / f"{name}.yaml").write_text(text, encoding="utf-8")
    demo = rules / "therapies" / "demo.yaml"
    text = demo.read_text(encoding="utf-8")
    demo.write_text(
        text.replace("indication_criterion:", f"include: {include}\nindication_criterion:", 1),
        encoding="utf-8",
    )
    return rules


def _diagnostics(rules: Path) -> list[Diagnostic]:
    base, diagnostics = check_rules(rules)
    assert base is None
    return sorted(diagnostics, key=lambda d: (d.position.file, d.position.line, d.code))


@pytest.fixture
def included(tmp_path: Path) -> RuleBase:
    rules = _rules(tmp_path, {"general": GENERAL.format(include="base"), "base": BASE})
    return load_rules(rules)


def test_included_criteria_follow_the_rule_sets_own_with_their_origin(
    included: RuleBase,
) -> None:
    demo = included.rulesets["demo"]
    assert [c.id for c in demo.exclusions] == ["lvef", "pao2", "creatinine", "organ-b"]
    assert [c.id for c in demo.cautions] == ["smoker", "old-age"]
    assert demo.includes == ("general", "base")
    organ_b = demo.exclusions[-1]
    assert organ_b.origin is not None
    assert organ_b.origin.label(organ_b.source) == (
        "applies to every therapy of the demo: Guideline B Table 1"
    )
    assert demo.exclusions[0].origin is None
    assert "guideline-b" in demo.citations


def test_an_included_exclusion_decides_and_the_answer_says_where_it_comes_from(
    included: RuleBase,
) -> None:
    demo = included.rulesets["demo"]
    values = normalise({"has_disease": True, "organ_b": True}, included.features)
    decision = decide(demo, values)
    assert decision.status is Status.INELIGIBLE
    answer = present.decision(decision, included)
    assert answer["reasons"] == ["organ-b"]
    organ_b = next(c for c in answer["criteria"] if c["id"] == "organ-b")
    assert organ_b["origin"] == {
        "fragment": "general",
        "title": "General contraindications",
        "applies_to": "every therapy of the demo",
        "label": "applies to every therapy of the demo: Guideline B Table 1",
    }
    assert next(c for c in answer["criteria"] if c["id"] == "lvef")["origin"] is None
    assert present.ruleset_detail(demo, included)["includes"] == ["general", "base"]


def test_a_fragment_reached_twice_is_applied_once(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        {"general": GENERAL.format(include="base"), "base": BASE},
        include="[general, base]",
    )
    demo = load_rules(rules).rulesets["demo"]
    assert [c.id for c in demo.cautions] == ["smoker", "old-age"]


def test_a_changed_fragment_changes_the_hash_of_every_rule_set_that_includes_it(
    tmp_path: Path, included: RuleBase
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    changed = GENERAL.format(include="base").replace("when: organ_b", "when: organ_a")
    rules = _rules(other, {"general": changed, "base": BASE})
    assert load_rules(rules).rulesets["demo"].hash != included.rulesets["demo"].hash


def test_the_snapshot_holds_the_fragments_and_rebuilds_the_same_rule_set(
    included: RuleBase,
) -> None:
    demo = included.rulesets["demo"]
    assert set(demo.snapshot["fragments"]) == {"general", "base"}
    stored = json.loads(json.dumps(demo.snapshot))
    again = rebuild(stored, demo.hash).rulesets["demo"]
    assert again.hash == demo.hash
    assert [(c.id, c.origin) for c in again.deciding] == [(c.id, c.origin) for c in demo.deciding]


def test_a_snapshot_stored_before_fragments_existed_still_replays() -> None:
    """A decision recorded by release 1 (rule set 1.0.0, no `include`, no `fragments` part):
    its snapshot lacks fields this release dumps with defaults, and is still its version."""
    stored = json.loads(
        (Path(__file__).parent / "fixtures" / "snapshot-astis-1.0.0.json").read_text()
    )
    ruleset = rebuild(stored["snapshot"], stored["hash"]).rulesets["hsct-ssc-astis"]
    assert (ruleset.version, ruleset.hash, ruleset.includes) == ("1.0.0", stored["hash"], ())
    assert "pregnant" in [c.id for c in ruleset.cautions]  # as it was then


def test_unknown_fragments_are_named_where_they_are_included(tmp_path: Path) -> None:
    rules = _rules(tmp_path, {"general": GENERAL.format(include="bsae")}, "[general, nope]")
    got = [(d.code.value, Path(d.position.file).name, d.position.line) for d in _diagnostics(rules)]
    assert got == [("E024", "general.yaml", 6), ("E024", "demo.yaml", 11)]
    messages = [d.message for d in _diagnostics(rules)]
    assert "unknown fragment 'bsae' (did you mean 'base'?)" not in messages[0]  # no such file
    assert messages[0].startswith("unknown fragment 'bsae'; fragments: general")
    assert messages[1].startswith("unknown fragment 'nope'")


def test_an_include_cycle_is_reported_once_with_its_path(tmp_path: Path) -> None:
    base = BASE.replace("source: Guideline B\n", "source: Guideline B\ninclude: [general]\n")
    rules = _rules(tmp_path, {"general": GENERAL.format(include="base"), "base": base})
    diagnostics = _diagnostics(rules)
    assert [d.code.value for d in diagnostics] == ["E025"]
    assert diagnostics[0].message == "include cycle: base -> general -> base"
    position = diagnostics[0].position
    assert (Path(position.file).name, position.line) == ("general.yaml", 6)  # its `include`


def test_a_criterion_id_clash_points_at_both(tmp_path: Path) -> None:
    clash = BASE.replace("id: old-age", "id: smoker")
    rules = _rules(tmp_path, {"base": clash}, include="[base]")
    diagnostics = _diagnostics(rules)
    assert [d.code.value for d in diagnostics] == ["E026"]
    assert Path(diagnostics[0].position.file).name == "demo.yaml"
    assert "'smoker' of included fragment 'base'" in diagnostics[0].message
    assert "rules/fragments/base.yaml:7:9)" in diagnostics[0].message
    assert "clashes with the one at " in diagnostics[0].message
    assert diagnostics[0].position.line == 61  # the rule set's own `smoker`, to rename


def test_a_fragment_of_another_therapy_is_refused(tmp_path: Path) -> None:
    msc_only = GENERAL.format(include="").replace("[hsct, msc]", "[msc]")
    rules = _rules(tmp_path, {"general": msc_only})
    diagnostics = _diagnostics(rules)
    assert [d.code.value for d in diagnostics] == ["E027"]
    assert "applies to msc in ssc, sle, not to hsct in ssc" in diagnostics[0].message


def test_a_fragment_of_another_indication_is_refused(tmp_path: Path) -> None:
    sle_only = GENERAL.format(include="").replace(
        "therapies: [hsct, msc]", "therapies: [hsct, msc]\nindications: [sle]"
    )
    rules = _rules(tmp_path, {"general": sle_only})
    assert [d.code.value for d in _diagnostics(rules)] == ["E027"]


def test_the_diff_shows_a_fragment_change_in_every_rule_set_that_includes_it(
    tmp_path: Path, included: RuleBase
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    stricter = BASE.replace("age_years > 60", "age_years > 65")
    rules = _rules(
        other, {"general": GENERAL.format(include=""), "base": stricter}, "[general, base]"
    )
    changes = [str(c) for c in diff_rules(included, load_rules(rules))]
    assert "~ threshold old-age: age_years > 60 a -> age_years > 65 a" in changes


def test_the_diff_shows_a_criterion_moved_into_a_fragment(tmp_path: Path) -> None:
    plain = load_rules(GOLDEN_RULES)
    moved = (
        GENERAL.format(include="")
        .replace("id: organ-b", "id: smoker")
        .replace("when: organ_b", "when: smoker")
    )
    rules = _rules(tmp_path, {"general": moved})
    demo = rules / "therapies" / "demo.yaml"
    text = demo.read_text()
    demo.write_text(
        text[: text.index("cautions:")] + "cautions: []\n" + text[text.index("risks:") :]
    )
    changes = [str(c) for c in diff_rules(plain, load_rules(rules))]
    assert "~ ruleset demo.includes: [] -> [general]" in changes
    assert "~ criterion smoker.kind: caution -> exclusion" in changes
    assert "~ criterion smoker.origin: the rule set -> fragment general" in changes
