"""What the `eligo` commands share: exit codes, failing with a message, loading rules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from app.engine.diagnostics import RuleLoadError
from app.engine.load import load_rules
from app.engine.model import RuleBase

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
