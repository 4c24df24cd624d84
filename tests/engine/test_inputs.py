"""Input normalisation: every bad-input class is refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine.inputs import InvalidInput, normalise
from app.engine.model import RuleBase


def issues(rules: RuleBase, features: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as info:
        normalise(features, rules.features)
    return [(i.field, i.code) for i in info.value.issues]


def test_canonical_numbers_booleans_enums_and_nulls(golden_rules: RuleBase) -> None:
    values = normalise(
        {"age_years": 40, "has_disease": True, "subtype": "diffuse", "smoker": None},
        golden_rules.features,
    )
    assert values["age_years"].value == 40.0
    assert values["age_years"].unit == "a"
    assert values["has_disease"].value is True
    assert values["subtype"].value == "diffuse"
    assert "smoker" not in values  # null is unknown


def test_quantities_are_converted_and_keep_what_was_given(golden_rules: RuleBase) -> None:
    values = normalise(
        {
            "serum_creatinine": {"value": 88.4, "unit": "umol/L"},
            "age_years": {"value": 600, "unit": "mo"},
        },
        golden_rules.features,
    )
    assert values["serum_creatinine"].value == pytest.approx(0.99998)
    assert values["serum_creatinine"].unit == "mg/dL"
    assert (values["serum_creatinine"].given_value, values["serum_creatinine"].given_unit) == (
        88.4,
        "umol/L",
    )
    assert values["age_years"].value == 50.0


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ({"lvef": 50}, ("features.lvef", "unknown_feature")),
        ({"lvef_percent": "52"}, ("features.lvef_percent", "wrong_type")),
        ({"lvef_percent": True}, ("features.lvef_percent", "wrong_type")),
        ({"lvef_percent": [52]}, ("features.lvef_percent", "wrong_type")),
        ({"lvef_percent": float("nan")}, ("features.lvef_percent", "not_finite")),
        ({"lvef_percent": float("inf")}, ("features.lvef_percent", "not_finite")),
        ({"lvef_percent": 95}, ("features.lvef_percent", "out_of_range")),
        ({"lvef_percent": 4.99}, ("features.lvef_percent", "out_of_range")),
        (
            {"age_years": {"value": 1500, "unit": "mo"}},
            ("features.age_years.value", "out_of_range"),
        ),
        ({"has_disease": "yes"}, ("features.has_disease", "wrong_type")),
        ({"has_disease": 1}, ("features.has_disease", "wrong_type")),
        ({"subtype": "sine"}, ("features.subtype", "unknown_value")),
        ({"subtype": 1}, ("features.subtype", "wrong_type")),
        ({"pao2_mmhg": {"value": 8, "unit": "mg"}}, ("features.pao2_mmhg.unit", "unit")),
        ({"pao2_mmhg": {"value": 8, "unit": "kPaa"}}, ("features.pao2_mmhg.unit", "unit")),
        ({"pao2_mmhg": {"value": 8}}, ("features.pao2_mmhg.unit", "wrong_type")),
        ({"pao2_mmhg": {"value": "8", "unit": "kPa"}}, ("features.pao2_mmhg.value", "wrong_type")),
        (
            {"pao2_mmhg": {"value": 8, "unit": "kPa", "when": "x"}},
            ("features.pao2_mmhg", "unknown_key"),
        ),
        ({"score": {"value": 3, "unit": "1"}}, ("features.score.unit", "unit")),
        (
            {"serum_creatinine": {"value": 1, "unit": "mol"}},
            ("features.serum_creatinine.unit", "unit"),
        ),
    ],
)
def test_bad_values_name_the_field(
    golden_rules: RuleBase, features: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert issues(golden_rules, features) == [expected]


def test_every_problem_is_reported_at_once(golden_rules: RuleBase) -> None:
    got = issues(golden_rules, {"lvef_percent": 200, "nope": 1, "smoker": "no", "age_years": 40})
    assert got == [
        ("features.lvef_percent", "out_of_range"),
        ("features.nope", "unknown_feature"),
        ("features.smoker", "wrong_type"),
    ]


def test_out_of_range_message_shows_the_conversion(golden_rules: RuleBase) -> None:
    with pytest.raises(InvalidInput, match=r"1500 mo \(= 125 a\) is outside the plausible range"):
        normalise({"age_years": {"value": 1500, "unit": "mo"}}, golden_rules.features)
