"""Migrations and models agree, and every migration upgrades and downgrades, on both
databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from app.db import models  # noqa: F401 - registers the tables
from app.db.base import Base
from app.db.migrate import alembic_config, current, downgrade, head, upgrade
from app.db.session import make_engine

TABLES = {"api_clients", "evaluations", "evaluation_decisions", "ruleset_versions", "screenings"}


def test_models_and_migrations_agree(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_migration_upgrades_and_downgrades(database_url: str) -> None:
    engine = make_engine(database_url)
    script = ScriptDirectory.from_config(alembic_config(database_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions[-1] == head()
    for revision in revisions:  # one step at a time, up then down then up again
        upgrade(database_url, revision)
        assert current(engine) == revision
        downgrade(database_url, "-1")
        upgrade(database_url, revision)
    assert set(inspect(engine).get_table_names()) >= TABLES
    downgrade(database_url, "base")
    assert current(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    engine.dispose()


def _compression(engine: Engine) -> dict[str, str]:
    query = text(
        "SELECT attname, attcompression FROM pg_attribute WHERE attrelid = 'evaluations'::regclass "
        "AND attname IN ('input_received', 'input_normalised', 'result')"
    )
    with engine.connect() as connection:
        return {name: method for name, method in connection.execute(query)}


def test_postgres_compresses_the_audit_json_with_lz4(postgres_url: str) -> None:
    """0006: LZ4 (`l`) for the evaluations' JSON, back to the server's default (``) below it."""
    engine = make_engine(postgres_url)
    upgrade(postgres_url, "0006")
    assert _compression(engine) == dict.fromkeys(
        ("input_received", "input_normalised", "result"), "l"
    )
    downgrade(postgres_url, "0005")
    assert set(_compression(engine).values()) == {""}
    engine.dispose()
