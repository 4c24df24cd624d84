"""PostgreSQL's pool: a connection that sat idle is pinged before use and replaced if the
server cut it; one used a moment ago is not pinged (under load, that ping took a fifth of the
evaluation handler's time). On the machine's real server, cutting real backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from app.db import session as db_session
from app.db.session import make_engine
from tests.databases import POSTGRES_ADMIN_URL


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each ping the pool sends (the dialect's own ping, counted, still sent)."""
    sent: list[object] = []
    ping = engine.dialect.do_ping

    def counted(connection: object) -> bool:
        sent.append(connection)
        return ping(connection)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return sent


def _backend(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _cut(pid: int) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(
    engine: Engine, pings: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = _backend(engine)
    assert [_backend(engine) for _ in range(5)] == [first] * 5  # the same pooled connection
    assert pings == []


def test_an_idle_connection_the_server_cut_is_replaced(
    engine: Engine, pings: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(engine)
    _cut(first)
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checkin is idle
    second = _backend(engine)  # no error: the ping failed, the pool connected anew
    assert second != first
    assert len(pings) == 1
    assert _backend(engine) == second  # pinged again (idle ≥ 0 s) and alive: kept
    assert len(pings) == 2


def test_a_busy_connection_the_server_cut_fails_once_then_the_pool_recovers(
    engine: Engine, pings: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trade-off, stated: a connection cut between two requests a moment apart fails the
    second (the API answers 503, nothing recorded: tests/db/test_outage.py); the disconnect
    drops the pool's other connections, and the next request connects anew."""
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = _backend(engine)
    _cut(first)
    with pytest.raises(OperationalError):
        _backend(engine)
    assert _backend(engine) != first
    assert pings == []
