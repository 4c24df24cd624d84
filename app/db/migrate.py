"""Alembic, driven from code: `eligo db upgrade`, the start-up check, and the tests.

Policy (README): in development the server applies pending migrations when it starts, so the
quick start is one command; in production it refuses to start while the database is behind and
says to run `eligo db upgrade`, so a schema change is always a deliberate, visible step.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from app.db.session import make_engine, normalise_url
from app.settings import Settings


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Settings().migrations_dir))
    config.set_main_option("sqlalchemy.url", url_option(url))
    return config


def url_option(url: str) -> str:
    """A database URL as an Alembic config value: psycopg 3 for PostgreSQL, and a literal %
    (e.g. in a password) doubled for ConfigParser interpolation."""
    return normalise_url(url).replace("%", "%%")


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision is not None, "migrations/versions has no revision"
    return revision


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class SchemaBehind(RuntimeError):
    pass


def prepare(url: str, *, auto_upgrade: bool) -> str | None:
    """Bring the schema to head, or refuse (the start-up policy above). Returns the revision
    the database was at before, if an upgrade ran."""
    engine = make_engine(url)
    try:
        before = current(engine)
    finally:
        engine.dispose()
    if before == head():
        return None
    if not auto_upgrade:
        raise SchemaBehind(
            f"the database is at revision {before or '(empty)'} and this version needs "
            f"{head()}: run `eligo db upgrade` (with the same ELIGO_DATABASE_URL), then start"
        )
    upgrade(url)
    return before or "(empty)"
