"""Cards carry a SMART launch link when the calling EHR's FHIR server is one Eligo may be
launched from (ELIGO_SMART_ISSUERS), and none otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings, SmartClient
from tests.cds.conftest import CdsClient

SERVICE = "eligo-patient-view"


@pytest.fixture(scope="module")
def smart_cds(cds_app_settings: Settings, fhir_base: str) -> Iterator[CdsClient]:
    settings = cds_app_settings.model_copy(
        update={"smart_issuers": {fhir_base: SmartClient(client_id="eligo")}}
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        yield CdsClient(http, fhir_base)


def _links(response: Any) -> list[list[dict[str, str]]]:
    assert response.status_code == 200, response.text
    return [card["links"] for card in response.json()["cards"]]


def test_cards_for_an_allowed_issuer_link_to_the_smart_launch(smart_cds: CdsClient) -> None:
    cards = _links(smart_cds.call(SERVICE, smart_cds.body()))
    assert cards
    for links in cards:
        assert links[0]["type"] == "absolute"
        assert links[1] == {
            "label": "Open in Eligo with the chart's record",
            "url": "http://testserver/smart/launch",
            "type": "smart",
        }


def test_cards_for_another_fhir_server_have_no_smart_link(
    smart_cds: CdsClient, cds: CdsClient
) -> None:
    """The launch would be refused (its `iss` not allowed), so no card offers it; and
    without SMART configured, no card does either."""
    body = smart_cds.body()
    body["fhirServer"] = "http://127.0.0.1:9/other-fhir"
    body["prefetch"] = smart_cds.prefetch(
        smart_cds.http.get("/cds-services").json()["services"][0]["prefetch"]
    )
    for links in _links(smart_cds.call(SERVICE, body)):
        assert [link["type"] for link in links] == ["absolute"]
    for links in _links(cds.call(SERVICE, cds.body())):
        assert [link["type"] for link in links] == ["absolute"]
