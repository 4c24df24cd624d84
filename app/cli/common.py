"""What the `eligo` commands share: exit codes, failing with a message, loading rules, a
database session for the administration commands."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.db.migrate import current, head
from app.db.session import make_engine, session_factory
from app.engine.diagnostics import RuleLoadError
from app.engine.load import load_rules
from app.engine.model import RuleBase
from app.settings import Settings

EXIT_RULES = 1  # invalid rules, failing vignettes, incomplete coverage
EXIT_INPUT = 2  # bad usage or a bad input file
EXIT_CONFIG = 3  # the service refuses this configuration (production checks, schema behind)


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load(rules_dir: Path) -> RuleBase:
    try:
        return load_rules(rules_dir)
    except RuleLoadError as exc:
        click.echo(exc.report(), err=True)
        sys.exit(EXIT_RULES)


@contextmanager
def database_session() -> Iterator[Session]:
    """A session on the configured database, committed on success; the schema must be at
    head (a clear message instead of a missing-table error)."""
    engine = make_engine(Settings().database_url)
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
