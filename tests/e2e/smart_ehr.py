"""A loopback EHR for SMART App Launch tests: an authorisation server and a FHIR server in one
small FastAPI app, run by uvicorn in a thread on a free port (`serve`).

- `GET /fhir/.well-known/smart-configuration`: the endpoints, and S256 unless told not to;
- `GET /auth/authorize`: auto-approves, but only a request with this EHR's client id, the
  redirect URI it was registered with, `aud` = its FHIR base, the launch it issued and an S256
  challenge; it redirects back with a code and the state (anything else: 400 and a note in
  `problems`);
- `POST /auth/token`: the code once, with the verifier whose S256 is the challenge, for a
  bearer token and the `patient` in context;
- `GET /fhir/<type>/<id>` and `GET /fhir/<type>?...`: the loaded patient's resources (searches
  as tests/cds/fhir_server.py implements them), only with the bearer token.

Every request is recorded (`requests`), so a test can say that none was made.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from sqlalchemy import func, select

from app.db.models import Evaluation
from app.main import create_app
from app.services import accounts
from app.settings import Settings, SmartClient
from tests.cds.fhir_server import FhirStore, search
from tests.conftest import SHIPPED_RULES
from tests.databases import app_database
from tests.e2e.helpers import free_port
from tests.web.conftest import csrf_of

LAUNCH = "launch-ctx-7f3a"
CLIENT_ID = "eligo-test-client"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
SYNTHEA = FIXTURES / "synthea" / "Martina_Murazik_9e4fc9b4-aaad-4bcf-a24a-d665f3aa99ec.json"
PATIENT_ID = "beaf0c3d-bcd4-4155-8a7b-f493bdc8f9fe"  # her Patient.id
PASSWORD = "correct horse battery staple clinic"  # noqa: S105 - the test account's
USERNAME = "dr.ng"


@dataclass
class Grant:
    challenge: str
    redirect_uri: str
    client_id: str


@dataclass
class Ehr:
    store: FhirStore
    patient: str
    redirect_uri: str  # the one Eligo is registered with
    base: str = ""  # set by `serve`
    s256: bool = True
    corrupt_challenge: bool = False  # remember a challenge the verifier will not match
    fhir_status: int | None = None  # answer every FHIR read or search with this status
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def iss(self) -> str:
        return f"{self.base}/fhir"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def ehr_app(ehr: Ehr) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        ehr.requests.append(request.url.path)
        return await call_next(request)

    @app.get("/fhir/.well-known/smart-configuration")
    def configuration() -> dict[str, Any]:
        return {
            "authorization_endpoint": f"{ehr.base}/auth/authorize",
            "token_endpoint": f"{ehr.base}/auth/token",
            "capabilities": ["launch-ehr", "client-public", "context-ehr-patient"],
            "code_challenge_methods_supported": ["S256"] if ehr.s256 else ["plain"],
        }

    @app.get("/auth/authorize")
    def authorize(request: Request) -> Response:
        asked = dict(request.query_params)
        wrong = _wrong_authorisation(ehr, asked)
        if wrong:
            ehr.problems.append(f"authorize: {wrong}")
            return PlainTextResponse(f"bad authorisation request: {wrong}", status_code=400)
        code = secrets.token_urlsafe(16)
        challenge = asked.get("code_challenge", "")
        if ehr.corrupt_challenge:
            challenge = s256("not the verifier Eligo holds")
        ehr.grants[code] = Grant(challenge, asked["redirect_uri"], asked["client_id"])
        back = urlencode({"code": code, "state": asked["state"]})
        return RedirectResponse(f"{asked['redirect_uri']}?{back}", status_code=302)

    @app.post("/auth/token")
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        ehr.token_requests.append(form)
        grant = ehr.grants.pop(form.get("code", ""), None)
        if not _redeemable(grant, form):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access = secrets.token_urlsafe(24)
        ehr.tokens.add(access)
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "launch patient/*.rs",
                "patient": ehr.patient,
            }
        )

    _fhir_routes(app, ehr)
    return app


def _fhir_routes(app: FastAPI, ehr: Ehr) -> None:
    @app.get("/fhir/{kind}/{resource_id}")
    def read(kind: str, resource_id: str, request: Request) -> Response:
        refused = _refused(ehr, request)
        if refused is not None:
            return refused
        found = [r for r in ehr.store.resources.get(kind, []) if r["id"] == resource_id]
        if not found:
            return _fhir({"resourceType": "OperationOutcome"}, 404)
        return _fhir(found[0], 200)

    @app.get("/fhir/{kind}")
    def find(kind: str, request: Request) -> Response:
        refused = _refused(ehr, request)
        if refused is not None:
            return refused
        params: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            params.setdefault(key, []).append(value)
        matches = search(ehr.store, kind, params)
        included = _included(ehr.store, matches) if "_include" in params else []
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in matches]
            + [{"resource": r, "search": {"mode": "include"}} for r in included],
        }
        return _fhir(bundle, 200)


def _wrong_authorisation(ehr: Ehr, asked: dict[str, str]) -> list[str]:
    wanted = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": ehr.redirect_uri,
        "aud": ehr.iss,
        "launch": LAUNCH,
        "code_challenge_method": "S256",
    }
    wrong = [k for k, v in wanted.items() if asked.get(k) != v]
    if "launch" not in asked.get("scope", "").split() or not asked.get("state"):
        wrong.append("scope/state")
    return wrong


def _redeemable(grant: Grant | None, form: dict[str, str]) -> bool:
    """The code once, by the client it was given to, with its redirect URI and the verifier
    whose S256 is the challenge."""
    return (
        grant is not None
        and form.get("grant_type") == "authorization_code"
        and form.get("client_id") == grant.client_id
        and form.get("redirect_uri") == grant.redirect_uri
        and s256(form.get("code_verifier", "")) == grant.challenge
    )


def _refused(ehr: Ehr, request: Request) -> Response | None:
    if ehr.fhir_status is not None:
        return _fhir({"resourceType": "OperationOutcome"}, ehr.fhir_status)
    given = request.headers.get("authorization", "")
    if not given.startswith("Bearer ") or given[len("Bearer ") :] not in ehr.tokens:
        return _fhir({"resourceType": "OperationOutcome"}, 401)
    return None


def _included(store: FhirStore, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    wanted = {r["medicationReference"]["reference"] for r in page if "medicationReference" in r}
    return [m for m in store.resources.get("Medication", []) if f"Medication/{m['id']}" in wanted]


def _fhir(body: dict[str, Any], status: int) -> Response:
    return JSONResponse(body, status_code=status, media_type="application/fhir+json")


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a loopback port; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the loopback server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


# --- Eligo and the EHR together ------------------------------------------------------------


@dataclass
class Stack:
    eligo: str
    ehr: Ehr
    stranger: Ehr  # a second EHR that is not on the allow-list
    app: FastAPI

    def launch_url(self, iss: str | None = None) -> str:
        query = httpx.QueryParams({"iss": iss or self.ehr.iss, "launch": LAUNCH})
        return f"{self.eligo}/smart/launch?{query}"

    def evaluations(self) -> int:
        with self.app.state.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Evaluation)) or 0)


def _ehr(redirect_uri: str) -> Ehr:
    store = FhirStore()
    store.load(json.loads(SYNTHEA.read_text()))
    return Ehr(store, PATIENT_ID, redirect_uri)


@contextmanager
def launch_stack(directory: Path) -> Iterator[Stack]:
    """Eligo (authentication on, one clinician account, the EHR allow-listed) and two EHRs,
    each under uvicorn on its own loopback port."""
    eligo_port, ehr_port, stranger_port = free_port(), free_port(), free_port()
    eligo = f"http://127.0.0.1:{eligo_port}"
    ehr, stranger = _ehr(f"{eligo}/smart/callback"), _ehr(f"{eligo}/smart/callback")
    ehr.base, stranger.base = f"http://127.0.0.1:{ehr_port}", f"http://127.0.0.1:{stranger_port}"
    with app_database(directory) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            sign_in="local",
            public_url=eligo,
            smart_issuers={ehr.iss: SmartClient(client_id=CLIENT_ID)},
        )
        app = create_app(settings)
        with app.state.sessions() as session:
            accounts.create_clinician(session, USERNAME, "Dr Ng", PASSWORD, datetime.now(UTC))
            session.commit()
        with (
            serve(ehr_app(ehr), ehr_port),
            serve(ehr_app(stranger), stranger_port),
            serve(app, eligo_port),
        ):
            yield Stack(eligo, ehr, stranger, app)


def sign_in(client: httpx.Client, eligo: str, next_: str = "/") -> httpx.Response:
    page = client.get(f"{eligo}/sign-in")
    return client.post(
        f"{eligo}/sign-in",
        data={
            "username": USERNAME,
            "password": PASSWORD,
            "next": next_,
            "csrf_token": csrf_of(page.text),
        },
    )
