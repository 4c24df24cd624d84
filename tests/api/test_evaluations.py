"""POST /v1/evaluations through the real ASGI app, with the shipped rules."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.schemas import EvaluationResponse, Problem
from tests.astis_patients import ASTIS_CANDIDATE


def evaluate(client: TestClient, features: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/evaluations", json={"features": features, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    EvaluationResponse.model_validate(body)  # the documented contract holds
    return body


def astis(body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = next(
        r for r in body["results"] if r["ruleset"]["id"] == "hsct-ssc-astis"
    )
    return result


def test_clear_candidate_is_eligible_with_full_explanation(client: TestClient) -> None:
    body = evaluate(client, ASTIS_CANDIDATE, rulesets=["hsct-ssc-astis"])
    result = astis(body)
    assert result["status"] == "eligible"
    assert result["missing"] == []
    assert result["ruleset"]["review_status"] == "draft"
    assert result["ruleset"]["hash"].startswith("sha256:")
    assert "clinical review" in result["ruleset"]["review_note"]
    assert all(c["citations"] for c in result["criteria"] + result["cautions"])
    assert all(r["citations"] for r in result["risks"])
    cited = {c for item in result["criteria"] + result["risks"] for c in item["citations"]}
    assert cited <= {c["id"] for c in result["citations"]}
    pao2 = next(c for c in result["criteria"] if c["id"] == "pao2-below-8-kpa")
    assert pao2["features"][0]["given"] == {"value": 11.5, "unit": "kPa"}
    assert pao2["features"][0]["value"] == pytest.approx(86.2570827)


def test_missing_dlco_is_indeterminate_and_named(client: TestClient) -> None:
    features = {k: v for k, v in ASTIS_CANDIDATE.items() if k != "dlco_percent_predicted"}
    result = astis(evaluate(client, features))
    assert result["status"] == "indeterminate"
    assert result["missing"] == ["dlco_percent_predicted"]


def test_age_outside_astis_range_is_ineligible(client: TestClient) -> None:
    result = astis(evaluate(client, {**ASTIS_CANDIDATE, "age_years": 66}))
    assert result["status"] == "ineligible"
    assert result["reasons"] == ["age-18-to-65"]


def test_patient_with_sle_only_is_not_indicated(client: TestClient) -> None:
    result = astis(evaluate(client, {"ssc_diagnosis": False, "sle_diagnosis": True}))
    assert result["status"] == "not_indicated"


def test_all_rulesets_by_default(client: TestClient) -> None:
    body = evaluate(client, {})
    listed = client.get("/v1/rulesets").json()["rulesets"]
    assert [r["ruleset"]["id"] for r in body["results"]] == [r["id"] for r in listed]
    assert all(r["status"] == "indeterminate" for r in body["results"])


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    Problem.model_validate(body)
    return body


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"features": {"lvef": 50}}, "features.lvef", "unknown_feature"),
        ({"features": {"lvef_percent": "fifty"}}, "features.lvef_percent", "wrong_type"),
        ({"features": {"lvef_percent": 150}}, "features.lvef_percent", "out_of_range"),
        (
            {"features": {"pao2_mmhg": {"value": 8, "unit": "mg/dL"}}},
            "features.pao2_mmhg.unit",
            "unit",
        ),
        (
            {"features": {}, "rulesets": ["hsct-ssc-astis", "nope"]},
            "rulesets[1]",
            "unknown_ruleset",
        ),
        ({"features": {}, "rulesets": []}, "rulesets", "empty"),
        ({"features": []}, "features", "dict_type"),
        ({"features": {}, "rulesets": "hsct-ssc-astis"}, "rulesets", "list_type"),
        ({"features": {}, "patient": "x"}, "patient", "extra_forbidden"),
        ({}, "features", "missing"),
        ([], "body", "model_type"),
    ],
)
def test_invalid_payloads_are_422_naming_the_field(
    client: TestClient, payload: Any, field: str, code: str
) -> None:
    body = problem(client.post("/v1/evaluations", json=payload), 422)
    assert [(e["field"], e["code"]) for e in body["errors"]] == [(field, code)]


@pytest.mark.parametrize(
    ("payload", "field", "told"),
    [
        (
            {"features": {}, "rulesets": "hsct-ssc-astis"},
            "rulesets",
            'Input should be a valid list, not a string; a single value is still a list: ["…"]',
        ),
        (
            {"features": [["lvef_percent", 50]]},
            "features",
            "Input should be a valid dictionary, not a list; an object of name -> value: {…}",
        ),
        (
            {"features": {}, "patient_id": 123456},
            "patient_id",
            'not a number; an identifier that is a number is sent as text: "12345"',
        ),
    ],
)
def test_a_value_of_the_wrong_json_type_is_told_how_to_write_it(
    client: TestClient, payload: Any, field: str, told: str
) -> None:
    """pydantic's "Input should be a valid list" alone left an integrator guessing; the value
    sent is not repeated (a patient id may be one)."""
    body = problem(client.post("/v1/evaluations", json=payload), 422)
    (error,) = body["errors"]
    assert error["field"] == field
    assert told in error["message"], error["message"]
    assert "123456" not in error["message"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"features": {', "malformed JSON at line 1 column 15"),
        (b'{"features": {"lvef_percent": NaN}}', "NaN is not valid JSON"),
        (b"", "empty"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_json_is_400(client: TestClient, content: bytes, message: str) -> None:
    response = client.post(
        "/v1/evaluations", content=content, headers={"content-type": "application/json"}
    )
    assert message in problem(response, 400)["detail"]


def test_wrong_media_type_is_415(client: TestClient) -> None:
    response = client.post(
        "/v1/evaluations",
        content=b"features=1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    problem(response, 415)


def test_oversized_body_is_413(client: TestClient) -> None:
    padding = "x" * (70 * 1024)
    response = client.post("/v1/evaluations", json={"features": {}, "pad": padding})
    assert "exceeds the limit" in problem(response, 413)["detail"]


def test_oversized_chunked_body_is_413(client: TestClient) -> None:
    def chunks() -> Any:
        for _ in range(80):
            yield b" " * 1024

    response = client.post(
        "/v1/evaluations", content=chunks(), headers={"content-type": "application/json"}
    )
    problem(response, 413)


def test_unknown_route_and_method(client: TestClient) -> None:
    problem(client.get("/v1/nothing"), 404)
    problem(client.delete("/v1/evaluations"), 405)


def _upside(client: TestClient, features: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = evaluate(client, features, rulesets=["hsct-ssc-upside"])["results"][0]
    return result


def test_confirmations_are_listed_apart_from_values_to_measure(client: TestClient) -> None:
    result = _upside(client, {"ssc_diagnosis": True})
    assert result["status"] == "indeterminate"
    (confirm,) = result["to_confirm"]
    feature = next(
        f for f in client.get("/v1/features").json()["features"] if f["id"] == "severe_comorbidity"
    )
    assert confirm == {
        "feature": "severe_comorbidity",
        "label": feature["label"],
        "question": feature["confirmation"]["question"],
        "description": feature["description"],  # the source's words
        "proceeds_when": False,
        "criteria": ["severe-comorbidity"],
    }
    assert "severe_comorbidity" not in result["missing"]
    assert result["missing"]  # values to measure are still listed, apart
    confirmed = _upside(client, {"ssc_diagnosis": True, "severe_comorbidity": False})
    assert confirmed["to_confirm"] == []
    excluded = _upside(client, {"ssc_diagnosis": True, "severe_comorbidity": True})
    assert excluded["status"] == "ineligible"
    assert excluded["reasons"] == ["severe-comorbidity"]


def test_criteria_from_a_fragment_carry_their_origin(client: TestClient) -> None:
    result = _upside(client, {"ssc_diagnosis": True, "pregnant": True})
    assert result["status"] == "ineligible"
    assert result["reasons"] == ["pregnancy"]
    pregnancy = next(c for c in result["criteria"] if c["id"] == "pregnancy")
    assert pregnancy["origin"] == {
        "fragment": "cellular-therapy-general",
        "title": pregnancy["origin"]["title"],
        "applies_to": "all cellular therapies",
        "label": f"applies to all cellular therapies: {pregnancy['source']}",
    }
    assert result["criteria"][0]["origin"] is None  # the indication is UPSIDE's own


def test_a_derived_value_shows_in_the_trace_with_why_and_is_recorded(client: TestClient) -> None:
    body = evaluate(
        client,
        {"ssc_diagnosis": True, "prior_cyclophosphamide_iv_g": 3},
        rulesets=["hsct-ssc-upside"],
    )
    (result,) = body["results"]
    uses = [
        f
        for c in result["criteria"]
        for f in c["features"]
        if f["feature"] == "prior_alkylating_or_irradiation"
    ]
    assert uses
    for use in uses:
        assert use["value"] is True
        assert use["provenance"] == {
            "source": "derived",
            "derivation": "prior_cyclophosphamide_iv_g > 0 g "
            "(cyclophosphamide is an alkylating agent)",
        }
    ruling = next(c for c in result["criteria"] if c["id"] in result["reasons"])
    assert "prior_alkylating_or_irradiation" in [f["feature"] for f in ruling["features"]]
    record = client.get(f"/v1/evaluations/{body['id']}").json()
    assert "prior_alkylating_or_irradiation" not in record["input"]["received"]["features"]
    stored = record["input"]["normalised"]["prior_alkylating_or_irradiation"]
    assert stored["provenance"]["source"] == "derived"


def test_a_value_given_against_a_derivation_is_replaced_and_said(client: TestClient) -> None:
    """ "No alkylating agent" typed beside 3 g of IV cyclophosphamide: the dose implies one,
    so UPSIDE rules the patient out on it, and the answer says what was replaced and why."""
    features = {"prior_alkylating_or_irradiation": False, "prior_cyclophosphamide_iv_g": 3}
    body = client.post(
        "/v1/evaluations", json={"features": features, "rulesets": ["hsct-ssc-upside"]}
    ).json()
    assert body["corrections"] == [
        {
            "feature": "prior_alkylating_or_irradiation",
            "given": {"value": False, "unit": None},
            "used": True,
            "because": "prior_cyclophosphamide_iv_g > 0 g (cyclophosphamide is an alkylating "
            "agent); it replaces the value given, false",
        }
    ]
    (result,) = body["results"]
    assert result["reasons"] == ["prior-alkylating-or-irradiation"]
    ruling = next(c for c in result["criteria"] if c["id"] == "prior-alkylating-or-irradiation")
    (use,) = ruling["features"]
    assert (use["value"], use["given"]["value"], use["provenance"]["source"]) == (
        True,
        False,
        "derived",
    )
    record = client.get(f"/v1/evaluations/{body['id']}").json()
    assert record["result"]["corrections"] == body["corrections"]
    assert record["input"]["received"]["features"]["prior_alkylating_or_irradiation"] is False


def test_an_answer_without_a_correction_has_no_corrections(client: TestClient) -> None:
    body = client.post(
        "/v1/evaluations", json={"features": {"prior_cyclophosphamide_iv_g": 3}}
    ).json()
    assert "corrections" not in body


@pytest.mark.parametrize(
    ("payload", "key", "hint"),
    [
        ({"patient": {"lvef_percent": 50}}, "patient", "did you mean 'features'?"),
        ({"feature": {"lvef_percent": 50}}, "feature", "did you mean 'features'?"),
        ({"Bundle": {"resourceType": "Bundle"}}, "Bundle", "did you mean 'fhir'?"),
        ({"features": {}, "ruleset": ["hsct-ssc-astis"]}, "ruleset", "did you mean 'rulesets'?"),
        ({"features": {}, "patientid": "x"}, "patientid", "did you mean 'patient_id'?"),
    ],
)
def test_an_unexpected_key_is_named_with_what_is_expected(
    client: TestClient, payload: dict[str, Any], key: str, hint: str
) -> None:
    body = problem(client.post("/v1/evaluations", json=payload), 422)
    expected = "expected `features`: an object of feature id -> value"
    assert body["detail"].startswith(f"unexpected key(s) {key!r}; {expected}")
    assert "or `fhir`: a FHIR R4 Bundle" in body["detail"]
    unexpected = next(e for e in body["errors"] if e["field"] == key)
    assert unexpected["code"] == "extra_forbidden"  # pydantic's code, kept for callers
    assert unexpected["message"].startswith(f"unexpected key {key!r}; {hint} ({expected}")
    missing = [e for e in body["errors"] if e["field"] == "features"]
    if "features" in payload:
        assert missing == []
    else:  # the one thing a request cannot do without
        assert missing[0]["code"] == "missing"
        assert expected in missing[0]["message"]


def test_an_unexpected_empty_key_is_named_as_a_field(client: TestClient) -> None:
    """Found by the hostile-JSON test: `{"": …}` named its error with an empty field."""
    body = problem(client.post("/v1/evaluations", json={"features": {}, "": 1}), 422)
    unexpected = [e for e in body["errors"] if e["code"] == "extra_forbidden"]
    assert [e["field"] for e in unexpected] == ["body"]
    assert unexpected[0]["message"].startswith("unexpected key ''")


def test_a_key_close_to_nothing_gets_no_guess_and_many_are_bounded(client: TestClient) -> None:
    body = problem(client.post("/v1/evaluations", json={"features": {}, "zzz": 1}), 422)
    assert body["errors"][0]["message"].startswith("unexpected key 'zzz' (expected `features`")
    many = {"features": {}, **{f"k{i}": i for i in range(80)}}
    body = problem(client.post("/v1/evaluations", json=many), 422)
    assert len(body["errors"]) == 50
    assert body["errors_omitted"] == 30
    assert body["detail"].startswith("unexpected key(s) 'k0', 'k1', 'k2', 'k3', 'k4', …; ")


@pytest.mark.parametrize(
    ("given", "suggested"),
    [
        ("lvef", "did you mean 'lvef_percent'?"),
        ("dlco", "did you mean 'dlco_percent_predicted'?"),
        ("egfr_ml_min", "did you mean 'egfr'?"),
        ("Age", "did you mean 'age_years'?"),
        ("lvef_pct", "did you mean 'lvef_percent'?"),
    ],
)
def test_an_unknown_feature_gets_a_did_you_mean(
    client: TestClient, given: str, suggested: str
) -> None:
    body = problem(client.post("/v1/evaluations", json={"features": {given: 1}}), 422)
    (error,) = body["errors"]
    assert error["message"] == f"unknown feature {given!r}; {suggested}; see GET /v1/features"


def test_an_unknown_feature_far_from_any_gets_no_guess(client: TestClient) -> None:
    body = problem(client.post("/v1/evaluations", json={"features": {"qqq": 1}}), 422)
    assert body["errors"][0]["message"] == "unknown feature 'qqq'; see GET /v1/features"


@pytest.mark.parametrize("features", [{}, {"lvef_percent": None, "ssc_diagnosis": None}])
def test_no_feature_is_answered_recorded_and_warned(
    client: TestClient, features: dict[str, Any]
) -> None:
    body = evaluate(client, features)
    assert body["warnings"] == [
        {
            "code": "no_features",
            "message": "No feature value was given (nor found in a FHIR bundle): nothing is "
            "known about the patient, so every verdict is undecided. Send `features`, an object "
            "of feature id -> value (GET /v1/features), or a FHIR R4 Bundle as `fhir`.",
        }
    ]
    assert {r["status"] for r in body["results"]} == {"indeterminate"}  # as the warning says
    record = client.get(f"/v1/evaluations/{body['id']}").json()
    assert record["integrity"]["verified"] is True  # re-rendered, warning and all, to the digest
    assert record["result"] == body
    replay = client.post(f"/v1/evaluations/{body['id']}/replay").json()
    assert all(r["recorded_version"]["same_as_recorded"] for r in replay["rulesets"])
    summary = client.post("/v1/evaluations?view=summary", json={"features": features}).json()
    assert summary["warnings"] == body["warnings"]


def test_any_known_value_means_no_warning(client: TestClient) -> None:
    assert "warnings" not in evaluate(client, {"lvef_percent": 50})
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("EvaluationResponse", "EvaluationSummaryResponse"):
        assert "warnings" in schema[name]["properties"], name
    assert schema["WarningOut"]["properties"]["code"]["const"] == "no_features"
