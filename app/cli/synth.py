"""`eligo synth`: write a synthetic registry cohort (made-up SSc and SLE patients) for tests
and benchmarks of registry screening. See app/screening/synth.py for what the data are, and
are not."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click

from app.cli.common import EXIT_RULES, fail, load, settings

# The generator (NumPy, PyArrow) is imported when the command runs (app/cli/common.py).
if TYPE_CHECKING:
    from app.engine.model import Feature


class Writer(Protocol):
    def __call__(
        self, n: int, features: Mapping[str, Feature], path: Path, *, seed: int = ...
    ) -> None: ...


def _write_parquet(n: int, features: Mapping[str, Feature], path: Path, *, seed: int = 0) -> None:
    from app.screening.synth import write_parquet  # noqa: PLC0415

    write_parquet(n, features, path, seed=seed)


def _write_csv(n: int, features: Mapping[str, Feature], path: Path, *, seed: int = 0) -> None:
    from app.screening.synth import write_csv  # noqa: PLC0415

    write_csv(n, features, path, seed=seed)


WRITERS: Mapping[str, Writer] = {".parquet": _write_parquet, ".csv": _write_csv}
MAX_PATIENTS = 100_000_000


@click.command("synth")
@click.option(
    "--n",
    "n",
    type=click.IntRange(1, MAX_PATIENTS),
    required=True,
    help=f"Number of patients (1 to {MAX_PATIENTS:,})",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Output file: .parquet or .csv",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed"
)
@click.option(
    "--rules-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Rules directory whose feature catalogue gives the columns "
    "[default: ELIGO_RULES_DIR or the shipped rules]",
)
def synth(n: int, out: Path, seed: int, rules_dir: Path | None) -> None:
    """Write a synthetic cohort of N made-up patients (not clinically calibrated).

    Columns: id, then one per catalogue feature in its canonical unit; empty means unknown.
    The same seed gives the same cohort.
    """
    from app.screening.synth import check_catalogue  # noqa: PLC0415

    writer = WRITERS.get(out.suffix.lower())
    if writer is None:
        fail(f"{out}: unsupported output format {out.suffix!r}; use .parquet or .csv")
    if not out.parent.is_dir():
        fail(f"{out}: directory {str(out.parent)!r} does not exist")
    features = load(rules_dir or settings().rules_dir).features
    try:
        check_catalogue(features)
    except ValueError as exc:
        fail(str(exc), EXIT_RULES)
    try:
        _write_atomically(out, writer, n, features, seed)
    except OSError as exc:
        fail(f"{out}: cannot write: {exc.strerror or exc}")
    click.echo(f"wrote {n:,} synthetic patients to {out}", err=True)


def _write_atomically(
    out: Path, writer: Writer, n: int, features: Mapping[str, Feature], seed: int
) -> None:
    """Write next to the target, then rename over it: readers never see half a file, and a
    failed or interrupted run leaves no partial output behind."""
    temporary = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        writer(n, features, temporary, seed=seed)
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
