"""`eligo mapping init SOURCE`: a starter mapping file for a registry's own columns
(app/batch/starter.py says how columns are matched to features)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from app.cli.common import fail, load, settings


@click.group()
def mapping() -> None:
    """Mapping files: which registry column gives which feature (eligo screen --mapping)."""


@mapping.command("init")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the mapping to this file instead of stdout (never over an existing one)",
)
@click.option(
    "--rules-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Rules directory [default: ELIGO_RULES_DIR or the shipped rules]",
)
def init(source: Path, out: Path | None, rules_dir: Path | None) -> None:
    """Propose a mapping for SOURCE (.csv, .parquet, .jsonl/.ndjson): each column matched to a
    feature by its name and a sample of its values, with why; the rest listed as comments."""
    from app.batch.backends import SourceError  # noqa: PLC0415  # see app/cli/common.py
    from app.batch.head import HeadError  # noqa: PLC0415
    from app.batch.starter import propose, read_columns, render  # noqa: PLC0415

    config = settings()
    rules = load(rules_dir or config.rules_dir)
    if out is not None and out.exists():
        fail(f"{out}: exists; the starter mapping is written to a new file only")
    try:
        columns = read_columns(source, config.screening_limits())
    except (SourceError, HeadError) as exc:
        fail(str(exc))
    text = render(propose(columns, rules.features), source.name, datetime.now(UTC).date())
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}: check it, then `eligo screen {source} --mapping {out} ...`", err=True)
