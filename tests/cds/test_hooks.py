"""The CDS Hooks service end to end: discovery, patient-view with full, partial and no
prefetch (then fetched from a real loopback FHIR server), 412 when the data cannot be had,
cards, the audit trail, feedback, JWT and CORS wiring, and bad input."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cds.cards import DETAIL_LIMIT
from app.db import cds as records
from tests.cds.conftest import EHR_TOKEN, CdsClient
from tests.cds.fhir_server import Behaviour, FhirStore

SERVICE = "eligo-patient-view"


@pytest.fixture(scope="module")
def templates(cds: CdsClient) -> dict[str, str]:
    services = cds.http.get("/cds-services").json()["services"]
    found: dict[str, str] = next(s for s in services if s["id"] == SERVICE)["prefetch"]
    return found


@pytest.fixture(autouse=True)
def fresh(store: FhirStore) -> FhirStore:
    """The FHIR server as it starts, with its request log emptied, for every test."""
    store.behaviour = Behaviour()
    store.requests.clear()
    return store


def test_discovery_offers_patient_view_and_order_select(cds: CdsClient) -> None:
    services = {s["id"]: s for s in cds.http.get("/cds-services").json()["services"]}
    assert {s["hook"] for s in services.values()} == {"patient-view", "order-select"}
    prefetch = services[SERVICE]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert "http://snomed.info/sct|89155008" in prefetch["conditions"]
    lvef = prefetch["obs-lvef_percent"]
    assert "code=http://loinc.org|10230-1" in lvef
    assert lvef.endswith("&status=final,amended,corrected&_sort=-date&_count=1")
    # every coded observed feature of the catalogue has its search, the newest ones included
    assert "code=http://loinc.org|718-7&" in prefetch["obs-hemoglobin_g_dl"]
    assert "code=http://loinc.org|1975-2&" in prefetch["obs-bilirubin_total_mg_dl"]
    assert all(s["description"] and s["title"] for s in services.values())


def _cards(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


def test_full_prefetch_gives_cards_without_fetching(
    cds: CdsClient, templates: dict[str, str], fresh: FhirStore
) -> None:
    prefetch = cds.prefetch(templates)
    fresh.requests.clear()
    cards = _cards(cds.call(SERVICE, cds.body(prefetch=prefetch)))
    assert fresh.requests == []  # everything came with the call
    # The SSc patient: cards for HSCT, MSC and CAR-T in SSc, none for the SLE rule sets.
    topics = sorted(c["source"]["topic"]["code"] for c in cards)
    assert topics == ["car_t", "hsct", "msc"]
    assert all(" for SSc: " in c["summary"] for c in cards)
    for card in cards:
        assert len(card["summary"]) < 140
        assert card["indicator"] in {"info", "warning", "critical"}
        assert card["uuid"]
        assert card["links"][0]["type"] == "absolute"
        assert "?evaluation=" in card["links"][0]["url"]
    hsct = next(c for c in cards if c["source"]["topic"]["code"] == "hsct")
    assert "*What to measure next:*" in hsct["detail"]
    # the trace, risks and references are a link away, in the form on this evaluation
    assert f"[open in Eligo]({hsct['links'][0]['url']})" in hsct["detail"]
    assert len(hsct["detail"].encode()) <= DETAIL_LIMIT


def test_each_cards_source_url_answers_without_a_redirect(
    cds: CdsClient, templates: dict[str, str]
) -> None:
    cards = _cards(cds.call(SERVICE, cds.body(prefetch=cds.prefetch(templates))))
    assert any(c["source"]["url"].endswith("/v1/rulesets") for c in cards)  # several protocols
    assert any(not c["source"]["url"].endswith("/v1/rulesets") for c in cards)  # one
    for card in cards:
        url = card["source"]["url"]
        assert url.startswith(cds.base + "/")
        # sent without a credential: the rules are public, and an EHR opens the link in a
        # plain browser
        response = cds.http.get(url.removeprefix(cds.base), follow_redirects=False)
        assert response.status_code == 200, (url, response.status_code)
        assert response.headers["content-type"].startswith("application/json")


def test_the_decision_is_audited_with_hook_instance_and_cards(
    cds: CdsClient, templates: dict[str, str], client: TestClient
) -> None:
    body = cds.body(prefetch=cds.prefetch(templates))
    cards = _cards(cds.call(SERVICE, body))
    evaluation_id = cards[0]["links"][0]["url"].rsplit("=", 1)[1]
    record = client.get(f"/v1/evaluations/{evaluation_id}").json()
    assert record["channel"] == "cds-hooks"
    assert record["hook_instance"] == body["hookInstance"]
    assert record["result"]["cards"] == cards
    assert record["input"]["received"]["call"]["fetched"] == []
    assert record["patient_pseudonym"]  # the EHR's patient id, only as a pseudonym
    assert "ssc-1" not in str(record)


def test_without_prefetch_the_service_fetches_with_the_ehr_token(
    cds: CdsClient, templates: dict[str, str], fresh: FhirStore
) -> None:
    fetched = _cards(cds.call(SERVICE, cds.body()))
    assert len(fresh.requests) == len(templates)  # one search per template, none left out
    asked = " ".join(path for path, _ in fresh.requests)
    assert "718-7" in asked
    assert "1975-2" in asked
    assert {auth for _, auth in fresh.requests} == {f"Bearer {EHR_TOKEN}"}
    prefetched = _cards(cds.call(SERVICE, cds.body(prefetch=cds.prefetch(templates))))
    same = [(c["summary"], c["indicator"], _unlinked(c["detail"])) for c in fetched]
    assert same == [(c["summary"], c["indicator"], _unlinked(c["detail"])) for c in prefetched]


def _unlinked(detail: str) -> str:
    """A card's detail without its evaluation's id (each call is an evaluation of its own)."""
    return re.sub(r"\?evaluation=[0-9a-f-]+", "?evaluation=…", detail)


def test_null_and_absent_keys_are_fetched_and_only_they(
    cds: CdsClient, templates: dict[str, str], fresh: FhirStore
) -> None:
    prefetch: dict[str, Any] = cds.prefetch(templates)
    prefetch["obs-lvef_percent"] = None
    del prefetch["conditions"]
    fresh.requests.clear()
    _cards(cds.call(SERVICE, cds.body(prefetch=prefetch)))
    paths = sorted(path.split("?")[0].rsplit("/", 1)[1] for path, _ in fresh.requests)
    assert paths == ["Condition", "Observation"]


def test_fhir_server_errors_are_retried(cds: CdsClient, fresh: FhirStore) -> None:
    fresh.behaviour = Behaviour(fail_times=2)
    _cards(cds.call(SERVICE, cds.body()))


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        (Behaviour(fail_times=10_000), "HTTP 500 after 3 attempts"),
        (Behaviour(token="another-token"), "HTTP 401"),  # noqa: S106 - a test token
    ],
)
def test_data_that_cannot_be_had_is_412(
    cds: CdsClient, fresh: FhirStore, behaviour: Behaviour, reason: str
) -> None:
    fresh.behaviour = behaviour
    response = cds.call(SERVICE, cds.body())
    assert response.status_code == 412, response.text
    assert reason in response.json()["detail"]


def test_missing_prefetch_without_fhir_server_is_412(cds: CdsClient) -> None:
    body = cds.body()
    del body["fhirServer"]
    response = cds.call(SERVICE, body)
    assert response.status_code == 412
    detail = response.json()["detail"]
    assert "no fhirServer" in detail
    # What to do about it: the prefetch keys' templates, or a FHIR server Eligo may search.
    assert "GET /cds-services" in detail
    assert "ELIGO_CDS_FHIR_SERVERS" in detail


def test_a_fhir_server_not_allowed_is_never_contacted(cds: CdsClient) -> None:
    body = cds.body(fhirServer="http://127.0.0.1:9/fhir")
    response = cds.call(SERVICE, body)
    assert response.status_code == 412
    assert "not an allowed FHIR server" in response.json()["detail"]


def test_another_patients_data_is_refused(cds: CdsClient, templates: dict[str, str]) -> None:
    prefetch = cds.prefetch(templates)
    prefetch["patient"] = {**prefetch["patient"], "id": "someone-else"}
    lvef = prefetch["obs-lvef_percent"]["entry"][0]["resource"]
    lvef["subject"] = {"reference": "Patient/someone-else"}
    response = cds.call(SERVICE, cds.body(prefetch=prefetch))
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"prefetch.patient", "prefetch.obs-lvef_percent"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hook": "order-sign"}, "hook"),
        ({"context": {"patientId": "ssc-1&code=x"}}, "context.patientId"),
        ({"context": {"userId": "Practitioner/1"}}, "context.patientId"),
        ({"hookInstance": 7}, "hookInstance"),
        ({"fhirServer": "file:///etc/passwd"}, "fhirServer"),
        ({"prefetch": {"patient": "Patient/ssc-1"}}, "prefetch.patient"),
        ({"prefetch": []}, "prefetch"),
        ({"fhirAuthorization": {"access_token": "x", "token_type": "MAC"}}, "fhirAuthorization"),
    ],
)
def test_bad_requests_name_the_field(cds: CdsClient, change: dict[str, Any], field: str) -> None:
    response = cds.call(SERVICE, {**cds.body(), **change})
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"])


def test_malformed_json_unknown_service_and_oversized_bodies(cds: CdsClient) -> None:
    path = f"/cds-services/{SERVICE}"
    headers = {**cds.headers(path), "Content-Type": "application/json"}
    malformed = cds.http.post(path, content=b'{"hook": ', headers=headers)
    assert malformed.status_code == 400
    assert cds.call("no-such-service", cds.body()).status_code == 404
    huge = {**cds.body(), "prefetch": {"patient": {"resourceType": "Patient", "x": "a" * 2**21}}}
    assert cds.call(SERVICE, huge).status_code == 413


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "http://testserver/cds-services/another"}, "aud"),
        ({"exp": 1_000_000_000, "iat": 999_999_000}, "expired"),
        ({"iss": "https://unknown.example"}, "iss"),
    ],
)
def test_calls_need_a_valid_client_jwt(cds: CdsClient, claims: dict[str, Any], reason: str) -> None:
    response = cds.call(SERVICE, cds.body(), **claims)
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_no_token_and_a_replayed_token_are_401(cds: CdsClient) -> None:
    path = f"/cds-services/{SERVICE}"
    assert cds.http.post(path, json=cds.body()).status_code == 401
    headers = cds.headers(path)
    first = cds.http.post(path, json=cds.body(fhirServer=None), headers=headers)
    assert first.status_code == 412  # authenticated; the data was missing
    again = cds.http.post(path, json=cds.body(), headers=headers)
    assert again.status_code == 401
    assert "jti" in again.json()["detail"]


def test_feedback_is_stored_and_linked_to_the_decision(
    cds: CdsClient, templates: dict[str, str]
) -> None:
    cards = _cards(cds.call(SERVICE, cds.body(prefetch=cds.prefetch(templates))))
    path = f"/cds-services/{SERVICE}/feedback"
    feedback = {
        "feedback": [
            {
                "card": cards[0]["uuid"],
                "outcome": "overridden",
                "overrideReason": {"userComment": "discussed at the MDT"},
                "outcomeTimestamp": "2026-11-22T10:00:00Z",
            },
            {
                "card": cards[1]["uuid"],
                "outcome": "accepted",
                "outcomeTimestamp": "2026-11-22T10:01:00+01:00",
            },
        ]
    }
    response = cds.http.post(path, json=feedback, headers=cds.headers(path))
    assert response.status_code == 200, response.text
    assert len(response.json()["recorded"]) == 2
    evaluation_id = cards[0]["links"][0]["url"].rsplit("=", 1)[1]
    with cds.http.app.state.sessions() as session:  # type: ignore[attr-defined]
        stored = records.feedback_of(session, evaluation_id)
    assert [(f.card_uuid, f.outcome) for f in stored] == [
        (cards[0]["uuid"], "overridden"),
        (cards[1]["uuid"], "accepted"),
    ]
    assert stored[0].override_reason == {"reason": None, "userComment": "discussed at the MDT"}
    assert stored[0].issuer == "https://sandbox.cds-hooks.org"


def test_feedback_on_an_unknown_card_stores_nothing(cds: CdsClient) -> None:
    path = f"/cds-services/{SERVICE}/feedback"
    unknown = {
        "feedback": [
            {
                "card": "no-such-card",
                "outcome": "accepted",
                "outcomeTimestamp": "2026-11-22T10:00:00Z",
            }
        ]
    }
    response = cds.http.post(path, json=unknown, headers=cds.headers(path))
    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] == "feedback[0].card"
    naive = {"feedback": [{**unknown["feedback"][0], "outcomeTimestamp": "2026-11-22T10:00:00"}]}
    response = cds.http.post(path, json=naive, headers=cds.headers(path))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "feedback[0].outcomeTimestamp"


def test_cors_answers_cds_preflights_only(cds: CdsClient) -> None:
    preflight = {
        "Origin": "https://sandbox.cds-hooks.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    answer = cds.http.options(f"/cds-services/{SERVICE}", headers=preflight)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    api = cds.http.options("/v1/evaluations", headers=preflight)
    assert "access-control-allow-origin" not in api.headers


def test_search_pages_are_followed(cds: CdsClient, fresh: FhirStore) -> None:
    fresh.behaviour = Behaviour(page_size=1)
    paged = _cards(cds.call(SERVICE, cds.body()))
    assert any("_offset=1" in path for path, _ in fresh.requests)  # the second diagnosis
    fresh.behaviour = Behaviour()
    whole = _cards(cds.call(SERVICE, cds.body()))
    assert [_unlinked(c["detail"]) for c in paged] == [_unlinked(c["detail"]) for c in whole]


def test_the_sle_patient_gets_cumulative_cyclophosphamide_from_the_ehr(
    cds: CdsClient, templates: dict[str, str], client: TestClient
) -> None:
    prefetch = cds.prefetch(templates, patient="sle-1")
    included = prefetch["medications-administration"]["entry"]
    assert {e["search"]["mode"] for e in included} == {"match", "include"}  # the Medication
    cards = _cards(cds.call(SERVICE, cds.body(patient="sle-1", prefetch=prefetch)))
    assert all(" for SLE: " in c["summary"] for c in cards)
    evaluation_id = cards[0]["links"][0]["url"].rsplit("=", 1)[1]
    used = client.get(f"/v1/evaluations/{evaluation_id}").json()["result"]["fhir"]["used"]
    assert used["prior_cyclophosphamide_iv_g"]["value"] == 3.0
    assert used["prior_cyclophosphamide_iv_courses"]["value"] == 6
    assert used["prior_cyclophosphamide_iv_g"]["resource"].startswith("MedicationAdministration/")
    fetched = _cards(cds.call(SERVICE, cds.body(patient="sle-1")))  # no prefetch: same cards
    assert [_unlinked(c["detail"]) for c in fetched] == [_unlinked(c["detail"]) for c in cards]


def _draft(order_id: str, rxnorm: str, mg: float) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/ssc-1"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm}]
        },
        "dosageInstruction": [
            {
                "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "code": "mg"}}],
            }
        ],
    }


def _order_select(cds: CdsClient, selections: list[str]) -> Any:
    drafts = [_draft("cyc", "3002", 750), _draft("mmf", "68149", 1000)]
    context = {
        "userId": "Practitioner/example",
        "patientId": "ssc-1",
        "selections": selections,
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        },
    }
    return cds.call("eligo-order-select", cds.body(hook="order-select", context=context))


def test_order_select_says_what_a_cyclophosphamide_order_would_change(
    cds: CdsClient, client: TestClient
) -> None:
    cards = _cards(_order_select(cds, ["MedicationRequest/cyc", "MedicationRequest/mmf"]))
    assert [c["summary"] for c in cards] == [
        "If given, this order changes Autologous HSCT for SSc: undecided to ruled out under UPSIDE"
    ]
    assert cards[0]["indicator"] == "warning"
    assert "(patient: Prior alkylating agent, TBI or TLI: yes, " in cards[0]["detail"]
    evaluation_id = cards[0]["links"][0]["url"].rsplit("=", 1)[1]
    record = client.get(f"/v1/evaluations/{evaluation_id}").json()
    assert record["input"]["received"]["call"]["what_if"] == ["MedicationRequest/cyc"]
    used = record["result"]["fhir"]["used"]["prior_alkylating_or_irradiation"]
    assert used["resource"] == "MedicationAdministration/what-if-cyc"


def test_order_select_is_silent_for_orders_that_change_nothing(
    cds: CdsClient, fresh: FhirStore
) -> None:
    assert _cards(_order_select(cds, ["MedicationRequest/mmf"])) == []
    assert _cards(_order_select(cds, [])) == []  # the cyclophosphamide order is not selected
    assert fresh.requests == []  # nothing to decide, so nothing fetched


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        (
            {"valueQuantity": {"value": 60, "unit": "furlong", "code": "[fur_us]"}},
            "value[x]",
            "unit",
        ),
        ({"valueQuantity": {"value": 160, "unit": "%", "code": "%"}}, "value[x]", "out_of_range"),
        ({"effectiveDateTime": "last Tuesday"}, "effectiveDateTime", "fhir"),
        ({"resourceType": "NotAResource"}, "resourceType", "unknown_type"),
    ],
)
def test_bad_prefetched_resources_are_named_by_their_prefetch_key(
    cds: CdsClient, templates: dict[str, str], change: dict[str, Any], field: str, code: str
) -> None:
    prefetch = cds.prefetch(templates)
    entry = prefetch["obs-lvef_percent"]["entry"][0]
    entry["resource"] = {**entry["resource"], **change}
    response = cds.call(SERVICE, cds.body(prefetch=prefetch))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [f"prefetch.obs-lvef_percent.{field}"]
    assert errors[0]["code"].startswith(code)
