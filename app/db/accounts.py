"""Clinician accounts and their web sessions: the queries only. What a sign-in or a session
check means is decided in app/services/accounts.py; nothing here commits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, and_, bindparam, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.models import Clinician, SignInThrottle, Time, WebSession

ANY_ACCOUNT = "*"  # SignInThrottle.account of a source's failures against every user name


def add_clinician(session: Session, clinician: Clinician) -> None:
    session.add(clinician)


def find_by_username(session: Session, username: str) -> Clinician | None:
    """`username` as stored (normalised by the caller)."""
    return session.scalars(select(Clinician).where(Clinician.username == username)).one_or_none()


def all_clinicians(session: Session) -> list[Clinician]:
    return list(session.scalars(select(Clinician).order_by(Clinician.username)))


def paused(session: Session, keys: Sequence[tuple[str, str]], now: datetime) -> bool:
    """Whether sign-ins are paused at `now` for any of these (account, source) pairs."""
    pairs = [
        and_(SignInThrottle.account == account, SignInThrottle.source == source)
        for account, source in keys
    ]
    statement = select(SignInThrottle.account).where(
        or_(*pairs), SignInThrottle.blocked_until > now
    )
    return session.execute(statement.limit(1)).first() is not None


def count_failure(
    session: Session, account: str, source: str, now: datetime, window_start: datetime
) -> int:
    """Add one failure to the (account, source) count in the database itself and return the
    new count, starting again at 1 if the count's window began before `window_start` or its
    pause has ended. Concurrent failures each count (a read-then-write in Python would let
    parallel ones count as one), and the row stays locked until the transaction ends."""
    table = SignInThrottle.__table__.c
    moment = bindparam("moment", now, type_=Time())
    stale = or_(
        table.window_started_at < window_start,
        and_(table.blocked_until.is_not(None), table.blocked_until <= now),
    )
    insert = _upsert(session)(SignInThrottle).values(
        account=account, source=source, failures=1, window_started_at=now, blocked_until=None
    )
    statement = insert.on_conflict_do_update(
        index_elements=["account", "source"],
        set_={
            "failures": case((stale, 1), else_=table.failures + 1),
            "window_started_at": case((stale, moment), else_=table.window_started_at),
            "blocked_until": case((stale, None), else_=table.blocked_until),
        },
    ).returning(SignInThrottle.failures)
    failures: int = session.execute(statement).scalar_one()
    return failures


def _upsert(session: Session) -> Callable[..., Any]:
    """INSERT ... ON CONFLICT, which both databases have (SQLite since 3.24), each in its
    dialect's own construct."""
    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


def pause(session: Session, account: str, source: str, until: datetime, now: datetime) -> None:
    """Refuse this pair until `until`; the count starts again from there."""
    statement = (
        update(SignInThrottle)
        .where(SignInThrottle.account == account, SignInThrottle.source == source)
        .values(blocked_until=until, failures=0, window_started_at=now)
    )
    session.execute(statement)


def forget_failures(session: Session, account: str, source: str) -> None:
    """The (account, source) count is gone (a successful sign-in)."""
    session.execute(
        delete(SignInThrottle).where(
            SignInThrottle.account == account, SignInThrottle.source == source
        )
    )


def forget_account(session: Session, account: str) -> int:
    """Every count for one user name, from every source, and the counts against every name
    of those sources (an administrator vouched for the person); how many rows went."""
    sources = select(SignInThrottle.source).where(SignInThrottle.account == account)
    statement = delete(SignInThrottle).where(
        or_(
            SignInThrottle.account == account,
            and_(SignInThrottle.account == ANY_ACCOUNT, SignInThrottle.source.in_(sources)),
        )
    )
    return _deleted(session, statement)


def pauses_of(session: Session, account: str, now: datetime) -> list[SignInThrottle]:
    """The sources from which sign-ins with this user name are paused at `now`."""
    statement = (
        select(SignInThrottle)
        .where(SignInThrottle.account == account, SignInThrottle.blocked_until > now)
        .order_by(SignInThrottle.source)
    )
    return list(session.scalars(statement))


def delete_stale_failures(session: Session, window_start: datetime, now: datetime) -> int:
    """Counts whose window began before `window_start` and that pause nothing at `now`: they
    would start again at the next failure anyway. How many there were."""
    statement = delete(SignInThrottle).where(
        SignInThrottle.window_started_at < window_start,
        or_(SignInThrottle.blocked_until.is_(None), SignInThrottle.blocked_until <= now),
    )
    return _deleted(session, statement)


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
