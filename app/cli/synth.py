"""`eligo synth`: write a synthetic registry cohort (made-up SSc and SLE patients) for tests
and benchmarks of registry screening. See app/batch/synth.py for what the data are, and
are not."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
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
    from app.batch.synth import write_parquet  # noqa: PLC0415

    write_parquet(n, features, path, seed=seed)


def _write_csv(n: int, features: Mapping[str, Feature], path: Path, *, seed: int = 0) -> None:
    from app.batch.synth import write_csv  # noqa: PLC0415

    write_csv(n, features, path, seed=seed)


def _write_registry_csv(
    n: int, features: Mapping[str, Feature], path: Path, *, seed: int = 0
) -> None:
    from app.batch.synth_registry import write_registry_csv  # noqa: PLC0415

    write_registry_csv(n, features, path, seed=seed)


WRITERS: Mapping[str, Writer] = {".parquet": _write_parquet, ".csv": _write_csv}
# Registry codings are text as a registry exports it (decimal commas, codes): CSV only.
REGISTRY_WRITERS: Mapping[str, Writer] = {".csv": _write_registry_csv}
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
@click.option(
    "--codings",
    type=click.Choice(["plain", "registry"]),
    default="plain",
    show_default=True,
    help="plain: feature ids and canonical units; registry: the same patients coded as a "
    "registry exports them (CSV only)",
)
@click.option(
    "--mapping-out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="With --codings registry: write the mapping file that reads the cohort back",
)
def synth(  # noqa: PLR0917 - one option per parameter, as click calls it
    n: int,
    out: Path,
    seed: int,
    rules_dir: Path | None,
    codings: str,
    mapping_out: Path | None,
) -> None:
    """Write a synthetic cohort of N made-up patients (not clinically calibrated).

    Columns: id, then one per catalogue feature in its canonical unit; empty means unknown.
    The same seed gives the same cohort. `--codings registry` writes the same patients as a
    registry exports them (its own column names and codes, missing-value codes, decimal
    commas, other units) and `--mapping-out` the mapping `eligo screen --mapping` reads
    them back with.
    """
    from app.batch.synth import check_catalogue  # noqa: PLC0415

    writer = _writer(out, codings, mapping_out)
    features = load(rules_dir or settings().rules_dir).features
    try:
        check_catalogue(features)
    except ValueError as exc:
        fail(str(exc), EXIT_RULES)
    try:
        _write_atomically(out, lambda path: writer(n, features, path, seed=seed))
        if mapping_out is not None:
            _write_atomically(mapping_out, lambda path: _write_mapping(features, out, path))
    except OSError as exc:
        fail(f"{exc.filename or out}: cannot write: {exc.strerror or exc}")
    click.echo(f"wrote {n:,} synthetic patients to {out}", err=True)
    if mapping_out is not None:
        click.echo(f"wrote the mapping that reads it to {mapping_out}", err=True)


def _writer(out: Path, codings: str, mapping_out: Path | None) -> Writer:
    """The writer for the output's format and codings; every argument problem exits 2 before
    anything is written."""
    if codings == "registry":
        writer = REGISTRY_WRITERS.get(out.suffix.lower())
        if writer is None:
            fail(f"{out}: registry codings are written as CSV; use a .csv output")
    else:
        found = WRITERS.get(out.suffix.lower())
        if found is None:
            fail(f"{out}: unsupported output format {out.suffix!r}; use .parquet or .csv")
        if mapping_out is not None:
            fail("--mapping-out: the plain cohort needs no mapping; use --codings registry")
        writer = found
    for path in (out, mapping_out):
        if path is not None and not path.parent.is_dir():
            fail(f"{path}: directory {str(path.parent)!r} does not exist")
    if mapping_out is not None and mapping_out.resolve() == out.resolve():
        fail(f"--mapping-out: {mapping_out} is the cohort's own output")
    return writer


def _write_mapping(features: Mapping[str, Feature], out: Path, path: Path) -> None:
    from app.batch.synth_registry import mapping  # noqa: PLC0415

    path.write_text(mapping(features, out.name), encoding="utf-8")


def _write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """Write next to the target, then rename over it: readers never see half a file, and a
    failed or interrupted run leaves no partial output behind."""
    temporary = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        write(temporary)
        os.replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
