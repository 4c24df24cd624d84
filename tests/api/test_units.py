"""Issue 19 through the real API: units as people write them are read (µmol/L, mmHg, years,
mg/dl), a refused unit is explained in people's words, and a fractional age is taken in
completed years on every channel, saying so."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_evaluations import astis, evaluate, problem
from tests.api.test_fhir_input import _criterion
from tests.astis_patients import ASTIS_CANDIDATE
from tests.fhir.bundles import patient_of, ssc_bundle, today

AGE = "age-18-to-65"


def _verdicts(body: dict[str, Any]) -> list[Any]:
    """The results (what differs between two calls, the id and time, is not in them)."""
    results: list[Any] = body["results"]
    return results


@pytest.mark.parametrize(
    ("feature", "spelled", "ucum"),
    [
        ("serum_creatinine", {"value": 80, "unit": "µmol/L"}, {"value": 80, "unit": "umol/L"}),
        ("serum_creatinine", {"value": 80, "unit": "μmol/l"}, {"value": 80, "unit": "umol/L"}),
        ("serum_creatinine", {"value": 0.9, "unit": "mg/dl"}, {"value": 0.9, "unit": "mg/dL"}),
        ("pao2_mmhg", {"value": 86, "unit": "mmHg"}, {"value": 86, "unit": "mm[Hg]"}),
        ("age_years", {"value": 45, "unit": "years"}, {"value": 45, "unit": "a"}),
        ("age_years", {"value": 540, "unit": "months"}, {"value": 540, "unit": "mo"}),
        ("egfr", {"value": 90, "unit": "ml/min/1.73m2"}, {"value": 90, "unit": "mL/min/{1.73_m2}"}),
    ],
)
def test_a_unit_as_people_write_it_decides_as_its_ucum_code(
    client: TestClient, feature: str, spelled: dict[str, Any], ucum: dict[str, Any]
) -> None:
    by_name = evaluate(client, {**ASTIS_CANDIDATE, feature: spelled})
    by_code = evaluate(client, {**ASTIS_CANDIDATE, feature: ucum})
    assert _verdicts(by_name) == _verdicts(by_code)
    assert astis(by_name)["status"] == "eligible"
    # The record keeps the request as sent, and the UCUM code it was read as.
    record = client.get(f"/v1/evaluations/{by_name['id']}").json()
    assert record["input"]["received"]["features"][feature] == spelled
    assert record["input"]["normalised"][feature]["given"]["unit"] == ucum["unit"]


def test_an_unknown_unit_is_a_422_in_peoples_words(client: TestClient) -> None:
    features = {"pao2_mmhg": {"value": 80, "unit": "mm Hgg"}}
    body = problem(client.post("/v1/evaluations", json={"features": features}), 422)
    (error,) = body["errors"]
    assert (error["field"], error["code"]) == ("features.pao2_mmhg.unit", "unit")
    assert error["message"] == (
        "'mm Hgg' is not a unit Eligo recognises; use mmHg or kPa (nearest to what was sent: mmHg)"
    )
    assert "UCUM" not in body["detail"] + error["message"]


def test_a_unit_of_another_kind_is_a_422_listing_the_accepted_ones(client: TestClient) -> None:
    features = {"serum_creatinine": {"value": 80, "unit": "mmHg"}}
    body = problem(client.post("/v1/evaluations", json={"features": features}), 422)
    (error,) = body["errors"]
    assert error["field"] == "features.serum_creatinine.unit"
    assert error["message"] == "'mmHg' is a unit of another kind; use mg/dL or µmol/L"


def test_a_fractional_age_is_taken_in_completed_years_and_said(client: TestClient) -> None:
    """65.5 is 65 completed years: inside ASTIS's 18–65, as FHIR's birthDate would give it,
    and the answer lists the correction, the trace keeps the value given."""
    body = evaluate(client, {**ASTIS_CANDIDATE, "age_years": 65.5}, rulesets=["hsct-ssc-astis"])
    result = astis(body)
    assert result["status"] == "eligible"
    assert body["corrections"] == [
        {
            "feature": "age_years",
            "given": {"value": 65.5, "unit": "a"},
            "used": 65.0,
            "because": "age_years counts completed years: 65.5 years is taken as 65",
        }
    ]
    (use,) = next(c for c in result["criteria"] if c["id"] == AGE)["features"]
    assert (use["value"], use["given"]) == (65.0, {"value": 65.5, "unit": "a"})
    assert use["provenance"]["source"] == "input"
    assert use["provenance"]["replaced"] == "65.5 years"
    record = client.get(f"/v1/evaluations/{body['id']}").json()
    assert record["result"]["corrections"] == body["corrections"]
    # A day short of 66 in months, too; 66 itself is out.
    in_months = evaluate(client, {**ASTIS_CANDIDATE, "age_years": {"value": 791, "unit": "mo"}})
    assert astis(in_months)["status"] == "eligible"
    assert astis(evaluate(client, {**ASTIS_CANDIDATE, "age_years": 66}))["status"] == "ineligible"


def test_a_whole_age_has_no_correction(client: TestClient) -> None:
    body = evaluate(client, {**ASTIS_CANDIDATE, "age_years": 65.0}, rulesets=["hsct-ssc-astis"])
    assert "corrections" not in body


@pytest.mark.parametrize(
    ("feature", "value"),
    [("ecog", 1.5), ("failed_immunosuppressants", 2.5), ("prior_cyclophosphamide_iv_courses", 0.5)],
)
def test_a_fractional_count_is_a_422(client: TestClient, feature: str, value: float) -> None:
    body = problem(
        client.post("/v1/evaluations", json={"features": {**ASTIS_CANDIDATE, feature: value}}),
        422,
    )
    (error,) = body["errors"]
    assert (error["field"], error["code"]) == (f"features.{feature}", "not_whole")
    assert "is not a whole number" in error["message"]


def _born(years: int, months: int, on: date) -> str:
    """A birth date `years` and `months` before `on` (the 1st of a month, so always valid)."""
    total = on.year * 12 + on.month - 1 - years * 12 - months
    return date(total // 12, total % 12 + 1, 1).isoformat()


def test_fhir_and_json_give_the_same_completed_years(client: TestClient) -> None:
    """A patient 65 years and 6 months old: FHIR's birthDate gives 65, the JSON 65.5 is taken
    as 65; ASTIS's age criterion is met either way, and not at 66 by either channel."""
    on = today()
    for years, met in ((65, "met"), (66, "not_met")):
        bundle = ssc_bundle(on)
        patient_of(bundle)["birthDate"] = _born(years, 6, on)
        by_fhir = evaluate(client, {}, fhir=bundle, rulesets=["hsct-ssc-astis"])
        by_json = evaluate(
            client, {"age_years": years + 0.5}, fhir=bundle, rulesets=["hsct-ssc-astis"]
        )
        for answer in (by_fhir, by_json):
            assert _criterion(answer, AGE)["result"] == met
            (use,) = _criterion(answer, AGE)["features"]
            assert use["value"] == years
        assert "corrections" not in by_fhir
        assert [c["feature"] for c in by_json["corrections"]] == ["age_years"]


def test_a_fhir_quantity_unit_as_a_laboratory_prints_it(client: TestClient) -> None:
    """A Quantity with only its display unit (`mmHg`, no UCUM code) is read as UCUM's."""
    bundle = ssc_bundle(today())
    for entry in bundle["entry"]:
        quantity = entry["resource"].get("valueQuantity")
        if quantity and quantity.get("code") == "mm[Hg]":
            quantity.pop("code")
            quantity.pop("system", None)
            quantity["unit"] = "mmHg"
    answer = evaluate(client, {}, fhir=bundle, rulesets=["hsct-ssc-astis"])
    used = answer["fhir"]["used"]
    assert (used["mpap_mmhg"]["value"], used["mpap_mmhg"]["unit"]) == (20, "mm[Hg]")
