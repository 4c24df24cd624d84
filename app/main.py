"""The application factory."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from app import __version__
from app.api import (
    cds_hooks,
    docs,
    errors,
    evaluations,
    health,
    openapi,
    rulesets,
    screenings,
    smart,
    web,
    web_screenings,
)
from app.api.body import BodySizeLimit, document_limits
from app.api.deps import VerifiedClients, thread_pool
from app.api.edge import StringPolicy
from app.api.headers import GZipAccepted, PathCORS, ResponseHeaders
from app.cds.jwt import ClientTokenVerifier
from app.db.audit import StoredVersions
from app.db.cds import DatabaseReplayGuard
from app.db.migrate import SchemaBehind, prepare
from app.db.session import commit_lock, make_engine, session_factory
from app.engine.load import load_rules
from app.errors import StartupRefused
from app.reload import RuleReloader, fingerprint
from app.services.screening_jobs import JobStore, Worker
from app.settings import Environment, Settings

log = logging.getLogger("eligo")

DESCRIPTION = """
Therapy-eligibility decision support for autologous HSCT, MSC and CD19 CAR-T in systemic
sclerosis and SLE. Each answer is per rule set (one therapy, indication and protocol), with
every criterion's result, the values and thresholds behind it, documented risks and citations.

**Decision support only.** The shipped rule sets are drafts that need local clinical review.
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Hot reload of the rules (file changes, SIGHUP) and the screening workers, for as long
    as the app serves. Workers stop first: a job they are running goes back to the queue."""
    reloader: RuleReloader = app.state.reloader
    worker: Worker = app.state.screening_worker
    async with reloader.running():
        worker.start()
        # What is loaded by now (modules, rules, compiled rule sets, caches) lives as long as
        # the process: kept out of the collector's full passes, which otherwise walk it all and
        # paused answers for tens of milliseconds (all rule sets at half load: p99 94 -> 22 ms).
        # A rules reload's predecessor is still freed by reference counting.
        gc.freeze()
        try:
            yield
        finally:
            await asyncio.to_thread(worker.stop)
    release(app)


def release(app: FastAPI) -> None:
    """Close what `create_app` opened: its worker threads (once idle), HTTP clients and
    database connections. The app can serve again, as the engine's pool does after `dispose`
    (a test serves one app in turn): the new executor starts its threads when first used."""
    app.state.threads.shutdown(wait=False)
    app.state.threads = thread_pool()
    app.state.fhir_http.close()
    app.state.jwks_http.close()
    app.state.engine.dispose()


def create_app(settings: Settings | None = None, host: str | None = None) -> FastAPI:
    """Build the app, or refuse: RuleLoadError (with every diagnostic) if the rules are
    invalid, StartupRefused if the configuration is unsafe or the database schema is behind."""
    settings = settings or Settings()
    # httpx logs each request's URL at INFO, and FHIR URLs carry patient ids: never log them.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    refusals = settings.refusals(host or settings.host)
    if refusals:
        raise StartupRefused(refusals)
    _prepare_database(settings)
    # Fingerprint before loading: an edit landing during the load is then seen as a change.
    seen = fingerprint(settings.rules_dir)
    rules = load_rules(settings.rules_dir)
    app = FastAPI(
        title="Eligo",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # /docs and /redoc are app/api/docs.py's: no CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.rules = rules
    app.state.reloader = RuleReloader(
        app.state, settings.rules_dir, settings.rules_reload_interval, seen
    )
    app.state.engine = make_engine(settings.database_url)
    app.state.threads = thread_pool()
    app.state.sessions = session_factory(app.state.engine)
    app.state.commit_lock = commit_lock(app.state.engine)
    app.state.stored = StoredVersions()
    app.state.verified_clients = VerifiedClients()
    app.state.screening_worker = Worker(
        JobStore(app.state.sessions, app.state.commit_lock), settings, lambda: app.state.rules
    )
    _cds_hooks(app, settings)
    errors.install(app)
    _middleware(app, settings)
    for module in (
        evaluations,
        rulesets,
        screenings,
        cds_hooks,
        health,
        web,
        web_screenings,
        smart,
    ):
        app.include_router(module.router)
    openapi.install(app, settings.auth)
    docs.install(app)
    document_limits(app, settings)
    screenings.document_limits(app, settings)
    app.mount("/static", StaticFiles(directory=web.WEB / "static"), name="static")
    log.info(
        "loaded %d rule sets (%s) from %s", len(rules.rulesets), rules.hash[:19], settings.rules_dir
    )
    return app


def _cds_hooks(app: FastAPI, settings: Settings) -> None:
    """HTTP clients for the EHRs' FHIR servers and JWK Sets (never following redirects: a
    redirect could lead a bearer token or a key lookup somewhere unvetted), and the verifier."""
    timeout = httpx.Timeout(settings.fhir_timeout_seconds)
    app.state.fhir_http = httpx.Client(timeout=timeout, follow_redirects=False)
    app.state.jwks_http = httpx.Client(timeout=timeout, follow_redirects=False)
    app.state.cds_verifier = ClientTokenVerifier(
        settings.cds_issuers,
        DatabaseReplayGuard(app.state.sessions, app.state.commit_lock),
        http=app.state.jwks_http,
    )


def _prepare_database(settings: Settings) -> None:
    """Migration policy: development upgrades by itself, production refuses while behind."""
    try:
        before = prepare(
            settings.database_url, auto_upgrade=settings.env is Environment.DEVELOPMENT
        )
    except SchemaBehind as exc:
        raise StartupRefused([str(exc)]) from None
    if before is not None:
        log.info("development mode: upgraded the database schema from %s", before)


def _middleware(app: FastAPI, settings: Settings) -> None:
    # Added innermost first: the size limit sees the body before anything parses it, and the
    # headers land on every response, including CORS preflights and 413s.
    # POST /v1/screenings takes uploads of up to ELIGO_SCREENING_MAX_UPLOAD_BYTES and limits
    # its JSON bodies to ELIGO_MAX_BODY_BYTES itself; POST /screen (the web page's) alike.
    app.add_middleware(
        BodySizeLimit,
        limit=settings.max_body_bytes,
        exempt=[screenings.SUBMIT_PATH, web_screenings.SCREEN_PATH],
    )
    app.add_middleware(StringPolicy)  # U+0000 in a path or query: 422, before any route
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    if settings.cds_cors_origins:
        app.add_middleware(PathCORS, prefix="/cds-services", origins=settings.cds_cors_origins)
    app.add_middleware(ResponseHeaders)
    # Outermost, for clients that accept it: a full answer for every rule set is ~340 kB.
    # Level 1 makes it ~82 kB in ~3 ms; level 5 ~62 kB in ~8 ms and level 9 ~60 kB in ~16 ms
    # (measured here), more CPU than the decision itself for little more saved.
    app.add_middleware(GZipAccepted, minimum_size=2048, compresslevel=1)
