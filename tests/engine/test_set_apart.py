"""run.set_apart: which decisions stand apart as not assessed, read from the decisions."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine.derive import derive
from app.engine.inputs import normalise
from app.engine.model import RuleBase
from app.engine.run import evaluate_all, set_apart


def apart(rules: RuleBase, features: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    values = derive(normalise(features, rules.features), rules.features)
    decisions = evaluate_all(list(rules.rulesets.values()), values)
    return {d.ruleset.id: a for d, a in zip(decisions, set_apart(decisions), strict=True) if a}


def test_ssc_recorded_sets_the_undecided_lupus_protocols_apart(shipped_rules: RuleBase) -> None:
    found = apart(shipped_rules, {"ssc_diagnosis": True})
    assert found == {
        "car-t-sle": ("ssc",),
        "hsct-sle-burt-2006": ("ssc",),
        "msc-sle-wang-2014": ("ssc",),
    }  # the nephritis trial excludes SSc: ruled out, assessed


def test_sle_recorded_sets_the_ssc_protocols_apart(shipped_rules: RuleBase) -> None:
    found = apart(shipped_rules, {"sle_diagnosis": True})
    ssc = [r.id for r in shipped_rules.rulesets.values() if r.indication == "ssc"]
    assert set(found) <= set(ssc)
    assert found
    assert all(a == ("sle",) for a in found.values())


@pytest.mark.parametrize(
    "features",
    [
        {},  # nothing known: record the diagnosis first
        {"age_years": 40},
        {"sle_diagnosis": True, "ssc_diagnosis": False},  # not_indicated, not set apart
        {"sle_diagnosis": True, "ssc_diagnosis": True},
        {"sle_diagnosis": False, "ssc_diagnosis": True},
    ],
)
def test_nothing_is_set_apart_without_one_diagnosis_met_and_the_other_unknown(
    shipped_rules: RuleBase, features: dict[str, Any]
) -> None:
    assert apart(shipped_rules, features) == {}


def test_a_rule_set_asked_for_alone_is_never_set_apart(shipped_rules: RuleBase) -> None:
    values = derive(
        normalise({"ssc_diagnosis": True}, shipped_rules.features), shipped_rules.features
    )
    (decision,) = evaluate_all([shipped_rules.rulesets["car-t-sle"]], values)
    assert set_apart([decision]) == [()]
