"""The services' tests that write records run on both databases, with tests/db's fixtures."""

from tests.db.conftest import database_url, engine, postgres_url, sqlite_url

__all__ = ["database_url", "engine", "postgres_url", "sqlite_url"]
