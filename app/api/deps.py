"""Request dependencies shared by the routers: the rules, the database session, the caller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import copy_context
from dataclasses import dataclass
from functools import partial
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.db import clients, writes
from app.engine.model import RuleBase
from app.errors import Forbidden, Unauthorized
from app.security import Scope, parse_token, secret_matches
from app.settings import Settings

# As many as anyio's default limiter lets `run_in_threadpool` use at once.
THREADS = 40


def get_rules(request: Request) -> RuleBase:
    """The rule base serving this request.

    Read once per request so that a reload swapping `app.state.rules` (a single reference
    assignment) never mixes two rule versions within one answer.
    """
    rules: RuleBase = request.app.state.rules
    return rules


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def current_rules(request: Request) -> RuleBase:
    """`get_rules` as a dependency. Async because it only reads an attribute: FastAPI runs a
    plain function dependency through a worker thread, a hand-off per request for nothing."""
    return get_rules(request)


async def current_settings(request: Request) -> Settings:
    """`get_settings` as a dependency (async, as `current_rules`)."""
    return get_settings(request)


def _sessions(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request, committed here once the endpoint has returned, before the
    response is sent (`scope="function"` below). If the commit fails, the error handler
    answers 503 instead of the decision: nothing is served that was not recorded.

    Async, with the database work handed to a worker thread only when there is some: opening
    a session touches no connection, and an endpoint that commits itself (`commit`, in the
    thread it already runs in) leaves nothing to do here, which spares two thread hand-offs
    per request."""
    async with request_session(request) as session:
        yield session


@asynccontextmanager
async def request_session(request: Request) -> AsyncIterator[Session]:
    """`get_session` for a handler that opens it itself (api.evaluations)."""
    session = _sessions(request)()
    try:
        yield session
        if writes.anything_to_commit(session):
            await run_in_threadpool(commit, request, session)
    finally:
        if session.in_transaction():  # an error, or reads without a commit: a rollback
            await run_in_threadpool(session.close)
        else:
            session.close()


_Result = TypeVar("_Result")


def thread_pool(workers: int = THREADS) -> ThreadPoolExecutor:
    """The app's worker threads for its hot path (`in_thread`), made lazily by the executor."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eligo-request")


async def in_thread(request: Request, work: Callable[..., _Result], *args: object) -> _Result:
    """`run_in_threadpool`'s job on the app's own executor, through asyncio's: anyio's hand-off
    (a cancel scope, a capacity limiter, a Python queue and its condition variable) cost twice
    asyncio's per call (~50 against ~25 µs idle, and more when threads contend), paid on every
    recorded evaluation. Cancelling the caller leaves `work` running to its end, as anyio's
    does; the context is copied, as anyio copies it."""
    executor: ThreadPoolExecutor = request.app.state.threads
    call = partial(copy_context().run, work, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


def records_at_once(request: Request) -> bool:
    """PostgreSQL: a handler whose only database effect is one record writes it at once, in a
    transaction of its own, without a Session (`audit.record_now`)."""
    engine: Engine = request.app.state.engine
    return engine.dialect.name == "postgresql"


def commit(request: Request, session: Session) -> None:
    """Commit the request's session (under the SQLite commit lock, see db.session)."""
    with request.app.state.commit_lock:
        session.commit()


