"""Screening jobs' queries: add, read, list, and the state changes of the job queue.

Nothing here commits. Every change to a running job is conditional on the attempt that
claimed it (`attempts`) and on its state, in the statement itself: a worker that lost its job
(its heartbeat went stale, another process took the job over) changes nothing, and two
workers can never both claim one job. That is what makes the queue safe with several
processes on one database, without a lock held across a screening.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Delete, Update, delete, select, update
from sqlalchemy.orm import Session

from app.db.models import FINISHED, Screening, ScreeningState

QUEUED, RUNNING = ScreeningState.QUEUED, ScreeningState.RUNNING


def add(session: Session, screening: Screening) -> None:
    session.add(screening)


def get(session: Session, screening_id: str) -> Screening | None:
    return session.get(Screening, screening_id)


def recent(session: Session, client_id: str | None, limit: int) -> list[Screening]:
    """A client's jobs, newest first (auth off: the jobs asked for without a client)."""
    owner = Screening.client_id.is_(None) if client_id is None else Screening.client_id == client_id
    statement = (
        select(Screening)
        .where(owner)
        .order_by(Screening.created_at.desc(), Screening.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def existing(session: Session, ids: Iterable[str]) -> set[str]:
    return set(session.scalars(select(Screening.id).where(Screening.id.in_(set(ids)))))


def any_queued(session: Session) -> bool:
    """A read before the claim's write: on SQLite an UPDATE takes the database's one write
    lock even when it changes nothing, and an idle worker polls every second."""
    found = session.scalars(select(Screening.id).where(Screening.state == QUEUED).limit(1))
    return found.first() is not None


def claim_next(session: Session, now: datetime) -> tuple[str, int] | None:
    """Take the oldest queued job: (id, attempt) or None. One statement: on PostgreSQL the
    candidate row is locked with SKIP LOCKED, so concurrent claims take different jobs; on
    SQLite the statement holds the write lock throughout and re-checks the state."""
    candidate = (
        select(Screening.id)
        .where(Screening.state == QUEUED)
        .order_by(Screening.created_at, Screening.id)
        .limit(1)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL only
        .scalar_subquery()
    )
    statement = (
        update(Screening)
        .where(Screening.id == candidate, Screening.state == QUEUED)
        .values(
            state=RUNNING,
            attempts=Screening.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            rows_done=0,
            rows_total=None,
        )
        .returning(Screening.id, Screening.attempts)
    )
    row = _execute(session, statement).first()
    return (str(row[0]), int(row[1])) if row else None


def _held(screening_id: str, attempt: int) -> list[ColumnElement[bool]]:
    return [
        Screening.id == screening_id,
        Screening.attempts == attempt,
        Screening.state == RUNNING,
    ]


def beat(
    session: Session,
    screening_id: str,
    attempt: int,
    now: datetime,
    progress: tuple[int, int | None],
) -> bool | None:
    """Heartbeat and progress. Whether a cancel was asked for, or None: the job is no longer
    this attempt's."""
    done, total = progress
    statement = (
        update(Screening)
        .where(*_held(screening_id, attempt))
        .values(heartbeat_at=now, rows_done=done, rows_total=total)
        .returning(Screening.cancel_requested)
    )
    row = _execute(session, statement).first()
    return bool(row[0]) if row else None


def succeed(
    session: Session,
    screening_id: str,
    attempt: int,
    now: datetime,
    outcome: tuple[Mapping[str, Any], str],
) -> bool:
    """(summary, rules hash) of a finished screening; False if the job was not this
    attempt's any more."""
    summary, rules_hash = outcome
    rows = int(summary["rows"])
    return _finish(
        session,
        screening_id,
        attempt,
        state=ScreeningState.SUCCEEDED,
        finished_at=now,
        heartbeat_at=now,
        summary=summary,
        rules_hash=rules_hash,
        rows_done=rows,
        rows_total=rows,
    )


def fail(session: Session, screening_id: str, attempt: int, now: datetime, error: str) -> bool:
    return _finish(
        session,
        screening_id,
        attempt,
        state=ScreeningState.FAILED,
        finished_at=now,
        error=error,
    )


def cancelled(session: Session, screening_id: str, attempt: int, now: datetime) -> bool:
    """A running job stopped at a cancel's request."""
    return _finish(session, screening_id, attempt, state=ScreeningState.CANCELLED, finished_at=now)


def release(session: Session, screening_id: str, attempt: int) -> bool:
    """Back to the queue, the attempt not counted: this process is shutting down, which is
    no fault of the job's."""
    return _finish(
        session,
        screening_id,
        attempt,
        state=QUEUED,
        attempts=attempt - 1,
        started_at=None,
        heartbeat_at=None,
    )


def _finish(session: Session, screening_id: str, attempt: int, **values: Any) -> bool:
    statement = (
        update(Screening)
        .where(*_held(screening_id, attempt))
        .values(**values)
        .returning(Screening.id)
    )
    return _execute(session, statement).first() is not None


def request_cancel(session: Session, screening_id: str, now: datetime) -> ScreeningState | None:
    """A queued job is cancelled at once; a running one is asked to stop (its worker sees
    the flag within a second, and stops at the next batch). Conditional updates, so a job
    claimed in between is asked to stop rather than marked cancelled under its worker. The
    state the job is now in, or None if it was neither queued nor running."""
    queued = _execute(
        session,
        update(Screening)
        .where(Screening.id == screening_id, Screening.state == QUEUED)
        .values(state=ScreeningState.CANCELLED, cancel_requested=True, finished_at=now)
        .returning(Screening.id),
    )
    if queued.first() is not None:
        return ScreeningState.CANCELLED
    running = _execute(
        session,
        update(Screening)
        .where(Screening.id == screening_id, Screening.state == RUNNING)
        .values(cancel_requested=True)
        .returning(Screening.id),
    )
    return RUNNING if running.first() is not None else None


def delete_finished(session: Session, screening_id: str) -> bool:
    """Remove a finished job's row; False if there was none, or it is queued or running (a
    worker may hold it: those are cancelled, not deleted)."""
    statement = (
        delete(Screening)
        .where(Screening.id == screening_id, Screening.state.in_(FINISHED))
        .returning(Screening.id)
    )
    return _execute(session, statement).first() is not None


def requeue_stale(
    session: Session, stale_before: datetime, now: datetime, max_attempts: int
) -> dict[ScreeningState, list[str]]:
    """Running jobs whose heartbeat stopped (their process died): cancelled if that was
    asked for, failed once they have had `max_attempts`, else queued again. The ids, by the
    state each job is now in."""
    stale = [Screening.state == RUNNING, Screening.heartbeat_at < stale_before]
    outcomes: Sequence[tuple[ScreeningState, list[ColumnElement[bool]], dict[str, Any]]] = (
        (ScreeningState.CANCELLED, [Screening.cancel_requested.is_(True)], {"finished_at": now}),
        (
            ScreeningState.FAILED,
            [Screening.attempts >= max_attempts],
            {
                "finished_at": now,
                "error": f"the screening was interrupted {max_attempts} times (the server "
                "stopped while it ran); it was not started again",
            },
        ),
        (QUEUED, [], {"started_at": None, "heartbeat_at": None}),
    )
    found: dict[ScreeningState, list[str]] = {}
    for state, extra, values in outcomes:
        statement = (
            update(Screening)
            .where(*stale, *extra)
            .values(state=state, **values)
            .returning(Screening.id)
        )
        found[state] = [str(i) for i in _execute(session, statement).scalars()]
    return found


def _execute(session: Session, statement: Update | Delete) -> Any:
    # No ORM session synchronisation: the conditions are SQL (a subquery). The worker's
    # sessions hold no screening objects; an API request's does (the job it checked), and
    # its commit, which runs these statements, expires it.
    return session.execute(statement, execution_options={"synchronize_session": False})
