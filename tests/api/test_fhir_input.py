"""POST /v1/evaluations with a FHIR R4 Bundle: as `{"fhir": ...}` or as application/fhir+json,
explicit features overriding, provenance in the trace, and the record."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from app.api.schemas import EvaluationResponse
from tests.fhir.bundles import patient_of, resource, sle_bundle, ssc_bundle, today

ASTIS = "hsct-ssc-astis"


def _criterion(answer: dict[str, Any], criterion_id: str) -> dict[str, Any]:
    (result,) = answer["results"]
    found: dict[str, Any] = next(c for c in result["criteria"] if c["id"] == criterion_id)
    return found


def _post(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/evaluations", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    EvaluationResponse.model_validate(answer)
    return answer


def test_a_bundle_drives_the_decision_with_provenance(client: TestClient) -> None:
    answer = _post(client, {"fhir": ssc_bundle(today()), "rulesets": [ASTIS]})
    (result,) = answer["results"]
    assert result["status"] != "not_indicated"  # SSc from the problem list
    uses = [
        f
        for c in result["criteria"] + result["cautions"]
        for f in c["features"]
        if f["feature"] == "lvef_percent"
    ]
    assert uses
    echo_day = (today() - timedelta(days=82)).isoformat()  # written as 2026-09-01
    for use in uses:
        assert use["value"] == 60
        assert use["provenance"] == {
            "source": "fhir",
            "resource": "Observation/obs-4",
            "date": echo_day,
        }
    assert answer["fhir"]["used"]["mrss"]["resource"] == "Observation/obs-1"
    skipped = {(s["resource"], s["feature"]) for s in answer["fhir"]["skipped"]}
    assert ("Observation/obs-5", "lvef_percent") in skipped  # the 2021 echo


def test_explicit_features_override_the_bundle_and_say_so(client: TestClient) -> None:
    body = {"fhir": ssc_bundle(today()), "features": {"lvef_percent": 45}, "rulesets": [ASTIS]}
    answer = _post(client, body)
    assert answer["fhir"]["overridden_by_features"] == ["lvef_percent"]
    assert "lvef_percent" not in answer["fhir"]["used"]
    uses = [
        f
        for c in answer["results"][0]["criteria"] + answer["results"][0]["cautions"]
        for f in c["features"]
        if f["feature"] == "lvef_percent"
    ]
    assert uses
    assert all(u["value"] == 45 and u["provenance"] == {"source": "input"} for u in uses)


def test_an_explicit_null_is_unknown_and_does_not_hide_the_bundle(client: TestClient) -> None:
    body = {"fhir": ssc_bundle(today()), "features": {"mrss": None}, "rulesets": [ASTIS]}
    answer = _post(client, body)
    assert answer["fhir"]["overridden_by_features"] == []
    assert answer["fhir"]["used"]["mrss"]["resource"] == "Observation/obs-1"


def test_the_bundle_as_application_fhir_json(client: TestClient) -> None:
    response = client.post(
        "/v1/evaluations",
        content=json.dumps(ssc_bundle(today())),
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["fhir"]["used"]["mrss"]["resource"] == "Observation/obs-1"


def test_the_record_keeps_the_bundle_and_a_pseudonym_of_the_patient(client: TestClient) -> None:
    answer = _post(client, {"fhir": ssc_bundle(today()), "rulesets": [ASTIS]})
    record = client.get(f"/v1/evaluations/{answer['id']}").json()
    stored = record["input"]["received"]["fhir"]
    assert stored["resourceType"] == "Bundle"
    # Minimised: the resources a feature can come from, without names, identifiers or ids.
    assert len(stored["entry"]) == 1 + 2 + 8  # Patient, 2 Conditions, 8 Observations
    for secret in ("MRN-SSC-0001", "Sclero", "Example", "ssc-1"):
        assert secret not in json.dumps(record)
    assert record["input"]["normalised"]["mrss"]["provenance"]["resource"] == "Observation/obs-1"
    assert record["patient_pseudonym"] is not None
    assert "ssc-1" not in record["patient_pseudonym"]
    replay = client.post(f"/v1/evaluations/{answer['id']}/replay").json()
    assert replay["rulesets"][0]["recorded_version"]["same_as_recorded"] is True
    assert replay["rulesets"][0]["today"]["same_as_recorded"] is True


def test_bad_bundles_and_bad_features_are_reported_together(client: TestClient) -> None:
    bundle = ssc_bundle(today())
    resource(bundle, "obs-4")["valueQuantity"]["value"] = 400
    bundle["entry"].append({"resource": {"resourceType": "Spaceship"}})
    response = client.post(
        "/v1/evaluations", json={"fhir": bundle, "features": {"no_such_feature": 1}}
    )
    assert response.status_code == 422, response.text
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["features.no_such_feature", "fhir.entry[11].resource.resourceType"]
    not_bundle = client.post("/v1/evaluations", json={"fhir": {"resourceType": "Patient"}})
    assert not_bundle.status_code == 422
    assert not_bundle.json()["errors"][0]["field"] == "fhir"


def test_a_deceased_patient_gets_no_verdict(client: TestClient) -> None:
    """Explicit features cannot talk the service into deciding for a dead patient."""
    bundle = ssc_bundle(today())
    patient = patient_of(bundle)
    patient["deceasedDateTime"] = (today() - timedelta(days=3)).isoformat()
    body = {"fhir": bundle, "features": {"age_years": 40}, "rulesets": [ASTIS]}
    response = client.post("/v1/evaluations", json=body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert (error["field"], error["code"]) == (
        "fhir.entry[0].resource.deceasedDateTime",
        "deceased",
    )
    patient["deceasedDateTime"] = (today() + timedelta(days=3)).isoformat()  # not yet
    assert _post(client, body)["results"][0]["status"] != "not_indicated"


def test_an_explicit_value_against_what_the_bundle_implies_is_replaced_and_said(
    client: TestClient,
) -> None:
    """The SLE patient's record holds 3 g of IV cyclophosphamide: "no alkylating agent" typed
    beside it is replaced by what the record implies, and the answer says so."""
    body = {"fhir": sle_bundle(today()), "features": {"prior_alkylating_or_irradiation": False}}
    answer = _post(client, body)
    (correction,) = answer["corrections"]
    assert (correction["feature"], correction["given"]["value"], correction["used"]) == (
        "prior_alkylating_or_irradiation",
        False,
        True,
    )
    assert "implies" not in correction["because"]  # the rule's own words, not an error
    assert "cyclophosphamide is an alkylating agent" in correction["because"]
    assert "it replaces the value given, false" in correction["because"]


def test_the_answers_fhir_part_is_described_in_the_openapi(client: TestClient) -> None:
    """/docs says what each field of `fhir` (used, overridden, skipped) means."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("FhirUse", "FhirValue", "FhirSkipped"):
        fields = schemas[name]["properties"]
        assert fields, name
        assert [f for f, spec in fields.items() if not spec.get("description")] == [], name
    assert "freshness window" in schemas["FhirSkipped"]["properties"]["reason"]["description"]
