"""Database fixtures: a fresh SQLite file and a fresh PostgreSQL database for each test.

PostgreSQL is the machine's real server (127.0.0.1:5432, trust auth; `.ci/run` starts it if
it is down). Each test gets its own database, created and dropped around it, so tests never
see each other's rows and can run against a schema at any migration.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = os.environ.get(
    "ELIGO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'eligo.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    name = f"eligo_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both databases: every test using this runs once on each."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
