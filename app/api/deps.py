"""Request dependencies shared by the routers: the rules, the database session, the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from app.db import clients
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


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, committed here once the endpoint has returned, before the
    response is sent (`scope="function"` below). If the commit fails, the error handler
    answers 503 instead of the decision: nothing is served that was not recorded."""
    with _sessions(request)() as session:
        yield session
        with request.app.state.commit_lock:
            session.commit()


DbSession = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: an API client, or nobody in the local development mode without auth."""

    client_id: str | None
    name: str
    scopes: frozenset[str]


DEVELOPMENT_CALLER = Caller(None, "development mode (authentication off)", frozenset(Scope))


def _authenticate(request: Request) -> Caller:
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
    client_id, secret = parsed
    # Its own short session: the request's session then starts with a write (see db.audit).
    with _sessions(request)() as session:
        client = clients.find(session, client_id)
    if client is None or not secret_matches(secret, client.secret_hash):
        raise Unauthorized("unknown client or wrong secret")
    if client.revoked_at is not None:
        raise Unauthorized("this client has been revoked")
    return Caller(client.id, client.name, frozenset(client.scopes))


def require(scope: Scope) -> Callable[[Request], Caller]:
    """A dependency: the authenticated caller, who must hold `scope` (else 401 / 403)."""

    def dependency(request: Request) -> Caller:
        caller = _authenticate(request)
        if scope not in caller.scopes:
            raise Forbidden(scope)
        return caller

    return dependency
