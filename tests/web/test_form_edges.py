"""The clinician form at its edges (issue 17): who posts is judged before the body is read, a
field with U+0000 is refused naming it, and a pasted bundle is held to the JSON limits of the
API, each as a clear page and never a 500 or an outage; no traceback in the log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db.models import Evaluation
from tests.astis_patients import ASTIS_CANDIDATE
from tests.fhir.bundles import ssc_bundle
from tests.web.conftest import csrf_of, form_fields, sessions

NUL = "\x00"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


class Unread:
    """A request body that notes whether anyone read it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.read = False

    def __iter__(self) -> Iterator[bytes]:
        self.read = True
        yield self.data


def _count(client: TestClient) -> int:
    with sessions(client)() as session:
        return session.query(Evaluation).count()


@pytest.mark.parametrize("path", ["/", "/fhir"])
def test_a_post_from_no_one_signed_in_is_not_read(accounts_app: TestClient, path: str) -> None:
    sent = Unread(b"bundle=" + b"%5B" * 100_000)
    answer = accounts_app.post(path, content=iter(sent), headers=FORM, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/sign-in")
    assert not sent.read


@pytest.mark.parametrize("path", ["/sign-in", "/sign-out"])
def test_a_sign_in_without_the_sites_cookie_is_refused_unread(
    accounts_app: TestClient, path: str
) -> None:
    sent = Unread(b"username=" + b"a" * 100_000)
    answer = accounts_app.post(path, content=iter(sent), headers=FORM, follow_redirects=False)
    assert answer.status_code == 403
    assert "security token" in answer.text
    assert not sent.read
    other_site = Unread(b"username=x")
    accounts_app.get("/sign-in")  # the cookie, but posted from elsewhere
    answer = accounts_app.post(
        path, content=iter(other_site), headers={**FORM, "Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert not other_site.read


@pytest.mark.parametrize("field", ["username", "password"])
def test_nul_in_the_sign_in_form_is_refused_naming_it(accounts_app: TestClient, field: str) -> None:
    token = csrf_of(accounts_app.get("/sign-in").text)
    data = {"username": "dr.ng", "password": "a passphrase", "csrf_token": token}
    data[field] = data[field] + NUL
    answer = accounts_app.post("/sign-in", data=data, follow_redirects=False)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")
    assert f"The {field} contains U+0000" in answer.text
    assert "retry-after" not in answer.headers


def test_a_sign_in_form_of_more_than_a_few_kilobytes_is_refused(accounts_app: TestClient) -> None:
    token = csrf_of(accounts_app.get("/sign-in").text)
    data = {"username": "x" * 5000, "password": "p", "csrf_token": token}
    answer = accounts_app.post("/sign-in", data=data)
    assert answer.status_code == 400


def test_nul_in_a_form_field_is_refused_naming_it(development: TestClient) -> None:
    token = csrf_of(development.get("/").text)
    fields = {**form_fields(ASTIS_CANDIDATE), "csrf_token": token, "lvef_percent": "60" + NUL}
    answer = development.post("/", data=fields)
    assert answer.status_code == 422
    assert "Form refused" in answer.text
    assert "&#39;lvef_percent&#39; contains U+0000" in answer.text
    named = development.post("/", data={"csrf_token": token, "age" + NUL: "1"})
    assert named.status_code == 422
    assert "age\\u0000" in named.text
    assert _count(development) == 0


def _bundle_page(client: TestClient, text: str, *, upload: bool = False) -> str:
    token = csrf_of(client.get("/").text)
    if upload:
        answer = client.post(
            "/fhir",
            data={"csrf_token": token},
            files={"bundle_file": ("bundle.json", text.encode())},
        )
    else:
        answer = client.post("/fhir", data={"csrf_token": token, "bundle": text})
    assert answer.status_code == 422, answer.text[:500]
    assert 'id="e-bundle"' in answer.text
    html: str = answer.text
    return html[html.find('id="e-bundle"') :][:600]


def _observation_bundle(code: Any, value: str = "60") -> str:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": {"value": "@", "unit": "%"},
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
    return json.dumps(bundle).replace('"@"', value)


@pytest.mark.parametrize("upload", [False, True])
def test_a_hostile_bundle_is_named_next_to_the_bundle(
    development: TestClient, upload: bool
) -> None:
    deep = _bundle_page(development, "[" * 1000, upload=upload)
    assert "nest deeper than 32 levels" in deep
    nul = _bundle_page(development, _observation_bundle("10230-1" + NUL), upload=upload)
    assert "entry[0].resource.code.coding[0].code: contains U+0000" in nul
    infinite = _bundle_page(development, _observation_bundle("10230-1", "1e400"), upload=upload)
    assert "entry[0].resource.valueQuantity.value: expected a finite number" in infinite
    huge = _bundle_page(development, _observation_bundle("10230-1", "9" * 401), upload=upload)
    assert "valueQuantity.value: expected a finite number" in huge
    assert _count(development) == 0


def test_a_bundle_within_the_limits_still_fills_the_form(development: TestClient) -> None:
    token = csrf_of(development.get("/").text)
    bundle = json.dumps(ssc_bundle(datetime.now(UTC).date()))
    answer = development.post(
        "/fhir", data={"csrf_token": token, "bundle": bundle}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text[:500]


def test_a_cookie_holding_nul_is_neither_believed_nor_echoed(accounts_app: TestClient) -> None:
    accounts_app.cookies.set("eligo-session", '"\\000abc"')
    accounts_app.cookies.set("eligo-csrf", '"' + "\\000" * 30 + '"')
    page = accounts_app.get("/", follow_redirects=False)
    assert page.status_code == 303  # not signed in
    sign_in = accounts_app.get("/sign-in")
    assert sign_in.status_code == 200
    assert NUL not in csrf_of(sign_in.text)
