"""CDS Hooks over real HTTP end to end: a real `eligo serve` process with authentication on,
configured by environment variables as an operator would, trusting the sandbox issuer; the
tests' loopback FHIR server; a CDS client signing its JWTs for the exact URL it calls."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.cds.conftest import PATIENT, hook_request
from tests.cds.fhir_server import FhirStore, fhir_server
from tests.cds.keys import SANDBOX_ISSUER, claims, sandbox_jwks, sign
from tests.e2e.helpers import Server, eligo_process
from tests.fhir.bundles import ssc_bundle, today

pytestmark = pytest.mark.e2e
SERVICE = "eligo-patient-view"


@pytest.fixture(scope="module")
def fhir_base() -> Iterator[str]:
    store = FhirStore()
    store.load(ssc_bundle(today()))
    with fhir_server(store) as base:
        yield base


@pytest.fixture(scope="module")
def server(fhir_base: str) -> Iterator[Server]:
    env = {
        "ELIGO_AUTH": "on",
        "ELIGO_CDS_ISSUERS": json.dumps({SANDBOX_ISSUER: {"jwks": sandbox_jwks()}}),
        "ELIGO_CDS_FHIR_SERVERS": json.dumps([fhir_base + "/"]),
    }
    with eligo_process(env) as running:
        yield running


def _signed(url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign(claims(aud=url))}"}


def test_patient_view_fetches_decides_records_and_takes_feedback(
    server: Server, fhir_base: str
) -> None:
    url = f"{server.base}/cds-services/{SERVICE}"
    body = hook_request(fhir_base, PATIENT)
    answer = httpx.post(url, json=body, headers=_signed(url), timeout=30)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    assert sorted(c["source"]["topic"]["code"] for c in cards) == ["car_t", "hsct", "msc"]
    link = cards[0]["links"][0]["url"]
    assert link.startswith(server.base + "/?evaluation=")
    feedback_url = url + "/feedback"
    item = {
        "card": cards[0]["uuid"],
        "outcome": "accepted",
        "outcomeTimestamp": "2026-11-22T09:00:00Z",
    }
    stored = httpx.post(feedback_url, json={"feedback": [item]}, headers=_signed(feedback_url))
    assert stored.status_code == 200, stored.text
    # A token signed for the service URL is not good for its feedback URL.
    other = _signed(url)
    assert httpx.post(feedback_url, json={"feedback": [item]}, headers=other).status_code == 401
    assert "ssc-1" not in server.output()  # the patient id never reaches the log


def test_discovery_is_served_to_browsers(server: Server) -> None:
    answer = httpx.get(
        f"{server.base}/cds-services", headers={"Origin": "https://sandbox.cds-hooks.org"}
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert {s["id"] for s in answer.json()["services"]} >= {SERVICE}
