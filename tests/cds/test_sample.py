"""The committed sample CDS Hooks request (docs/cds-hooks/patient-view.json): made from the
Synthea fixture with exactly the prefetch keys the running service's discovery document
declares, and answered with cards by the real service, as the guide sends it (development
mode, no JWT) and as a CDS client that signs its calls sends it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.cds.conftest import CdsClient
from tests.cds.sample import SAMPLE, SERVICE, render, sample_request, templates_of
from tests.conftest import SHIPPED_RULES


@pytest.fixture(scope="module")
def local_eligo(app_database_url: str) -> Iterator[TestClient]:
    """Eligo as the guide runs it: development mode, authentication off, reached as
    localhost:8000 (a Host the CDS service accepts without ELIGO_PUBLIC_URL)."""
    settings = Settings(rules_dir=SHIPPED_RULES, database_url=app_database_url, auth=False)
    app = create_app(settings)
    with TestClient(app, base_url="http://localhost:8000", raise_server_exceptions=False) as http:
        yield http


def _committed() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(SAMPLE.read_text())
    return found


def test_the_committed_sample_is_made_from_the_discovery_document(
    local_eligo: TestClient,
) -> None:
    templates = templates_of(local_eligo.get("/cds-services").json())
    made = render(sample_request(templates))
    assert SAMPLE.read_text() == made, (
        "docs/cds-hooks/patient-view.json is out of date: run `.venv/bin/python -m "
        "tests.cds.sample` and commit the result"
    )
    assert list(_committed()["prefetch"]) == list(templates)  # every key, none of its own


def test_every_prefetch_value_is_the_patients() -> None:
    sample = _committed()
    patient = sample["context"]["patientId"]
    assert sample["prefetch"]["patient"]["id"] == patient
    for key, value in sample["prefetch"].items():
        if key == "patient":
            continue
        assert (value["resourceType"], value["type"]) == ("Bundle", "searchset"), key
        for entry in value.get("entry", []):
            assert entry["resource"]["subject"]["reference"] == f"Patient/{patient}", key


def _hsct(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    assert sorted(c["source"]["topic"]["code"] for c in cards) == ["car_t", "hsct", "msc"]
    return next(c for c in cards if c["source"]["topic"]["code"] == "hsct")


def test_the_guides_curl_call_gets_cards(local_eligo: TestClient) -> None:
    """`curl -H 'content-type: application/json' -d @docs/cds-hooks/patient-view.json
    localhost:8000/cds-services/eligo-patient-view`, as the guide says."""
    response = local_eligo.post(
        f"/cds-services/{SERVICE}",
        content=SAMPLE.read_bytes(),
        headers={"content-type": "application/json"},
    )
    hsct = _hsct(response)
    assert hsct["summary"].startswith("Autologous HSCT for SSc: ")
    assert hsct["links"][0]["url"].startswith("http://localhost:8000/?evaluation=")


def test_a_signing_cds_client_gets_the_same_cards(cds: CdsClient) -> None:
    """The sandbox's way: a JWT from a trusted issuer, the whole record in the prefetch (so
    nothing is fetched from a FHIR server)."""
    hsct = _hsct(cds.call(SERVICE, _committed()))
    assert hsct["summary"].startswith("Autologous HSCT for SSc: ")
