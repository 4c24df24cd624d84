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

from app.db.session import normalise_url
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
