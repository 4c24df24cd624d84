"""Read-only rule endpoints, health probes and the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.api.schemas import EvidenceList, FeatureList, RulesetDetail, RulesetList


def test_rulesets_list_and_detail(client: TestClient) -> None:
    listing = RulesetList.model_validate(client.get("/v1/rulesets").json())
    assert "hsct-ssc-astis" in [r.id for r in listing.rulesets]
    detail = RulesetDetail.model_validate(client.get("/v1/rulesets/hsct-ssc-astis").json())
    assert detail.review_status == "draft"
    assert detail.criteria[0]["kind"] == "indication"
    assert {c["kind"] for c in detail.criteria} == {"indication", "inclusion", "exclusion"}
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


def test_openapi_documents_confirmations_origins_and_derivations(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    decision = schemas["DecisionOut"]
    assert decision["properties"]["to_confirm"]["items"] == {
        "$ref": "#/components/schemas/ConfirmationOut"
    }
    assert "to_confirm" in decision["required"]
    assert "apart from `missing`" in decision["properties"]["to_confirm"]["description"]
    assert set(schemas["ConfirmationOut"]["required"]) == {
        "feature",
        "label",
        "question",
        "description",
        "proceeds_when",
        "criteria",
    }
    origin = schemas["CriterionOut"]["properties"]["origin"]["anyOf"]
    assert {"$ref": "#/components/schemas/OriginOut"} in origin
    assert {"fragment", "title", "applies_to", "label"} <= set(schemas["OriginOut"]["properties"])
    assert "derived" in schemas["Provenance"]["properties"]["source"]["description"]
    assert "derivation" in schemas["Provenance"]["properties"]
    assert "includes" in schemas["RulesetDetail"]["properties"]


def test_a_ruleset_lists_its_fragments_and_their_criteria_say_so(client: TestClient) -> None:
    detail = RulesetDetail.model_validate(client.get("/v1/rulesets/hsct-ssc-upside").json())
    assert "cellular-therapy-general" in detail.includes
    pregnancy = next(c for c in detail.criteria if c["id"] == "pregnancy")
    origin = pregnancy["origin"]
    assert origin is not None
    assert origin["fragment"] == "cellular-therapy-general"
    assert origin["label"] == f"applies to all cellular therapies: {pregnancy['source']}"
    assert detail.criteria[0]["origin"] is None  # the indication is the rule set's own
