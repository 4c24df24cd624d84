"""When the audit database cannot be written, no decision is given (503), nothing half-written
remains, and the service recovers by itself once the database is back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from app.db import session as db_session
from app.db.models import Evaluation, EvaluationDecision
from app.main import create_app
from app.security import Scope
from app.settings import Settings
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import SHIPPED_RULES, add_client, bearer
from tests.databases import POSTGRES_ADMIN_URL

BODY = {"features": ASTIS_CANDIDATE}


@contextmanager
def served(url: str) -> Iterator[TestClient]:
    app = create_app(Settings(rules_dir=SHIPPED_RULES, database_url=url))
    token = add_client(app, "outage test", [Scope.EVALUATE])
    with TestClient(app, raise_server_exceptions=False, headers=bearer(token)) as client:
        yield client


def _counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        evaluations = connection.scalar(select(func.count()).select_from(Evaluation))
        decisions = connection.scalar(select(func.count()).select_from(EvaluationDecision))
    engine.dispose()
    return int(evaluations or 0), int(decisions or 0)


def _assert_unavailable(client: TestClient) -> None:
    response = client.post("/v1/evaluations", json=BODY)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert "no decision was given" in body["detail"]
    assert "results" not in body


def _admin(statement: str, **params: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(statement), params)
    admin.dispose()


def test_postgres_unreachable_then_back(postgres_url: str) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    with served(postgres_url) as client:
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
        # The database goes away: existing connections are cut, new ones refused.
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name",
            name=name,
        )
        try:
            for _ in range(3):
                _assert_unavailable(client)
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200  # alive, just not ready
        finally:
            _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        # Back: the same app serves again, no restart.
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
        assert client.get("/readyz").status_code == 200
    evaluations, decisions = _counts(postgres_url)
    assert evaluations == 2  # exactly the two answers given
    assert decisions == 2 * 11


def _cut_connections(name: str) -> None:
    _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name",
        name=name,
    )


def test_postgres_refusing_a_new_connection_is_503_not_500(postgres_url: str) -> None:
    """PostgreSQL records an evaluation on a pooled connection without SQLAlchemy's Connection
    (audit.record_now): a failure to connect there is the outage answer too."""
    name = postgres_url.rsplit("/", 1)[1]
    with served(postgres_url) as client:
        assert client.post("/v1/evaluations", json=BODY).status_code == 200  # versions stored
        app = cast(FastAPI, client.app)
        app.state.engine.dispose()  # nothing pooled: the next record must connect
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            _assert_unavailable(client)
        finally:
            _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
    assert _counts(postgres_url) == (2, 2 * 11)


def test_a_restart_fails_one_evaluation_not_one_per_pooled_connection(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pooled connection dies with a restart; the first request to meet a dead one
    answers 503 and the pool replaces the others with it (as SQLAlchemy does on a disconnect),
    so the next request is answered. No idle pings here to hide it."""
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", 3600.0)
    name = postgres_url.rsplit("/", 1)[1]
    with served(postgres_url) as client:
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
        engine = cast(FastAPI, client.app).state.engine
        held = [engine.raw_connection() for _ in range(3)]  # three in the pool, all idle
        for connection in held:
            connection.close()
        _cut_connections(name)
        _assert_unavailable(client)
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
    assert _counts(postgres_url) == (2, 2 * 11)


def test_sqlite_locked_by_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "eligo.db"
    url = f"sqlite:///{path}"
    with served(url) as client:
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # holds the write lock past the busy timeout
        try:
            _assert_unavailable(client)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
    assert _counts(url) == (2, 2 * 11)


def test_a_restored_database_without_the_rule_set_versions_heals(postgres_url: str) -> None:
    """The process remembers which rule set versions it stored; if the database loses them
    (restored from an older backup), one failed write makes it store them again."""
    with served(postgres_url) as client:
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
        engine = create_engine(postgres_url)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM evaluation_decisions"))
            connection.execute(text("DELETE FROM evaluations"))
            connection.execute(text("DELETE FROM ruleset_versions"))
        engine.dispose()
        assert client.post("/v1/evaluations", json=BODY).status_code == 503
        assert client.post("/v1/evaluations", json=BODY).status_code == 200
    assert _counts(postgres_url) == (1, 11)
