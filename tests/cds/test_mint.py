"""The README's way to try CDS Hooks with authentication on (docs/cds-hooks/README.md): a real
`eligo serve` trusting the Sandbox's shipped JWK Set inline, and tokens printed by
`python -m tests.cds.mint URL` as the guide runs it, sent with the shipped sample request."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.cds.keys import FIXTURES, SANDBOX_ISSUER
from tests.conftest import ROOT
from tests.e2e.helpers import Server, eligo_process

pytestmark = pytest.mark.e2e
SAMPLE = ROOT / "docs" / "cds-hooks" / "patient-view.json"
GUIDE = ROOT / "docs" / "cds-hooks" / "README.md"
# The command as the guide runs it, in an interpreter where pytest cannot be imported: the
# guide runs it with the serving environment, which has no test dependencies.
MINT = (
    "import sys, runpy; sys.modules['pytest'] = None; "
    "runpy.run_module('tests.cds.mint', run_name='__main__')"
)


def mint(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", MINT, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # The guide's ELIGO_CDS_ISSUERS: the issuer with the fixture's JWK Set inline.
    jwks = (FIXTURES / "sandbox-jwks.json").read_text()
    env = {"ELIGO_AUTH": "on", "ELIGO_CDS_ISSUERS": f'{{"{SANDBOX_ISSUER}": {{"jwks": {jwks}}}}}'}
    with eligo_process(env) as running:
        yield running


def call(url: str, token: str) -> httpx.Response:
    return httpx.post(
        url,
        content=SAMPLE.read_bytes(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_the_guide_names_the_command() -> None:
    guide = GUIDE.read_text()
    assert ".venv-serve/bin/python -m tests.cds.mint" in guide
    assert "sandbox-jwks.json" in guide


def test_a_minted_token_is_accepted_once(server: Server) -> None:
    url = f"{server.base}/cds-services/eligo-patient-view"
    token = mint(url)
    answer = call(url, token)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["cards"]) == 3
    again = call(url, token)
    assert again.status_code == 401
    assert again.json()["detail"].startswith("jti already used")
    assert call(url, mint(url)).status_code == 200  # a fresh token for each call


def test_a_token_for_another_url_is_refused_naming_the_url_expected(server: Server) -> None:
    url = f"{server.base}/cds-services/eligo-patient-view"
    other = url.replace("127.0.0.1", "localhost")
    refused = call(url, mint(other))
    assert refused.status_code == 401
    assert url in refused.json()["detail"]


def test_the_jku_the_sandbox_sends_is_refused_unless_listed(server: Server) -> None:
    url = f"{server.base}/cds-services/eligo-patient-view"
    refused = call(url, mint("--jku", url))
    assert refused.status_code == 401
    detail = refused.json()["detail"]
    assert "https://sandbox.cds-hooks.org/.well-known/jwks.json" in detail
    assert "ELIGO_CDS_ISSUERS" in detail


def test_the_minted_token_is_as_the_sandbox_signs() -> None:
    url = "http://localhost:8000/cds-services/eligo-patient-view"
    header, payload = (json.loads(_b64(part)) for part in mint("--jku", url).split(".")[:2])
    assert header == {
        "alg": "ES384",
        "typ": "JWT",
        "kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
        "jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json",
    }
    assert set(payload) == {"iss", "aud", "exp", "iat", "jti"}
    assert payload["aud"] == url
    assert payload["exp"] - payload["iat"] == 300


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
