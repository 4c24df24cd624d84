"""`eligo db ...`: the database schema (Alembic migrations)."""

from __future__ import annotations

import click

from app.db.migrate import current, head, upgrade
from app.db.session import make_engine
from app.settings import Settings


@click.group()
def db() -> None:
    """Database schema: apply and inspect migrations (ELIGO_DATABASE_URL)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision")
def upgrade_command(revision: str) -> None:
    """Apply pending migrations."""
    url = Settings().database_url
    upgrade(url, revision)
    click.echo(f"database at revision {_current(url)} (head {head()})")


@db.command("current")
def current_command() -> None:
    """Print the database's revision and whether it is behind; exit 1 if it is."""
    revision = _current(Settings().database_url)
    click.echo(f"database at revision {revision or '(empty)'} (head {head()})")
    if revision != head():
        raise SystemExit(1)


def _current(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return current(engine)
    finally:
        engine.dispose()
