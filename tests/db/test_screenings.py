"""The screening job queue's queries on both databases: claims are atomic and in order, every
change to a running job is fenced by its attempt, stale jobs are restarted or given up."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db import screenings as repo
from app.db.models import Screening, ScreeningState
from app.db.session import session_factory

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def _job(job_id: str, created: datetime, client_id: str | None = None) -> Screening:
    return Screening(
        id=job_id,
        state=ScreeningState.QUEUED,
        created_at=created,
        attempts=0,
        cancel_requested=False,
        request={"source": {"kind": "path", "name": "r.csv"}, "engine": "duckdb"},
        rows_done=0,
        rules_hash="sha256:" + "0" * 64,
        client_id=client_id,
        requested_by="analyst",
    )


def _add(sessions: sessionmaker[Session], *jobs: Screening) -> None:
    with sessions() as session:
        session.add_all(jobs)
        session.commit()


def _claim(sessions: sessionmaker[Session], now: datetime = T0) -> tuple[str, int] | None:
    with sessions() as session:
        claimed = repo.claim_next(session, now)
        session.commit()
    return claimed


def _state(sessions: sessionmaker[Session], job_id: str) -> Screening:
    with sessions() as session:
        job = repo.get(session, job_id)
        assert job is not None
        return job


def test_claims_take_the_oldest_queued_job_once(sessions: sessionmaker[Session]) -> None:
    _add(sessions, _job("b", T0 + timedelta(seconds=1)), _job("a", T0))
    assert _claim(sessions) == ("a", 1)
    assert _claim(sessions) == ("b", 1)
    assert _claim(sessions) is None
    job = _state(sessions, "a")
    assert (job.state, job.attempts, job.started_at, job.heartbeat_at) == ("running", 1, T0, T0)


def test_concurrent_claims_never_take_the_same_job(sessions: sessionmaker[Session]) -> None:
    """Eight threads race for five jobs: each job is claimed exactly once (PostgreSQL skips
    the locked row; SQLite's statement holds the write lock and re-checks the state)."""
    _add(sessions, *(_job(f"j{i}", T0 + timedelta(seconds=i)) for i in range(5)))
    claimed: list[tuple[str, int] | None] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        for _ in range(3):
            claimed.append(_claim(sessions))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = sorted(c[0] for c in claimed if c is not None)
    assert taken == [f"j{i}" for i in range(5)]


def test_changes_are_fenced_by_the_attempt(sessions: sessionmaker[Session]) -> None:
    _add(sessions, _job("a", T0))
    assert _claim(sessions) == ("a", 1)
    with sessions() as session:  # the process died; the job was requeued and claimed again
        repo.requeue_stale(session, T0 + timedelta(seconds=61), T0, max_attempts=3)
        session.commit()
    assert _claim(sessions, T0 + timedelta(seconds=62)) == ("a", 2)
    with sessions() as session:
        later = T0 + timedelta(seconds=63)
        assert repo.beat(session, "a", 1, later, (10, 100)) is None
        assert not repo.succeed(session, "a", 1, later, ({"rows": 5}, "sha256:x"))
        assert not repo.fail(session, "a", 1, later, "stale attempt")
        assert repo.beat(session, "a", 2, later, (10, 100)) is False
        session.commit()
    job = _state(sessions, "a")
    assert (job.state, job.rows_done, job.rows_total, job.error) == ("running", 10, 100, None)


def test_a_stale_job_is_queued_again_then_given_up(sessions: sessionmaker[Session]) -> None:
    _add(sessions, _job("a", T0), _job("fresh", T0 + timedelta(seconds=1)))
    now = T0
    for attempt in range(1, 4):
        assert _claim(sessions, now) is not None
        now += timedelta(seconds=120)
        with sessions() as session:
            found = repo.requeue_stale(session, now - timedelta(seconds=60), now, max_attempts=3)
            session.commit()
        if attempt < 3:
            assert _state(sessions, "a").state == "queued"
            assert found[ScreeningState.QUEUED] == ["a"]
    job = _state(sessions, "a")
    assert job.state == "failed"
    assert job.attempts == 3
    assert job.error is not None
    assert "interrupted 3 times" in job.error


def test_a_fresh_heartbeat_is_left_alone(sessions: sessionmaker[Session]) -> None:
    _add(sessions, _job("a", T0))
    _claim(sessions, T0)
    with sessions() as session:
        found = repo.requeue_stale(session, T0 - timedelta(seconds=1), T0, max_attempts=3)
        session.commit()
    assert all(ids == [] for ids in found.values())
    assert _state(sessions, "a").state == "running"


def test_cancel_stops_a_queued_job_at_once_and_asks_a_running_one(
    sessions: sessionmaker[Session],
) -> None:
    _add(sessions, _job("queued", T0 + timedelta(seconds=1)), _job("running", T0))
    _claim(sessions)
    with sessions() as session:
        assert repo.request_cancel(session, "queued", T0) == "cancelled"
        assert repo.request_cancel(session, "running", T0) == "running"
        assert repo.beat(session, "running", 1, T0, (0, None)) is True
        session.commit()
    assert _claim(sessions) is None  # a cancelled job is never claimed
    assert _state(sessions, "queued").state == "cancelled"
    with sessions() as session:
        assert repo.cancelled(session, "running", 1, T0)
        assert repo.request_cancel(session, "running", T0) is None
        session.commit()
    assert _state(sessions, "running").state == "cancelled"


def test_a_stale_job_asked_to_stop_is_cancelled_not_restarted(
    sessions: sessionmaker[Session],
) -> None:
    _add(sessions, _job("a", T0))
    _claim(sessions)
    with sessions() as session:
        repo.request_cancel(session, "a", T0)
        later = T0 + timedelta(seconds=120)
        found = repo.requeue_stale(session, later - timedelta(seconds=60), later, max_attempts=3)
        session.commit()
    assert found[ScreeningState.CANCELLED] == ["a"]
    assert _state(sessions, "a").state == "cancelled"


def test_release_puts_a_job_back_without_counting_the_attempt(
    sessions: sessionmaker[Session],
) -> None:
    _add(sessions, _job("a", T0))
    _claim(sessions)
    with sessions() as session:
        assert repo.release(session, "a", 1)
        session.commit()
    job = _state(sessions, "a")
    assert (job.state, job.attempts, job.heartbeat_at) == ("queued", 0, None)
    assert _claim(sessions) == ("a", 1)


def test_recent_lists_one_clients_jobs_newest_first(sessions: sessionmaker[Session]) -> None:
    _add(
        sessions,
        _job("old", T0, "c1"),
        _job("new", T0 + timedelta(seconds=1), "c1"),
        _job("other", T0 + timedelta(seconds=2), "c2"),
        _job("nobody", T0, None),
    )
    with sessions() as session:
        assert [j.id for j in repo.recent(session, "c1", 10)] == ["new", "old"]
        assert [j.id for j in repo.recent(session, "c1", 1)] == ["new"]
        assert [j.id for j in repo.recent(session, None, 10)] == ["nobody"]
        assert repo.existing(session, ["old", "gone"]) == {"old"}


def test_only_a_finished_job_is_deleted(sessions: sessionmaker[Session]) -> None:
    """A queued or running job may be in a worker's hands: deleting it is refused in the
    statement itself, whatever the caller saw a moment before."""
    _add(sessions, _job("queued", T0), _job("running", T0 + timedelta(seconds=1)))
    _add(sessions, _job("done", T0 + timedelta(seconds=2)))
    assert _claim(sessions) == ("queued", 1)
    with sessions() as session:
        repo.fail(session, "queued", 1, T0, "bad input")
        session.commit()
    assert _claim(sessions) == ("running", 1)
    with sessions() as session:
        deleted = [repo.delete_finished(session, i) for i in ("queued", "running", "done", "x")]
        session.commit()
    assert deleted == [True, False, False, False]
    with sessions() as session:
        assert repo.existing(session, ["queued", "running", "done"]) == {"running", "done"}