DbSession = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: an API client, or nobody in the local development mode without auth."""

    client_id: str | None
    name: str
    scopes: frozenset[str]


# How long a verified API client is known without asking the database (VerifiedClients).
VERIFIED_SECONDS = 10.0

DEVELOPMENT_CALLER = Caller(None, "development mode (authentication off)", frozenset(Scope))


class VerifiedClients:
    """API clients verified against the database in the last `seconds`, by client id: a
    client's requests then cost no session, pooled connection or worker thread before their
    body is read (a third of a recorded evaluation's time on PostgreSQL). The secret is still
    checked against the stored hash on every request, and a request that uses the database
    confirms, as the first statement of its transaction, that the client is still active: a
    revoked client is refused at once (`_confirm_at_begin`)."""

    def __init__(self, seconds: float = VERIFIED_SECONDS, most: int = 1024) -> None:
        self.seconds = seconds
        self._most = most
        self._known: dict[str, tuple[float, str, Caller]] = {}

    def get(self, client_id: str, secret: str) -> Caller | None:
        known = self._known.get(client_id)
        if known is None:
            return None
        until, secret_hash, caller = known
        if time.monotonic() >= until or not secret_matches(secret, secret_hash):
            return None
        return caller

    def put(self, secret_hash: str, caller: Caller) -> None:
        if caller.client_id is None:
            return
        if len(self._known) >= self._most:
            self._known.clear()  # a bound, not a policy: the clients verify again once
        self._known[caller.client_id] = (time.monotonic() + self.seconds, secret_hash, caller)


async def _authenticate(request: Request, session: Session | None, fresh: bool) -> Caller:
    settings = get_settings(request)
    if not settings.auth:
        return DEVELOPMENT_CALLER
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthorized("an Authorization: Bearer token is required", error=None)
    kind, _, token = header.partition(" ")
    parsed = parse_token(token.strip()) if kind.lower() == "bearer" else None
    if parsed is None:
        raise Unauthorized(
            "malformed credential; expected Authorization: Bearer eligo_<id>_<secret>"
        )
    verified: VerifiedClients = request.app.state.verified_clients
    # Not on SQLite: there the confirming read would open the transaction that later writes,
    # and a SQLite transaction that read before it writes fails if another process wrote in
    # between (db.writes writes only at commit). Without a session, the request's one write
    # confirms the client itself (`records_at_once`).
    if not fresh and (session is None or session.get_bind().dialect.name != "sqlite"):
        caller = verified.get(*parsed)
        if caller is not None:
            if session is not None:
                _confirm_at_begin(session, caller)
            return caller
    return await run_in_threadpool(_look_up, request, verified, *parsed)


def _look_up(request: Request, verified: VerifiedClients, client_id: str, secret: str) -> Caller:
    # A short session of its own: no transaction stays open while the body arrives.
    with _sessions(request)() as session:
        found = session.execute(clients.credential(client_id)).first()
    if found is None or not secret_matches(secret, found.secret_hash):
        raise Unauthorized("unknown client or wrong secret")
    if found.revoked_at is not None:
        raise Unauthorized("this client has been revoked")
    caller = Caller(client_id, found.name, frozenset(found.scopes))
    verified.put(found.secret_hash, caller)
    return caller


_CONFIRM = "eligo.confirm-client"


def _confirm_at_begin(session: Session, caller: Caller) -> None:
    """When the request's transaction begins, check first that the client is still active:
    what the request reads or records then happens only for a client not revoked, at no cost
    but one short query on a connection the request uses anyway (none where the transaction
    begins with a write that confirms the client itself, `writes.guards_client`)."""
    session.info[_CONFIRM] = caller.client_id or ""


def _confirm_client(session: Session, _transaction: object, connection: Connection) -> None:
    client_id = session.info.pop(_CONFIRM, None)  # at the first transaction's start only
    if client_id is None or writes.client_guarded(session):
        return  # nothing to confirm, or the transaction begins with a write that confirms it
    found = connection.execute(clients.revocation(client_id)).first()
    if found is None or found.revoked_at is not None:
        raise Unauthorized("this client has been revoked")


# On every session, once (a listener per session costs more than the lookup it would save).
event.listen(Session, "after_begin", _confirm_client)


def require(scope: Scope, *, fresh: bool = False) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the authenticated caller, who must hold `scope` (else 401 / 403).
    `fresh`: looked up in the database even if verified moments ago, for a route whose effect
    is not in the database (where no transaction would confirm the client)."""

    async def dependency(request: Request, session: DbSession) -> Caller:
        return await authorise(request, session, scope, fresh=fresh)

    return dependency


async def authorise(
    request: Request, session: Session | None, scope: Scope, *, fresh: bool = False
) -> Caller:
    """`require(scope)`'s check, for a handler that calls it itself. `session` None: the
    handler opens none, and its only database effect is a write that refuses a revoked client
    in its own statement (`audit.record_now`)."""
    caller = await _authenticate(request, session, fresh)
    if scope not in caller.scopes:
        raise Forbidden(scope)
    return caller
