"""`eligo db ...`: the database schema (Alembic migrations)."""

from __future__ import annotations

import click

from app.cli.common import settings

# Alembic and SQLAlchemy are imported inside the commands (app/cli/common.py).


@click.group()
def db() -> None:
    """Database schema: apply and inspect migrations (ELIGO_DATABASE_URL)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision")
def upgrade_command(revision: str) -> None:
    """Apply pending migrations."""
    from app.db.migrate import head, upgrade  # noqa: PLC0415

    url = settings().database_url
    upgrade(url, revision)
    click.echo(f"database at revision {_current(url)} (head {head()})")


@db.command("current")
def current_command() -> None:
    """Print the database's revision and whether it is behind; exit 1 if it is."""
    from app.db.migrate import head  # noqa: PLC0415

    revision = _current(settings().database_url)
    click.echo(f"database at revision {revision or '(empty)'} (head {head()})")
    if revision != head():
        raise SystemExit(1)


def _current(url: str) -> str | None:
    from app.db.migrate import current  # noqa: PLC0415
    from app.db.session import make_engine  # noqa: PLC0415

    engine = make_engine(url)
    try:
        return current(engine)
    finally:
        engine.dispose()
