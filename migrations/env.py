"""Alembic environment: the URL from Eligo's settings, the metadata from app.db."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from app.db import models  # noqa: F401 - registers the tables on Base.metadata
from app.db.base import Base
from app.db.migrate import url_option
from app.settings import Settings

config = context.config
if not config.get_main_option("sqlalchemy.url"):  # the `alembic` CLI: use Eligo's settings
    config.set_main_option("sqlalchemy.url", url_option(Settings().database_url))
target_metadata = Base.metadata


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        # batch mode lets ALTER TABLE migrations run on SQLite as well as PostgreSQL
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
