"""What /docs (the served OpenAPI document) tells an EHR integrator about the CDS Hooks calls:
the request bodies and the cards, each field described, and the document true to what the
service sends: real calls' answers (patient-view for the SSc and the SLE patient, order-select,
feedback) validate against the documented schemas, and the shipped sample request against the
documented body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.cds.conftest import CdsClient
from tests.cds.test_hooks import _order_select
from tests.conftest import ROOT

SAMPLE = ROOT / "docs" / "cds-hooks" / "patient-view.json"
HOOK = "/cds-services/{service_id}"
FEEDBACK = "/cds-services/{service_id}/feedback"


@pytest.fixture(scope="module")
def document(cds: CdsClient) -> dict[str, Any]:
    response = cds.http.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """`schema` checked with the document's components in reach of its `$ref`s."""
    return Draft202012Validator({**schema, "components": document["components"]})


def response_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["paths"][path]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    return schema


def body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    body = document["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def undescribed(schema: Any, document: dict[str, Any], where: str = "") -> Iterator[str]:
    """Every property, in `schema` and the components it refers to, without a description."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.removeprefix("#/components/schemas/")
            yield from undescribed(document["components"]["schemas"][name], document, name)
            return
        for name, prop in schema.get("properties", {}).items():
            described = "description" in prop or ("$ref" in prop and _described_ref(prop, document))
            if not described:
                yield f"{where}.{name}"
            yield from undescribed(prop, document, f"{where}.{name}")
        for key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
            inner = schema.get(key)
            for part in inner if isinstance(inner, list) else [inner]:
                yield from undescribed(part, document, where)


def _described_ref(prop: dict[str, Any], document: dict[str, Any]) -> bool:
    name = prop["$ref"].removeprefix("#/components/schemas/")
    return "description" in document["components"]["schemas"][name]


@pytest.mark.parametrize("path", [HOOK, FEEDBACK])
def test_each_cds_operation_documents_its_body_and_answer(
    document: dict[str, Any], path: str
) -> None:
    operation = document["paths"][path]["post"]
    assert operation["description"]
    (parameter,) = operation["parameters"]
    assert "eligo-patient-view" in parameter["description"]
    assert sorted(undescribed(body_schema(document, path), document)) == []
    assert sorted(undescribed(response_schema(document, path), document)) == []


def test_discovery_documents_its_fields(document: dict[str, Any]) -> None:
    operation = document["paths"]["/cds-services"]["get"]
    assert operation["description"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert sorted(undescribed(schema, document)) == []


def test_the_shipped_sample_is_a_documented_hook_request(document: dict[str, Any]) -> None:
    sample = json.loads(SAMPLE.read_text())
    errors = [
        e.message for e in validator(document, body_schema(document, HOOK)).iter_errors(sample)
    ]
    assert errors == []
    # And the documented body is strict where the service is: a bad patient id is refused.
    bad = {**sample, "context": {**sample["context"], "patientId": "a/b"}}
    assert not validator(document, body_schema(document, HOOK)).is_valid(bad)


@pytest.mark.parametrize("patient", ["ssc-1", "sle-1"])
def test_patient_view_cards_are_as_documented(
    cds: CdsClient, document: dict[str, Any], patient: str
) -> None:
    answer = cds.call("eligo-patient-view", cds.body(patient=patient))
    assert answer.status_code == 200, answer.text
    assert answer.json()["cards"]
    check = validator(document, response_schema(document, HOOK))
    assert [e.message for e in check.iter_errors(answer.json())] == []


def test_order_select_cards_are_as_documented(cds: CdsClient, document: dict[str, Any]) -> None:
    answer = _order_select(cds, ["MedicationRequest/cyc"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["cards"][0]["indicator"] == "warning"
    check = validator(document, response_schema(document, HOOK))
    assert [e.message for e in check.iter_errors(answer.json())] == []


def test_feedback_answer_is_as_documented(cds: CdsClient, document: dict[str, Any]) -> None:
    cards = cds.call("eligo-patient-view", cds.body()).json()["cards"]
    path = "/cds-services/eligo-patient-view/feedback"
    feedback = {
        "feedback": [
            {
                "card": cards[0]["uuid"],
                "outcome": "accepted",
                "outcomeTimestamp": "2026-01-02T03:04:05Z",
            }
        ]
    }
    body = body_schema(document, FEEDBACK)
    assert validator(document, body).is_valid(feedback)
    answer = cds.http.post(path, json=feedback, headers=cds.headers(path))
    assert answer.status_code == 200, answer.text
    check = validator(document, response_schema(document, FEEDBACK))
    assert [e.message for e in check.iter_errors(answer.json())] == []
    assert len(answer.json()["recorded"]) == 1
