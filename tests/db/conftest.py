"""Database fixtures: a fresh SQLite file and a fresh PostgreSQL database for each test.

PostgreSQL is the machine's real server (127.0.0.1:5432, trust auth; `.ci/run` starts it if
it is down). Each test gets its own database, so tests never see each other's rows and can
run against a schema at any migration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.db.migrate import upgrade
from app.db.session import make_engine
from tests.databases import database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    with database("sqlite", tmp_path) as url:
        yield url


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with database("postgres", tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases: every test using this runs once on each."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on either database, migrated to head."""
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()
