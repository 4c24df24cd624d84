"""A CDS Hooks setting for the tests: a loopback FHIR server holding the SSc patient, Eligo
trusting the sandbox issuer's key and that server, and a CDS client that signs its calls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from fastapi.testclient import TestClient

from app.cds.issuers import IssuerConfig
from app.main import create_app
from app.settings import Settings
from tests.cds.fhir_server import FhirStore, fhir_server
from tests.cds.keys import SANDBOX_ISSUER, claims, sandbox_jwks, sign
from tests.conftest import SHIPPED_RULES
from tests.fhir.bundles import sle_bundle, ssc_bundle, today

EHR_TOKEN = "ehr-access-token-for-eligo"  # noqa: S105 - a test token: what the EHR hands over in fhirAuthorization
PATIENT = "ssc-1"


@pytest.fixture(scope="module")
def store() -> FhirStore:
    store = FhirStore()
    store.load(ssc_bundle(today()))
    store.load(sle_bundle(today()))
    return store


@pytest.fixture(scope="module")
def fhir_base(store: FhirStore) -> Iterator[str]:
    with fhir_server(store) as base:
        yield base


def hook_request(fhir_base: str, patient: str, hook: str = "patient-view") -> dict[str, Any]:
    """A hook call as an EHR makes it: context, its FHIR server and a token for it."""
    return {
        "hook": hook,
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": patient},
        "fhirServer": fhir_base,
        "fhirAuthorization": {
            "access_token": EHR_TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "eligo",
        },
    }


@dataclass
class CdsClient:
    """Plays the EHR: signs each call for the URL it calls, prefetches like an EHR would."""

    http: TestClient
    fhir_base: str
    base: str = "http://testserver"

    def headers(self, path: str, **overrides: Any) -> dict[str, str]:
        token = sign(claims(**{"aud": self.base + path, **overrides}))
        return {"Authorization": f"Bearer {token}"}

    def prefetch(self, templates: dict[str, str], patient: str = PATIENT) -> dict[str, Any]:
        """Run each template against the FHIR server, as the EHR does before calling."""
        base = self.fhir_base + "/"
        found = {}
        for key, query in templates.items():
            url = urljoin(base, query.replace("{{context.patientId}}", patient))
            response = httpx.get(url, headers={"Authorization": f"Bearer {EHR_TOKEN}"})
            assert response.status_code == 200, (url, response.status_code)
            found[key] = response.json()
        return found

    def body(
        self, hook: str = "patient-view", patient: str = PATIENT, **extra: Any
    ) -> dict[str, Any]:
        return {**hook_request(self.fhir_base, patient, hook), **extra}

    def call(self, service: str, body: dict[str, Any], **claims: Any) -> httpx.Response:
        path = f"/cds-services/{service}"
        response: httpx.Response = self.http.post(
            path, json=body, headers=self.headers(path, **claims)
        )
        return response


@pytest.fixture(scope="module")
def cds_app_settings(app_database_url: str, fhir_base: str) -> Settings:
    return Settings(
        rules_dir=SHIPPED_RULES,
        database_url=app_database_url,
        cds_issuers={SANDBOX_ISSUER: IssuerConfig(jwks=sandbox_jwks())},
        cds_fhir_servers=[fhir_base + "/"],
        max_body_bytes=1024 * 1024,
        # No ELIGO_PUBLIC_URL, as in development: the test client's Host must be allowed.
        cds_allowed_hosts=["testserver"],
    )


@pytest.fixture(scope="module")
def cds(cds_app_settings: Settings, fhir_base: str) -> Iterator[CdsClient]:
    app = create_app(cds_app_settings)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield CdsClient(http, fhir_base)
