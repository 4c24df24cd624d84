"""Statuses, missing features and the trace, on the golden demo rule set."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine import present
from app.engine.evaluate import Decision, Result, Status, decide
from app.engine.inputs import normalise
from app.engine.model import RuleBase
from tests.demo_patients import DEMO_CANDIDATE


def run(rules: RuleBase, **changes: Any) -> Decision:
    features = {k: v for k, v in {**DEMO_CANDIDATE, **changes}.items() if v is not None}
    return decide(rules.rulesets["demo"], normalise(features, rules.features))


def results(decision: Decision) -> dict[str, str]:
    return {r.criterion.id: r.result.value for r in (*decision.criteria, *decision.cautions)}


def test_clear_candidate_is_eligible(golden_rules: RuleBase) -> None:
    decision = run(golden_rules)
    assert decision.status is Status.ELIGIBLE
    assert decision.missing == ()
    assert {r.result for r in decision.criteria} <= {Result.MET, Result.NOT_MET}


def test_other_disease_is_not_indicated_even_when_other_things_fail(
    golden_rules: RuleBase,
) -> None:
    decision = run(golden_rules, has_disease=False, lvef_percent=30)
    assert decision.status is Status.NOT_INDICATED
    assert present.decision(decision, golden_rules)["reasons"] == ["disease"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"age_years": 17.9}, "age"),
        ({"age_years": 65.1}, "age"),
        ({"subtype": "limited"}, "subtype"),
        ({"score": 14}, "skin-and-organ"),
        ({"organ_a": False}, "skin-and-organ"),
        ({"lvef_percent": 44.9}, "lvef"),
        ({"pao2_mmhg": {"value": 7.9, "unit": "kPa"}}, "pao2"),
        ({"serum_creatinine": {"value": 178, "unit": "umol/L"}}, "creatinine"),
    ],
)
def test_each_criterion_can_exclude(
    golden_rules: RuleBase, changes: dict[str, Any], reason: str
) -> None:
    decision = run(golden_rules, **changes)
    assert decision.status is Status.INELIGIBLE
    assert present.decision(decision, golden_rules)["reasons"] == [reason]


@pytest.mark.parametrize(
    "changes",
    [
        {"age_years": 18},
        {"age_years": 65},
        {"lvef_percent": 45},
        {"score": 14.5},
        {"pao2_mmhg": {"value": 8, "unit": "kPa"}},
        {"serum_creatinine": {"value": 177, "unit": "umol/L"}},
    ],
)
def test_values_exactly_on_inclusive_thresholds_pass(
    golden_rules: RuleBase, changes: dict[str, Any]
) -> None:
    assert run(golden_rules, **changes).status is Status.ELIGIBLE


def test_missing_deciding_value_is_indeterminate_never_eligible(golden_rules: RuleBase) -> None:
    decision = run(golden_rules, lvef_percent=None)
    assert decision.status is Status.INDETERMINATE
    assert decision.missing == ("lvef_percent",)


def test_missing_lists_only_features_that_could_decide(golden_rules: RuleBase) -> None:
    # organ_a is false, so organ_b decides the any(); score is known and met.
    decision = run(golden_rules, organ_a=False, organ_b=None, age_years=None)
    assert decision.status is Status.INDETERMINATE
    assert decision.missing == ("age_years", "organ_b")


def test_known_value_inside_an_or_makes_the_other_irrelevant(golden_rules: RuleBase) -> None:
    decision = run(golden_rules, organ_a=True, organ_b=None)
    assert decision.status is Status.ELIGIBLE


def test_missing_data_does_not_matter_once_excluded(golden_rules: RuleBase) -> None:
    decision = run(golden_rules, lvef_percent=30, age_years=None, score=None)
    assert decision.status is Status.INELIGIBLE
    assert decision.missing == ()
    assert results(decision)["age"] == "unknown"


def test_unknown_indication_with_nothing_excluding_is_indeterminate(
    golden_rules: RuleBase,
) -> None:
    decision = run(golden_rules, has_disease=None)
    assert decision.status is Status.INDETERMINATE
    assert decision.missing == ("has_disease",)


def test_cautions_are_reported_but_never_decide(golden_rules: RuleBase) -> None:
    decision = run(golden_rules, smoker=True)
    assert decision.status is Status.ELIGIBLE
    assert decision.cautions[0].result is Result.MET
    unknown = run(golden_rules)
    assert unknown.cautions[0].result is Result.UNKNOWN
    assert unknown.status is Status.ELIGIBLE


def test_trace_has_values_units_thresholds_margins_and_citations(golden_rules: RuleBase) -> None:
    out = present.decision(run(golden_rules, pao2_mmhg={"value": 9, "unit": "kPa"}), golden_rules)
    pao2 = next(c for c in out["criteria"] if c["id"] == "pao2")
    assert pao2["result"] == "not_met"
    assert pao2["kind"] == "exclusion"
    assert pao2["citations"] == ["trial-a"]
    (use,) = pao2["features"]
    assert use["feature"] == "pao2_mmhg"
    assert use["unit"] == "mm[Hg]"
    assert use["threshold"] == pytest.approx(60.0049261)
    assert use["value"] == pytest.approx(67.5055418)
    assert use["margin"] == pytest.approx(67.5055418 - 60.0049261)
    assert use["given"] == {"value": 9, "unit": "kPa"}
    assert use["provenance"] == {"source": "input"}
    age = next(c for c in out["criteria"] if c["id"] == "age")
    assert age["features"][0]["threshold"] == {"low": 18.0, "high": 65.0}
    assert age["features"][0]["margin"] == 22.0  # 40 is 22 from the nearer bound
    subtype = next(c for c in out["criteria"] if c["id"] == "subtype")
    assert subtype["features"][0]["threshold"] == ["diffuse"]
    assert [c["id"] for c in out["citations"]] == ["trial-a", "guideline-b"]
    assert out["risks"][0]["figure"] == "5 %"


def test_structured_expression_is_rendered_for_reviewers(golden_rules: RuleBase) -> None:
    criterion = next(
        c for c in golden_rules.rulesets["demo"].inclusions if c.id == "skin-and-organ"
    )
    assert criterion.text == "score > 14 and (organ_a or organ_b)"
    assert criterion.features == ("score", "organ_a", "organ_b")
