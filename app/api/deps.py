"""Request dependencies shared by the routers: the rules, the database session, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.db import clients, writes
from app.engine.model import RuleBase
from app.errors import Forbidden, Unauthorized
from app.security import Scope, parse_token, secret_matches
from app.settings import Settings


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


# A body up to this size is read with the request's transaction open (see `_look_up`).
SMALL_BODY_BYTES = 64 * 1024

DEVELOPMENT_CALLER = Caller(None, "development mode (authentication off)", frozenset(Scope))


async def _authenticate(request: Request, session: Session) -> Caller:
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
    keep = _small_body(request) and session.get_bind().dialect.name != "sqlite"
    return await run_in_threadpool(_look_up, session, keep, *parsed)


def _small_body(request: Request) -> bool:
    """Whether the body (if any) is declared small enough to arrive with the headers."""
    declared = request.headers.get("content-length")
    if "transfer-encoding" in request.headers:
        return False
    return declared is None or (declared.isdigit() and int(declared) <= SMALL_BODY_BYTES)


def _look_up(session: Session, keep: bool, client_id: str, secret: str) -> Caller:
    """The client, looked up in the request's own session, so that the request's work can go
    on in the same transaction (`keep`): a session of its own cost a pooled connection's ping,
    a BEGIN and a ROLLBACK, about a quarter of a recorded evaluation's time on PostgreSQL.
    Looked up on every request: a revoked client is refused at once.

    Not kept on SQLite, where a transaction that read before it writes fails if another
    connection wrote in between (db.writes writes only at commit, under the lock), nor while a
    large body arrives (an upload may take minutes): the lookup's transaction ends here."""
    found = session.execute(clients.credential(client_id)).first()
    if not keep:
        session.rollback()
    if found is None or not secret_matches(secret, found.secret_hash):
        raise Unauthorized("unknown client or wrong secret")
    if found.revoked_at is not None:
        raise Unauthorized("this client has been revoked")
    return Caller(client_id, found.name, frozenset(found.scopes))


def require(scope: Scope) -> Callable[[Request, Session], Awaitable[Caller]]:
    """A dependency: the authenticated caller, who must hold `scope` (else 401 / 403). It
    shares the request's session (FastAPI gives one `DbSession` per request)."""

    async def dependency(request: Request, session: DbSession) -> Caller:
        caller = await _authenticate(request, session)
        if scope not in caller.scopes:
            raise Forbidden(scope)
        return caller

    return dependency
