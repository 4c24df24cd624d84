"""The safety floor (E028) and catalogue derivations (E029), on the golden catalogue.

The floor is checked semantically: a rule set passes for a contraindication when a patient
known to have only that contraindication is ineligible. These tests show what passes (an
exclusion, an inclusion written as its negation) and what does not (a caution, an exclusion
that also needs an unknown value)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.engine.derive import corrections, derive
from app.engine.diagnostics import Diagnostic
from app.engine.evaluate import Status, decide
from app.engine.inputs import normalise
from app.engine.load import check_rules, load_rules
from app.engine.model import RuleBase
from tests.conftest import GOLDEN_RULES

FLOOR = """\
safety_floor:
  - id: smoking
    title: Current smoking
    when: smoker
    therapies: [hsct]
    policy: test policy §1
  - id: poor-heart
    title: LVEF 30 % or less
    when: lvef_percent <= 30 %
    therapies: [hsct, msc]
    policy: test policy §2
"""


def _rules(tmp_path: Path, *, floor: str = "", features: str = "") -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(GOLDEN_RULES, rules, ignore=shutil.ignore_patterns("tests"))
    catalogue = rules / "features.yaml"
    text = catalogue.read_text(encoding="utf-8").replace("features:\n", floor + "features:\n")
    catalogue.write_text(text + features, encoding="utf-8")
    return rules


def _codes(rules: Path) -> list[tuple[str, int, str]]:
    base, diagnostics = check_rules(rules)
    assert base is None
    return [(d.code.value, d.position.line, d.message) for d in _sorted(diagnostics)]


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.position.file, d.position.line))


def test_a_caution_does_not_meet_the_floor_and_the_rule_set_is_refused(tmp_path: Path) -> None:
    """The demo rule set has smoking as a caution only; its `lvef_percent < 45 %` exclusion
    covers LVEF <= 30 % at both ends tried (30 and 5)."""
    got = _codes(_rules(tmp_path, floor=FLOOR))
    assert [(code, line) for code, line, _ in got] == [("E028", 4)]  # demo's `therapy:`
    assert got[0][2] == (
        "hsct rule sets must exclude on 'Current smoking' (safety floor 'smoking': test "
        "policy §1); with only smoker = true known, demo gives indeterminate, not ineligible: "
        "add an exclusion"
    )


def test_an_inclusion_written_as_the_negation_meets_it(tmp_path: Path) -> None:
    rules = _rules(tmp_path, floor=FLOOR)
    demo = rules / "therapies" / "demo.yaml"
    demo.write_text(
        demo.read_text().replace(
            "exclusions:\n",
            "  - id: not-smoking\n    title: Not smoking\n    when: not smoker\n"
            "    cite: [trial-a]\n    source: Trial A\n    evidence: verified\nexclusions:\n",
            1,
        )
    )
    base, diagnostics = check_rules(rules)
    assert diagnostics == []
    assert base is not None
    assert [f.id for f in base.floor] == ["smoking", "poor-heart"]
    assert base.floor[1].witnesses == (("lvef_percent", 30.0), ("lvef_percent", 5.0))


def test_the_floor_tries_both_ends_of_a_numeric_contraindication(tmp_path: Path) -> None:
    """`lvef_percent <= 30 %` is tried at 30 and at the bottom of the range (5): an exclusion
    below 20 % would catch 5 but not 30, and is reported."""
    rules = _rules(
        tmp_path,
        floor=FLOOR.split("  - id: poor-heart", maxsplit=1)[0].replace(
            "when: smoker", "when: lvef_percent <= 30 %"
        ),
    )
    demo = rules / "therapies" / "demo.yaml"
    demo.write_text(demo.read_text().replace("lvef_percent < 45 %", "lvef_percent < 20 %"))
    got = _codes(rules)
    assert [code for code, _, _ in got] == ["E028"]
    assert "with only lvef_percent = 30 known" in got[0][2]


def test_a_floor_entry_must_be_one_inclusive_comparison(tmp_path: Path) -> None:
    rules = _rules(tmp_path, floor=FLOOR.replace("lvef_percent <= 30 %", "lvef_percent < 30 %"))
    got = _codes(rules)
    assert ("E028", 11) in [(code, line) for code, line, _ in got]
    assert any("one yes/no feature or one inclusive comparison" in m for _, _, m in got)


def test_a_floor_entry_naming_an_unknown_fragment_is_refused(tmp_path: Path) -> None:
    floor = FLOOR.replace("policy: test policy §1", "policy: test policy §1\n    fragment: nope")
    got = _codes(_rules(tmp_path, floor=floor))
    assert ("E024", 9) in [(code, line) for code, line, _ in got]


DERIVED = """\
  - id: prior_alkylator
    type: boolean
    label: Prior alkylator
    description: Any alkylating agent.
    group: prior_treatment
    derive:
      - when: score > 0
        value: true
        because: a positive score means an alkylator was given
