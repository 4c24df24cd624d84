"""Input normalisation: every bad-input class is refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine.derive import corrections
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
    with pytest.raises(
        InvalidInput,
        match=r"1500 months \(= 125 years\) is outside the plausible range 0–120 years",
    ):
        normalise({"age_years": {"value": 1500, "unit": "mo"}}, golden_rules.features)


@pytest.mark.parametrize(
    ("feature", "given", "hint"),
    [
        ("pao2_mmhg", 11.5, "read in kPa it would be about 86.3 mmHg"),
        ("pao2_mmhg", {"value": 11.5, "unit": "mmHg"}, "read in kPa it would be about 86.3 mmHg"),
        ("serum_creatinine", 88, "read in µmol/L it would be about 0.995 mg/dL"),
    ],
)
def test_a_value_plausible_only_in_another_unit_is_refused_naming_that_unit(
    shipped_rules: RuleBase, feature: str, given: Any, hint: str
) -> None:
    """A PaO2 in kPa typed where mmHg is read: refused (never converted on a guess), and the
    message names the unit it is plausible in, for the sender to give."""
    with pytest.raises(InvalidInput) as refused:
        normalise({feature: given}, shipped_rules.features)
    (issue,) = refused.value.issues
    assert issue.code == "out_of_range"
    assert f"; {hint}: if it was measured in " in issue.message


@pytest.mark.parametrize(
    ("feature", "given"),
    [("lvef_percent", 150), ("pao2_mmhg", 1000), ("pao2_mmhg", {"value": 1, "unit": "kPa"})],
)
def test_a_value_plausible_in_no_unit_gets_no_hint(
    shipped_rules: RuleBase, feature: str, given: Any
) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalise({feature: given}, shipped_rules.features)
    (issue,) = refused.value.issues
    assert issue.code == "out_of_range"
    assert "read in" not in issue.message


def test_a_fractional_age_is_rounded_down_to_completed_years_and_says_so(
    shipped_rules: RuleBase,
) -> None:
    """`age_years` counts completed years (`integer: completed`), as FHIR's birthDate gives it:
    65.5 is 65, and the value keeps what was given and why, for the answer's corrections."""
    for given, shown in [
        (65.5, "65.5 years"),
        ({"value": 65.5, "unit": "years"}, "65.5 years"),
        ({"value": 786, "unit": "mo"}, "786 months (= 65.5 years)"),
    ]:
        value = normalise({"age_years": given}, shipped_rules.features)["age_years"]
        assert value.value == 65.0
        assert value.provenance.source == "input"
        assert value.provenance.replaced == shown
        assert value.provenance.derivation == (
            f"age_years counts completed years: {shown} is taken as 65"
        )
    (correction,) = corrections(normalise({"age_years": 65.999}, shipped_rules.features))
    assert correction[1].value == 65.0
    for whole in (65, 65.0, {"value": 780, "unit": "mo"}):
        value = normalise({"age_years": whole}, shipped_rules.features)["age_years"]
        assert value.value == 65.0
        assert value.provenance.replaced is None


def test_the_range_is_checked_on_the_value_given(shipped_rules: RuleBase) -> None:
    """120.5 years is outside 0–120 before any rounding down, as SQL screening checks it."""
    assert issues(shipped_rules, {"age_years": 120.5}) == [("features.age_years", "out_of_range")]


@pytest.mark.parametrize(
    ("feature", "fraction", "whole"),
    [
        ("failed_immunosuppressants", 2.5, 2),
        ("prior_cyclophosphamide_iv_courses", 6.5, 6),
        ("ecog", 1.5, 1),
        ("nyha_class", 2.5, 2),
        ("who_functional_class", 3.5, 3),
        ("sledai_2k", 6.5, 6),
    ],
)
def test_a_fractional_count_score_or_class_is_refused(
    shipped_rules: RuleBase, feature: str, fraction: float, whole: int
) -> None:
    """`integer: exact`: no rule says how to round half a course or ECOG 1.5, so the value is
    refused (never judged silently); the same value as a whole number is taken."""
    with pytest.raises(InvalidInput) as raised:
        normalise({feature: fraction}, shipped_rules.features)
    (issue,) = raised.value.issues
    assert (issue.field, issue.code) == (f"features.{feature}", "not_whole")
    assert "is not a whole number" in issue.message
    label = shipped_rules.features[feature].spec.label
    assert issue.message.endswith(f"{label} has no fractions")
    for good in (whole, float(whole)):
        assert normalise({feature: good}, shipped_rules.features)[feature].value == whole
    with pytest.raises(InvalidInput) as raised:
        normalise({feature: {"value": fraction, "unit": "1"}}, shipped_rules.features)
    assert raised.value.issues[0].field in (f"features.{feature}.value", f"features.{feature}.unit")


def test_the_mrss_may_be_an_average_of_two_examiners(shipped_rules: RuleBase) -> None:
    """mRSS has no `integer`: trials average two examiners' scores."""
    assert normalise({"mrss": 15.5}, shipped_rules.features)["mrss"].value == 15.5
