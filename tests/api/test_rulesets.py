"""Read-only rule endpoints, health probes and the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.api.schemas import EvidenceList, FeatureList, RulesetDetail, RulesetList


def test_rulesets_list_and_detail(client: TestClient) -> None:
    listing = RulesetList.model_validate(client.get("/v1/rulesets").json())
    assert "hsct-ssc-astis" in [r.id for r in listing.rulesets]
    detail = RulesetDetail.model_validate(client.get("/v1/rulesets/hsct-ssc-astis").json())
    assert detail.review_status == "draft"
    assert detail.criteria[0].kind == "indication"
    assert {c.kind for c in detail.criteria} == {"indication", "inclusion", "exclusion"}
    assert detail.file.endswith("hsct-ssc-astis.yaml")


def test_unknown_ruleset_is_404(client: TestClient) -> None:
    response = client.get("/v1/rulesets/nope")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_features_cover_the_public_contract(client: TestClient) -> None:
    features = FeatureList.model_validate(client.get("/v1/features").json()).features
    by_id = {f.id: f for f in features}
    assert by_id["lvef_percent"].unit == "%"
    assert by_id["lvef_percent"].range == (5, 90)
    assert by_id["sex"].values == ["female", "male", "other", "unknown"]


def test_evidence_has_identifiers_or_says_why_not(client: TestClient) -> None:
    evidence = EvidenceList.model_validate(client.get("/v1/evidence").json()).evidence
    assert all(e.doi or e.pmid or e.url or e.note for e in evidence)
    astis = next(e for e in evidence if e.id == "van-laar-2014-astis")
    assert astis.pmid == "25058083"
    assert astis.doi is None  # EVIDENCE.md marks the ASTIS DOI unverified


def test_ruleset_schema_is_served(client: TestClient) -> None:
    schema = client.get("/v1/schemas/ruleset").json()
    assert schema["$defs"]["Expression"]["anyOf"][0]["type"] == "string"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["rulesets"] >= 1


def test_openapi_documents_the_evaluation_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/evaluations"]["post"]
    assert (
        "features"
        in operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
    )
    assert {"200", "400", "413", "415", "422"} <= set(operation["responses"])
    assert client.get("/docs").status_code == 200
