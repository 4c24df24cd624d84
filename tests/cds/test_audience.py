"""The audience of CDS client JWTs and the base of card links: ELIGO_PUBLIC_URL, or else the
request's Host only if it is allow-listed (ELIGO_CDS_ALLOWED_HOSTS). A caller chooses its
Host header: trusted blindly, a token minted for another service would be accepted when sent
with that service's Host, and the cards would link there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.cds.issuers import allowed_host, split_host
from app.cds.jwt import host_allowed, public_base
from app.errors import Unauthorized
from app.main import create_app
from app.settings import Settings
from tests.cds.conftest import CdsClient

SERVICE = "eligo-patient-view"
PATH = f"/cds-services/{SERVICE}"
PUBLIC = "https://eligo.example.org"
EVIL = "evil.example"


def _cards(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    assert cards
    return cards


def _challenge(response: Any) -> str:
    assert response.status_code == 401, response.text
    challenge: str = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="eligo", error="invalid_token"')
    return challenge


# --- the rules, on their own -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "parsed"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost:8000", ("localhost", 8000)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::1]", ("::1", None)),
        ("localhost:0", None),
        ("localhost:65536", None),
        ("evil.example@localhost", None),
        ("localhost/x", None),
        ("localhost:", None),
        ("local host", None),
        ("", None),
        ("::1", None),  # a Host header brackets an IPv6 address
    ],
)
def test_split_host(host: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(host) == parsed


def test_allow_list_entries_may_be_bare_ipv6_and_bad_ones_are_named() -> None:
    assert allowed_host("::1") == ("::1", None)
    assert allowed_host("[::1]:8443") == ("::1", 8443)
    assert allowed_host("Eligo.Local:8000") == ("eligo.local", 8000)
    with pytest.raises(ValueError, match=r"'https://eligo\.local' is not a host name"):
        allowed_host("https://eligo.local")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost:8000", True),  # an entry without a port allows any port
        ("LOCALHOST", True),
        ("[::1]:9000", True),
        ("eligo.local:8443", True),
        ("eligo.local:8444", False),  # this entry names its port
        ("eligo.local", False),
        (EVIL, False),
        ("localhost.evil.example", False),
        ("evil.example@localhost", False),
        (None, False),
        ("", False),
    ],
)
def test_host_allowed(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, ["localhost", "::1", "eligo.local:8443"]) is allowed


def test_public_url_wins_over_any_host() -> None:
    base = public_base(PUBLIC + "/", "http://evil.example/", EVIL, [])
    assert base == PUBLIC
    assert public_base(None, "http://localhost:8000/", "localhost:8000", ["localhost"]) == (
        "http://localhost:8000"
    )
    with pytest.raises(Unauthorized) as refused:
        public_base(None, 'http://evil"host/', 'evil"host', ["localhost"])
    assert '"' not in refused.value.detail  # the Host cannot break the challenge
    assert "ELIGO_PUBLIC_URL" in refused.value.detail


# --- the service, without ELIGO_PUBLIC_URL (development) -------------------------------------


def test_a_token_minted_for_another_host_is_refused_with_that_host(cds: CdsClient) -> None:
    """The attack of issue 17: a token whose aud is another service's URL, sent with that
    service's Host. Before the allow-list it was accepted, and the cards linked there."""
    headers = {**cds.headers(PATH, aud=f"http://{EVIL}{PATH}"), "Host": EVIL}
    refused = cds.http.post(PATH, json=cds.body(), headers=headers)
    challenge = _challenge(refused)
    assert "Host evil.example is not in ELIGO_CDS_ALLOWED_HOSTS" in challenge
    assert "ELIGO_PUBLIC_URL" in refused.json()["detail"]
    feedback = cds.http.post(PATH + "/feedback", json={"feedback": []}, headers=headers)
    assert "ELIGO_CDS_ALLOWED_HOSTS" in _challenge(feedback)


def test_an_allowed_host_is_the_audience_and_the_base_of_card_links(cds: CdsClient) -> None:
    cards = _cards(cds.call(SERVICE, cds.body()))
    assert all(c["links"][0]["url"].startswith("http://testserver/?evaluation=") for c in cards)
    # the same allowed Host, but the token names another: refused by its aud
    other = cds.http.post(
        PATH, json=cds.body(), headers=cds.headers(PATH, aud=f"http://{EVIL}{PATH}")
    )
    assert "aud does not match the URL called" in _challenge(other)


@pytest.fixture(scope="module")
def open_app(cds_app_settings: Settings) -> Iterator[TestClient]:
    """Authentication off (the quick start): no token, but the cards still link to the Host."""
    settings = cds_app_settings.model_copy(update={"auth": False})
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        yield http


def test_without_authentication_links_never_follow_a_host_not_allowed(
    open_app: TestClient, fhir_base: str
) -> None:
    plain = CdsClient(open_app, fhir_base)
    refused = open_app.post(PATH, json=plain.body(), headers={"Host": EVIL})
    assert "Host evil.example" in _challenge(refused)
    cards = _cards(open_app.post(PATH, json=plain.body()))
    assert cards[0]["links"][0]["url"].startswith("http://testserver/?evaluation=")


# --- the service with ELIGO_PUBLIC_URL --------------------------------------------------------


@pytest.fixture(scope="module")
def public(cds_app_settings: Settings, fhir_base: str) -> Iterator[CdsClient]:
    """Behind a proxy at PUBLIC; no Host is allow-listed, and none needs to be."""
    settings = cds_app_settings.model_copy(update={"public_url": PUBLIC, "cds_allowed_hosts": []})
    with TestClient(create_app(settings), raise_server_exceptions=False) as http:
        yield CdsClient(http, fhir_base, base=PUBLIC)


def test_with_a_public_url_the_host_header_is_ignored(public: CdsClient) -> None:
    for host in ("testserver", EVIL):
        headers = {**public.headers(PATH), "Host": host}
        cards = _cards(public.http.post(PATH, json=public.body(), headers=headers))
        assert all(c["links"][0]["url"].startswith(PUBLIC + "/?evaluation=") for c in cards)
        assert all(c["source"]["url"].startswith(PUBLIC + "/v1/rulesets") for c in cards)
        assert all(f"]({PUBLIC}/?evaluation=" in c["detail"] for c in cards)
    # a token minted for the Host it is sent with is still not for this service
    headers = {**public.headers(PATH, aud=f"http://{EVIL}{PATH}"), "Host": EVIL}
    refused = public.http.post(PATH, json=public.body(), headers=headers)
    assert "aud does not match the URL called" in _challenge(refused)
