"""What the `eligo` commands share: exit codes, failing with a message, loading rules, a
database session for the administration commands.

Every module of the command line imports what only some commands need (the engine, pydantic,
SQLAlchemy, the screening engines) inside those commands: `eligo --version` and `--help` start
in a tenth of the time, and a command pays only for what it uses (tests/cli/test_imports.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from app.engine.diagnostics import RuleLoadError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from app.engine.model import RuleBase
    from app.settings import Settings

EXIT_RULES = 1  # invalid rules, failing vignettes, incomplete coverage
EXIT_INPUT = 2  # bad usage or a bad input file
EXIT_CONFIG = 3  # the service refuses this configuration (production checks, schema behind)


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings() -> Settings:
    """The configuration (ELIGO_* variables); app.settings brings in pydantic-settings and
    SQLAlchemy, so it is imported when a command first needs it."""
    from app.settings import Settings  # noqa: PLC0415

    return Settings()


def load(rules_dir: Path) -> RuleBase:
    from app.engine.load import load_rules  # noqa: PLC0415 - see the module docstring

    try:
        return load_rules(rules_dir)
    except RuleLoadError as exc:
        click.echo(exc.report(), err=True)
        sys.exit(EXIT_RULES)


@contextmanager
def database_session() -> Iterator[Session]:
    """A session on the configured database, committed on success; the schema must be at
    head (a clear message instead of a missing-table error)."""
    # See the module docstring.
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from app.db.migrate import current, head  # noqa: PLC0415
    from app.db.session import make_engine, session_factory  # noqa: PLC0415

    engine = make_engine(settings().database_url)
    try:
        if current(engine) != head():
            fail("the database schema is not at head: run `eligo db upgrade` first")
        with session_factory(engine)() as session:
            yield session
            session.commit()
    except SQLAlchemyError as exc:
        fail(f"database error: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}")
    finally:
        engine.dispose()
