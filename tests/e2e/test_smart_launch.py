"""SMART App Launch (EHR launch) end to end: Eligo under uvicorn with authentication on and a
clinician account, a loopback EHR (authorisation server + FHIR server serving a Synthea
patient, tests/e2e/smart_ehr.py), and an httpx client with a cookie jar following every
redirect between them as a browser would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.db import audit
from app.engine import words
from tests.e2e.smart_ehr import (
    CLIENT_ID,
    PATIENT_ID,
    USERNAME,
    Ehr,
    Stack,
    launch_stack,
    sign_in,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with launch_stack(tmp_path_factory.mktemp("smart")) as started:
        yield started


@pytest.fixture
def ehr(stack: Stack) -> Ehr:
    """The EHR, back to its normal behaviour and with no requests recorded."""
    for one in (stack.ehr, stack.stranger):
        one.s256, one.corrupt_challenge, one.fhir_status = True, False, None
        one.requests.clear()
        one.problems.clear()
        one.token_requests.clear()
    return stack.ehr


@pytest.fixture
def browser_like() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=True, timeout=30) as client:
        yield client


@pytest.fixture
def signed_in(stack: Stack, browser_like: httpx.Client) -> httpx.Client:
    assert sign_in(browser_like, stack.eligo).status_code == 200
    return browser_like


def _field_value(html: str, feature: str) -> str:
    found = re.search(rf'id="f-{feature}"[^>]*value="([^"]*)"', html, re.S)
    assert found, f"no field {feature}"
    return found.group(1)


def test_a_launch_from_the_ehr_opens_the_form_filled_from_the_patients_record(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client
) -> None:
    before = stack.evaluations()
    answer = signed_in.get(stack.launch_url())
    assert answer.status_code == 200, answer.text[:2000]
    assert ehr.problems == []
    # Through the EHR's authorisation and back, to the recorded evaluation.
    hops = [str(r.url).split("?")[0] for r in answer.history]
    assert hops == [
        f"{stack.eligo}/smart/launch",
        f"{ehr.base}/auth/authorize",
        f"{stack.eligo}/smart/callback",
    ]
    assert re.fullmatch(r"evaluation=[0-9a-f-]{36}", answer.url.query.decode())
    html = answer.text
    assert _field_value(html, "age_years") == str(_age(1953, 5, 22))
    assert re.search(r'<option value="female" selected>', html)
    assert "From FHIR: Patient" in html
    assert "From FHIR: no active, confirmed Condition in the record" in html
    assert "by dr.ng" in html  # recorded as the signed-in clinician's
    # Said in the vocabulary's words, not as the stored channel name.
    assert f"Through</dt><dd>{words.CHANNELS['smart-launch']}, by dr.ng" in html
    assert stack.evaluations() == before + 1
    # Recorded as a launch from the EHR, by the clinician signed in, with where it was read.
    with stack.app.state.sessions() as session:
        record = audit.get(session, answer.url.query.decode().split("=", 1)[1])
    assert record is not None
    assert (record.channel, record.clinician) == ("smart-launch", USERNAME)
    assert (record.client_id, record.hook_instance) == (None, None)
    assert record.input_received["launch"] == {"iss": ehr.iss}
    # The record was read with the token, by the CDS prefetch searches, and nothing else.
    reads = [p for p in ehr.requests if p.startswith("/fhir/") and ".well-known" not in p]
    assert f"/fhir/Patient/{PATIENT_ID}" in reads
    assert {"/fhir/Condition", "/fhir/Observation", "/fhir/MedicationRequest"} <= set(reads)
    # The launch's cookie is spent.
    assert not [c for c in signed_in.cookies.jar if c.name.endswith("eligo-smart")]


def _age(year: int, month: int, day: int) -> int:
    today = datetime.now(UTC).date()
    return today.year - year - ((today.month, today.day) < (month, day))


def test_the_authorisation_request_is_as_the_smart_configuration_and_pkce_ask(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client
) -> None:
    answer = signed_in.get(stack.launch_url(), follow_redirects=False)
    assert answer.status_code == 302
    target = urlsplit(answer.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{ehr.base}/auth/authorize"
    asked = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert asked["aud"] == ehr.iss
    assert asked["redirect_uri"] == f"{stack.eligo}/smart/callback"
    assert asked["code_challenge_method"] == "S256"
    assert len(asked["code_challenge"]) == 43  # a SHA-256, base64url without padding
    scopes = asked["scope"].split()
    assert scopes[0] == "launch"
    assert {"patient/Patient.rs", "patient/Observation.rs", "patient/Condition.rs"} <= set(scopes)
    assert not [s for s in scopes if s.startswith(("user/", "system/")) or "*" in s]
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Max-Age=600" in cookie
    assert asked["state"] not in cookie.split(";")[0].split(".")[0]  # sealed, not plain


def test_a_launch_before_signing_in_goes_through_the_sign_in_and_on(
    stack: Stack, ehr: Ehr, browser_like: httpx.Client
) -> None:
    page = browser_like.get(stack.launch_url())
    assert page.url.path == "/sign-in"
    assert ehr.requests == []  # nothing asked of the EHR for nobody
    next_ = re.search(r'name="next" value="([^"]+)"', page.text)
    assert next_
    target = next_.group(1).replace("&amp;", "&")
    assert target.startswith("/smart/launch?")
    assert target.endswith("&via=sign-in")
    onwards = sign_in(browser_like, stack.eligo, target)
    # After the sign-in form, a page that goes on by itself (a browser's CSP form-action
    # would stop a redirect chain from the form to the EHR).
    assert onwards.status_code == 200
    assert onwards.url.path == "/smart/launch"
    url = onwards.headers["refresh"].removeprefix("0; url=")
    assert url.startswith(f"{ehr.base}/auth/authorize?")
    assert f'href="{url.replace("&", "&amp;")}"' in onwards.text
    answer = browser_like.get(url)
    assert answer.status_code == 200
    assert answer.url.path == "/"
    assert "From FHIR: Patient" in answer.text


def test_an_issuer_not_on_the_allow_list_is_refused_without_any_request(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client
) -> None:
    for iss in (stack.stranger.iss, "http://169.254.169.254/latest", ""):
        answer = signed_in.get(stack.launch_url(iss) if iss else f"{stack.eligo}/smart/launch")
        assert answer.status_code == 400
        assert "EHR not allowed" in answer.text
        assert "Traceback" not in answer.text
    assert stack.stranger.requests == []
    assert ehr.requests == []


def test_an_issuer_not_offering_s256_is_refused(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client
) -> None:
    ehr.s256 = False
    answer = signed_in.get(stack.launch_url())
    assert answer.status_code == 400
    assert "does not offer PKCE with S256" in answer.text
    assert ehr.requests == ["/fhir/.well-known/smart-configuration"]


def _to_callback(client: httpx.Client, stack: Stack) -> httpx.URL:
    """Launch, and let the EHR authorise; the callback URL it sends the browser to."""
    authorize = client.get(stack.launch_url(), follow_redirects=False).headers["location"]
    back = client.get(authorize, follow_redirects=False)
    assert back.status_code == 302, back.text
    return httpx.URL(back.headers["location"])


def test_a_callback_whose_state_is_not_the_launchs_is_refused(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client
) -> None:
    callback = _to_callback(signed_in, stack)
    forged = callback.copy_set_param("state", "someone-elses-state")
    answer = signed_in.get(forged)
    assert answer.status_code == 400
    assert "state mismatch" in answer.text
    assert ehr.token_requests == []  # the code was never redeemed
    # The launch's own callback still works: a forged one cannot break it.
    assert "From FHIR: Patient" in signed_in.get(callback).text


def test_a_callback_without_the_launch_cookie_is_refused(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client
) -> None:
    callback = _to_callback(signed_in, stack)
    for cookie in list(signed_in.cookies.jar):
        if cookie.name.endswith("eligo-smart"):
            signed_in.cookies.delete(cookie.name)
    answer = signed_in.get(callback)
    assert answer.status_code == 400
    assert "Launch expired" in answer.text
    assert ehr.token_requests == []


def test_a_token_request_the_ehr_refuses_says_so(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client
) -> None:
    """The EHR holds a challenge Eligo's verifier does not match (a tampered PKCE pair)."""
    ehr.corrupt_challenge = True
    before = stack.evaluations()
    answer = signed_in.get(stack.launch_url())
    assert answer.status_code == 502
    assert "refused to give Eligo access (invalid_grant)" in answer.text
    assert len(ehr.token_requests) == 1
    assert ehr.token_requests[0]["client_id"] == CLIENT_ID
    assert not [p for p in ehr.requests if p.startswith("/fhir/") and "well-known" not in p]
    assert stack.evaluations() == before


@pytest.mark.parametrize("status", [401, 500])
def test_a_fhir_server_that_does_not_answer_leaves_nothing_recorded(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client, status: int
) -> None:
    ehr.fhir_status = status
    before = stack.evaluations()
    answer = signed_in.get(stack.launch_url())
    assert answer.status_code == 502
    assert "could not be read from the EHR&#39;s FHIR server" in answer.text
    assert f"HTTP {status}" in answer.text
    assert "Nothing was evaluated" in answer.text
    assert stack.evaluations() == before


def test_the_ehr_saying_no_is_a_page_not_an_error(
    stack: Stack, ehr: Ehr, signed_in: httpx.Client
) -> None:
    del ehr
    url = f"{stack.eligo}/smart/callback?error=access_denied&state=x"
    answer = signed_in.get(url)
    assert answer.status_code == 403
    assert "did not authorise Eligo (access_denied)" in answer.text
