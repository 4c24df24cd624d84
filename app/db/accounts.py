"""Clinician accounts and their web sessions: the queries only. What a sign-in or a session
check means is decided in app/services/accounts.py; nothing here commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, or_, select, update
from sqlalchemy.orm import Session

from app.db.models import Clinician, WebSession


def add_clinician(session: Session, clinician: Clinician) -> None:
    session.add(clinician)


def find_by_username(session: Session, username: str) -> Clinician | None:
    """`username` as stored (normalised by the caller)."""
    return session.scalars(select(Clinician).where(Clinician.username == username)).one_or_none()


def all_clinicians(session: Session) -> list[Clinician]:
    return list(session.scalars(select(Clinician).order_by(Clinician.username)))


def count_failure(session: Session, clinician_id: str) -> int:
    """Add one failed attempt in the database itself and return the new count: concurrent
    guesses each count (a read-then-write in Python would let parallel ones count as one), and
    on PostgreSQL the row stays locked until the transaction ends."""
    statement = (
        update(Clinician)
        .where(Clinician.id == clinician_id)
        .values(failed_attempts=Clinician.failed_attempts + 1)
        .returning(Clinician.failed_attempts)
    )
    return session.execute(statement).scalar_one()


def get_session(session: Session, token_hash: str) -> WebSession | None:
    return session.get(WebSession, token_hash)


def add_session(session: Session, web_session: WebSession) -> None:
    session.add(web_session)


def delete_session(session: Session, token_hash: str) -> None:
    """Gone whether or not it existed: signing out twice is not an error."""
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash))


def delete_sessions_of(session: Session, clinician_id: str) -> int:
    """Every session of one clinician; how many there were."""
    return _deleted(session, delete(WebSession).where(WebSession.clinician_id == clinician_id))


def delete_expired_sessions(session: Session, now: datetime, idle_since: datetime) -> int:
    """Sessions past their absolute end or unused since `idle_since`; how many there were."""
    statement = delete(WebSession).where(
        or_(WebSession.expires_at <= now, WebSession.last_seen_at < idle_since)
    )
    return _deleted(session, statement)


def _deleted(session: Session, statement: Delete) -> int:
    # A DELETE's result is a CursorResult, whose row count the generic Result type hides.
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount
