"""The SMART launch's pieces that need no server: the allow-list, PKCE, the sealed state, the
token answer, the settings, and the launch link CDS cards carry."""

from __future__ import annotations

import base64
import hashlib

import pytest
from pydantic import ValidationError

from app.engine.load import load_rules
from app.fhir import smart
from app.fhir.smart import Configuration, LaunchRefused
from app.services import smart_launch
from app.settings import Environment, Settings, SmartClient
from tests.conftest import SHIPPED_RULES

KEY = smart.state_key(b"k" * 32)
CONFIG = Configuration("https://ehr.example/auth?tenant=1", "https://ehr.example/token")
NOW = 1_800_000_000


def test_the_allow_list_matches_the_issuer_exactly_but_for_a_trailing_slash() -> None:
    issuers = {"https://ehr.example/fhir/": SmartClient()}
    assert smart.allowed("https://ehr.example/fhir", issuers) == "https://ehr.example/fhir/"
    for other in (
        "https://ehr.example/fhir/other",
        "https://ehr.example",
        "https://ehr.example/fhir@evil.example",
        "http://ehr.example/fhir",
        "https://EHR.example.evil/fhir",
    ):
        assert smart.allowed(other, issuers) is None


def test_the_challenge_is_rfc_7636s_s256() -> None:
    # RFC 7636, appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert smart.challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    launch = smart.new_launch("https://ehr.example/fhir", CONFIG, "dr.ng", NOW)
    assert 43 <= len(launch.verifier) <= 128
    digest = hashlib.sha256(launch.verifier.encode()).digest()
    url = smart.authorize_url(
        CONFIG,
        launch,
        client="c",
        redirect_uri="https://e/cb",
        launch_token="L",  # noqa: S106 - a launch id, not a secret
        scope="launch",
    )
    assert url.startswith("https://ehr.example/auth?tenant=1&response_type=code&")
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() in url


def test_a_sealed_launch_comes_back_only_whole_fresh_and_with_its_state() -> None:
    launch = smart.new_launch("https://ehr.example/fhir", CONFIG, "dr.ng", NOW)
    sealed = smart.seal(launch, KEY)
    assert smart.unseal(sealed, launch.state, KEY, NOW + 599) == launch
    with pytest.raises(LaunchRefused, match="state mismatch"):
        smart.unseal(sealed, launch.state + "x", KEY, NOW)
    for bad, when in (
        (sealed, NOW + 601),  # too late
        (sealed, NOW - 5),  # from the future
        (sealed[:-2] + ("AA" if not sealed.endswith("AA") else "BB"), NOW),  # tampered
        (smart.seal(launch, smart.state_key(b"another key" * 3)), NOW),
        ("", NOW),
        (None, NOW),
        ("not.base64!", NOW),
    ):
        with pytest.raises(LaunchRefused, match="unknown or has expired"):
            smart.unseal(bad, launch.state, KEY, when)


def test_only_the_clinician_who_started_a_launch_finishes_it() -> None:
    settings = Settings(pseudonym_key="p" * 40)
    launch = smart.new_launch("https://ehr.example/fhir", CONFIG, "dr.ng", NOW)
    sealed = smart.seal(launch, smart.state_key(settings.pseudonym_secret()))
    assert smart_launch.resume(settings, sealed, launch.state, "dr.ng", NOW) == launch
    with pytest.raises(LaunchRefused, match="another Eligo user") as refused:
        smart_launch.resume(settings, sealed, launch.state, "dr.other", NOW)
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("answer", "status", "said"),
    [
        ({"error": "invalid_grant"}, 400, "(invalid_grant)"),
        ({"error": "<script>"}, 400, "(?script?)"),
        ({"access_token": "t", "token_type": "mac", "patient": "p1"}, 200, "no bearer"),
        ({"access_token": "t", "token_type": "Bearer"}, 200, "which patient"),
        ({"access_token": "t", "token_type": "Bearer", "patient": "../Group/1"}, 200, "patient"),
        (["not", "an", "object"], 200, "refused"),
    ],
)
def test_a_token_answer_without_a_token_and_a_patient_is_refused(
    answer: object, status: int, said: str
) -> None:
    with pytest.raises(LaunchRefused) as refused:
        smart._token(answer, status)
    assert said in str(refused.value)


def test_a_token_answer_gives_the_token_and_the_patient() -> None:
    token = smart._token({"access_token": "t", "token_type": "bearer", "patient": "p-1.2"}, 200)
    assert (token.access_token, token.patient) == ("t", "p-1.2")


def test_the_settings_take_a_list_of_issuers_and_refuse_what_cannot_work() -> None:
    listed = Settings(smart_issuers=["https://a.example/fhir"], smart_client_id="eligo")
    assert listed.smart_issuers == {"https://a.example/fhir": SmartClient()}
    assert listed.refusals("127.0.0.1") == []
    with pytest.raises(ValidationError, match="not an http"):
        Settings(smart_issuers=["file:///etc/passwd"])
    with pytest.raises(ValidationError):
        Settings(smart_issuers={"https://a.example": {"client_idd": "typo"}})
    no_client = Settings(smart_issuers=["https://a.example/fhir"])
    assert any("has no client id" in p for p in no_client.refusals("127.0.0.1"))
    production = Settings(
        env=Environment.PRODUCTION,
        pseudonym_key="p" * 40,
        smart_issuers={"http://a.example/fhir": {"client_id": "eligo"}},
    )
    problems = production.refusals("0.0.0.0")
    assert any("ELIGO_PUBLIC_URL" in p for p in problems)
    assert any("is not https" in p for p in problems)


def test_cards_link_to_the_launch_only_when_the_ehr_may_launch_eligo() -> None:
    issuers = {"https://ehr.example/fhir": SmartClient()}
    base = "https://eligo.example"
    assert smart.launch_link(base, {}, None) == ""
    assert smart.launch_link(base, issuers, None) == f"{base}/smart/launch"
    assert smart.launch_link(base, issuers, "https://ehr.example/fhir/") == f"{base}/smart/launch"
    assert smart.launch_link(base, issuers, "https://other.example/fhir") == ""


def test_the_default_scope_reads_exactly_what_the_mapping_uses() -> None:
    scope = smart_launch.scope(load_rules(SHIPPED_RULES), Settings()).split()
    assert scope == [
        "launch",
        "patient/Condition.rs",
        "patient/Medication.rs",
        "patient/MedicationAdministration.rs",
        "patient/MedicationRequest.rs",
        "patient/MedicationStatement.rs",
        "patient/Observation.rs",
        "patient/Patient.rs",
    ]
    assert smart_launch.scope(load_rules(SHIPPED_RULES), Settings(smart_scope="x")) == "x"
