"""Form fields <-> the engine's input: what a form can get wrong before the engine sees it,
the engine's issues put back by field, and recorded values shown again as typed."""

from __future__ import annotations

import pytest

from app.engine.derive import derive
from app.engine.inputs import (
    InputIssue,
    InvalidInput,
    normalise,
    values_to_json,
    values_to_record,
)
from app.engine.model import RuleBase
from app.web import forms


def test_empty_is_unknown_and_values_are_read(shipped_rules: RuleBase) -> None:
    parsed = forms.parse(
        [
            ("age_years", " 45 "),
            ("dlco_percent_predicted", ""),
            ("ild_present", "yes"),
            ("current_smoker", "no"),
            ("pregnant", ""),
            ("ssc_subtype", "diffuse_cutaneous"),
            ("pao2_mmhg", "11,5"),
            ("pao2_mmhg.unit", "kPa"),
            ("csrf_token", "x"),
        ],
        shipped_rules.features,
    )
    assert parsed.errors == {}
    assert parsed.features == {
        "age_years": 45.0,
        "ild_present": True,
        "current_smoker": False,
        "ssc_subtype": "diffuse_cutaneous",
        "pao2_mmhg": {"value": 11.5, "unit": "kPa"},
    }
    assert parsed.entries["pao2_mmhg"].value == "11,5"  # shown again as typed
    assert parsed.entries["lvef_percent"].value == ""


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ([("lvef_percent", "sixty")], "lvef_percent", "'sixty' is not a number"),
        ([("lvef_percent", "nan")], "lvef_percent", "finite"),
        ([("lvef_percent", "1" * 65)], "lvef_percent", "too long"),
        ([("pao2_mmhg", "9"), ("pao2_mmhg.unit", "psi")], "pao2_mmhg", "unit from the list"),
        ([("ild_present", "maybe")], "ild_present", "yes, no or unknown"),
        ([("ssc_subtype", "mixed")], "ssc_subtype", "listed values"),
        ([("not_a_feature", "1")], "form", "unknown field 'not_a_feature'"),
    ],
)
def test_what_the_form_gets_wrong_is_named_by_field(
    shipped_rules: RuleBase, fields: list[tuple[str, str]], field: str, message: str
) -> None:
    parsed = forms.parse([*fields, ("age_years", "45")], shipped_rules.features)
    assert message in parsed.errors[field]
    assert parsed.features.get("age_years") == 45.0  # the rest is still read


def test_engine_issues_go_back_to_their_fields(shipped_rules: RuleBase) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise(
            {"lvef_percent": 150, "pao2_mmhg": {"value": 900, "unit": "kPa"}},
            shipped_rules.features,
        )
    errors = forms.engine_errors(caught.value.issues)
    assert errors["lvef_percent"] == "150 % is outside the plausible range 5–90 %"
    assert "900 kPa" in errors["pao2_mmhg"]
    fhir = forms.engine_errors([InputIssue("fhir.entry[2].resource", "bad", "no code")])
    assert fhir == {"fhir": "fhir.entry[2].resource: no code"}


def test_a_recorded_value_is_shown_as_given(shipped_rules: RuleBase) -> None:
    values = normalise(
        {"pao2_mmhg": {"value": 11.5, "unit": "kPa"}, "ild_present": True, "lvef_percent": 60},
        shipped_rules.features,
    )
    entries = forms.entries_of(values_to_json(values), shipped_rules.features)
    assert (entries["pao2_mmhg"].value, entries["pao2_mmhg"].unit) == ("11.5", "kPa")
    assert entries["ild_present"].value == "yes"
    assert entries["lvef_percent"].source is None
    recorded = values_to_json(values)
    recorded["lvef_percent"]["provenance"] = {
        "source": "fhir",
        "resource": "Observation/echo-1",
        "date": "2026-10-01",
    }
    shown = forms.entries_of(recorded, shipped_rules.features)
    assert shown["lvef_percent"].source == "Observation/echo-1, 2026-10-01"


def test_a_confirmation_is_posted_under_its_feature_id(shipped_rules: RuleBase) -> None:
    parsed = forms.parse(
        [
            ("severe_comorbidity", "no"),
            ("hsct_fitness_confirmed", "yes"),
            ("major_organ_damage", ""),
        ],
        shipped_rules.features,
    )
    assert parsed.errors == {}
    assert parsed.features == {"severe_comorbidity": False, "hsct_fitness_confirmed": True}


def test_a_derived_value_is_shown_beside_its_field_not_in_it(shipped_rules: RuleBase) -> None:
    values = derive(
        normalise({"prior_cyclophosphamide_iv_g": 3}, shipped_rules.features),
        shipped_rules.features,
    )
    entries = forms.entries_of(values_to_json(values), shipped_rules.features)
    derived = entries["prior_alkylating_or_irradiation"]
    assert derived.value == "yes"
    assert derived.source is None  # not "From FHIR"
    assert derived.derived is not None
    assert derived.derived.endswith("> 0 g (cyclophosphamide is an alkylating agent)")
    assert entries["prior_cyclophosphamide_iv_g"].derived is None


def test_a_value_given_against_a_derivation_is_not_a_form_error(
    shipped_rules: RuleBase,
) -> None:
    """The implied value replaces it when the patient is decided (and the results say so):
    only what cannot be read is an error beside its field."""
    parsed = forms.parse(
        [
            ("prior_cyclophosphamide_iv_g", "3"),
            ("prior_alkylating_or_irradiation", "no"),
            ("lvef_percent", "x"),
        ],
        shipped_rules.features,
    )
    forms.check(parsed, shipped_rules.features)
    assert set(parsed.errors) == {"lvef_percent"}
    assert "not a number" in parsed.errors["lvef_percent"]


def test_a_unit_as_people_write_it_is_read_as_its_ucum_code(shipped_rules: RuleBase) -> None:
    """A post with `mmHg` or `µmol/L` (a script, not the select) is the select's UCUM code."""
    parsed = forms.parse(
        [
            ("pao2_mmhg", "11.5"),
            ("pao2_mmhg.unit", "kpa"),
            ("serum_creatinine", "80"),
            ("serum_creatinine.unit", "µmol/L"),
            ("age_years", "45"),
            ("age_years.unit", "years"),
        ],
        shipped_rules.features,
    )
    assert parsed.errors == {}
    assert parsed.features == {
        "pao2_mmhg": {"value": 11.5, "unit": "kPa"},
        "serum_creatinine": {"value": 80.0, "unit": "umol/L"},
        "age_years": 45.0,
    }
    assert parsed.entries["serum_creatinine"].unit == "umol/L"  # the select shows it chosen


def test_a_compact_record_shows_as_the_full_form_does(shipped_rules: RuleBase) -> None:
    """Records store `values_to_record` (no `given`, no `provenance` where they add nothing);
    the form shows a recorded evaluation the same from either."""
    values = derive(
        normalise(
            {
                "pao2_mmhg": {"value": 11.5, "unit": "kPa"},
                "lvef_percent": 60,
                "prior_cyclophosphamide_iv_g": 3,
            },
            shipped_rules.features,
        ),
        shipped_rules.features,
    )
    full = forms.entries_of(values_to_json(values), shipped_rules.features)
    assert forms.entries_of(values_to_record(values), shipped_rules.features) == full
    assert (full["pao2_mmhg"].value, full["pao2_mmhg"].unit) == ("11.5", "kPa")
    assert full["prior_alkylating_or_irradiation"].derived is not None
