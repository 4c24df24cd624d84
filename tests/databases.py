"""Fresh databases for tests: a SQLite file, or a database of its own on the machine's real
PostgreSQL (created and dropped around the test).

`ELIGO_TEST_DATABASE=postgres` runs the application tests on PostgreSQL instead of SQLite;
CI runs the suite both ways. Tests of the database layer itself use both in every run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = os.environ.get(
    "ELIGO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
APP_DATABASE = os.environ.get("ELIGO_TEST_DATABASE", "sqlite")
assert APP_DATABASE in {"sqlite", "postgres"}, "ELIGO_TEST_DATABASE: sqlite or postgres"


def _admin(statement: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"eligo_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _admin(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{directory / f'eligo-{uuid.uuid4().hex[:8]}.db'}"


@contextmanager
def app_database(directory: Path) -> Iterator[str]:
    """A fresh database of the kind the application tests run on."""
    with database(APP_DATABASE, directory) as url:
        yield url