"""


@pytest.fixture
def derived(tmp_path: Path) -> RuleBase:
    return load_rules(_rules(tmp_path, features=DERIVED))


def test_a_derived_value_fills_an_unknown_one_and_says_why(derived: RuleBase) -> None:
    values = derive(normalise({"score": 3}, derived.features), derived.features)
    value = values["prior_alkylator"]
    assert value.value is True
    assert value.provenance.source == "derived"
    assert value.provenance.derivation == (
        "score > 0 (a positive score means an alkylator was given)"
    )


@pytest.mark.parametrize("raw", [{"score": 0}, {}, {"smoker": True}])
def test_nothing_is_derived_when_the_condition_is_false_or_unknown(
    derived: RuleBase, raw: dict[str, object]
) -> None:
    values = derive(normalise(raw, derived.features), derived.features)
    assert "prior_alkylator" not in values


def test_a_given_value_agreeing_with_the_derivation_is_kept_as_given(derived: RuleBase) -> None:
    values = derive(
        normalise({"score": 3, "prior_alkylator": True}, derived.features), derived.features
    )
    assert values["prior_alkylator"].provenance.source == "input"


def test_a_given_value_against_the_derivation_is_replaced_and_reported(
    derived: RuleBase,
) -> None:
    """An implication is a fact about the catalogue: the implied value is used, keeps what
    was given, and says why; `corrections` lists it for the answer."""
    values = derive(
        normalise({"score": 3, "prior_alkylator": False}, derived.features), derived.features
    )
    value = values["prior_alkylator"]
    assert (value.value, value.given_value) == (True, False)
    assert value.provenance.source == "derived"
    assert value.provenance.derivation == (
        "score > 0 (a positive score means an alkylator was given); it replaces the value "
        "given, false"
    )
    assert corrections(values) == [("prior_alkylator", value)]


def test_nothing_is_corrected_when_the_given_value_agrees_or_nothing_is_implied(
    derived: RuleBase,
) -> None:
    for raw in ({"score": 3, "prior_alkylator": True}, {"score": 0, "prior_alkylator": False}):
        values = derive(normalise(raw, derived.features), derived.features)
        assert corrections(values) == []
    implied = derive(normalise({"score": 3}, derived.features), derived.features)
    assert corrections(implied) == []  # derived, but nothing was given against it


def test_the_derived_value_decides_like_a_given_one(derived: RuleBase) -> None:
    ruleset = derived.rulesets["demo"]
    given = normalise({"has_disease": True, "score": 3}, derived.features)
    assert decide(ruleset, derive(given, derived.features)).status is not Status.ELIGIBLE


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (DERIVED.replace("value: true", "value: 3"), "'prior_alkylator' is yes/no"),
        (
            DERIVED + "      - when: smoker\n        value: false\n        because: test\n",
            "the derivations of 'prior_alkylator' imply different values",
        ),
        (DERIVED.replace("score > 0", "scor > 0"), "unknown feature 'scor'"),
        (
            DERIVED.replace("score > 0", "prior_alkylator2")
            + DERIVED.replace("id: prior_alkylator", "id: prior_alkylator2").replace(
                "score > 0", "prior_alkylator"
            ),
            "derivation cycle: prior_alkylator -> prior_alkylator2 -> prior_alkylator",
        ),
    ],
)
def test_bad_derivations_are_refused_at_load(tmp_path: Path, entry: str, message: str) -> None:
    got = _codes(_rules(tmp_path, features=entry))
    assert any(message in m for _, _, m in got), got


CHAIN = {
    "first": """\
  - id: first_flag
    type: boolean
    label: First
    description: Derived from the second flag being false.
    group: diagnosis
    derive:
      - when: second_flag is false
        value: true
        because: test
""",
    "second": """\
  - id: second_flag
    type: boolean
    label: Second
    description: Derived from a positive score.
    group: diagnosis
    derive:
      - when: score > 0
        value: true
        because: test
""",
}


@pytest.mark.parametrize("order", [("first", "second"), ("second", "first")])
def test_a_replaced_value_is_settled_before_what_reads_it_in_any_catalogue_order(
    tmp_path: Path, order: tuple[str, str]
) -> None:
    """second_flag given false but implied true (score 3): first_flag's condition reads the
    settled second_flag, so it does not hold and first_flag keeps its given false, whichever
    of the two the catalogue lists first."""
    rules = load_rules(_rules(tmp_path, features="".join(CHAIN[name] for name in order)))
    raw = {"score": 3, "first_flag": False, "second_flag": False}
    values = derive(normalise(raw, rules.features), rules.features)
    assert (values["first_flag"].value, values["second_flag"].value) == (False, True)
    assert [ident for ident, _ in corrections(values)] == ["second_flag"]
