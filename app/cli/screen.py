"""`eligo screen`: a whole registry against the rule sets, where the data lies."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli.common import fail, load, settings

# The screening engines (DuckDB, PyArrow, PySpark) and the rule engine are imported inside the
# command (app/cli/common.py).
if TYPE_CHECKING:
    from app.batch.runner import Outcome, Request

SHOWN_REJECTED = 10


@click.command("screen")
@click.argument("source")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Results file: .parquet or .csv (the report and rejected rows go beside it)",
)
@click.option(
    "--mapping", type=click.Path(path_type=Path, dir_okay=False), help="Column mapping (YAML)"
)
@click.option(
    "--ruleset", "ruleset_ids", multiple=True, help="Rule set id (repeatable) [default: all]"
)
@click.option(
    "--backend",
    type=click.Choice(["duckdb", "spark"]),
    help="The SQL backend that reads a file [default: duckdb]",
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    help="Alias of --backend, its earlier name (still accepted)",
)
@click.option("--table", help="Table (or schema.table) when SOURCE is a database URL")
@click.option("--spark-master", help="Spark master URL [default: SPARK_MASTER or local[*]]")
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    help="FHIR Bulk: the evaluation day [default: today]",
)
@click.option("--rules-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option(
    "--long",
    "long_format",
    is_flag=True,
    help="Also the results in long format: one row per patient and rule set "
    "(results.long.csv or .parquet, as --out)",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar [default: on a terminal]"
)
@click.option(
    "--strict",
    is_flag=True,
    help="A bad cell rejects its row [default: that value is unknown, the cell reported]",
)
def screen_command(  # noqa: PLR0917 - one option per parameter, as click calls it
    source: str,
    out: Path,
    mapping: Path | None,
    ruleset_ids: tuple[str, ...],
    backend: str | None,
    engine: str | None,
    table: str | None,
    spark_master: str | None,
    as_of: Any,
    rules_dir: Path | None,
    long_format: bool,
    progress: bool | None,
    strict: bool,
) -> None:
    """Screen SOURCE: a CSV, Parquet or NDJSON file, a FHIR Bulk Data export folder, or a
    database URL with --table (the query runs inside that database).

    The summary goes to stdout (`> summary.txt` keeps it); progress and errors to stderr."""
    from app.batch.runner import Request, is_url  # noqa: PLC0415

    if backend is not None and engine is not None and backend != engine:
        raise click.UsageError(f"--backend {backend} and its alias --engine {engine} differ")
    rules = load(rules_dir or settings().rules_dir)
    if out.suffix.lower() not in {".parquet", ".csv"}:
        fail(f"{out}: --out must end in .parquet or .csv")
    if not out.parent.is_dir():
        fail(f"{out.parent}: no such directory")
    if not is_url(source) and not Path(source).exists():
        fail(f"{source}: no such file or folder")
    request = Request(
        source=source,
        out=out,
        table=table,
        mapping=_mapping(mapping, rules.features) if mapping else None,
        rulesets=list(ruleset_ids) or None,
        backend=backend or engine or "duckdb",
        as_of=as_of.date() if as_of else date.today(),
        spark_master=spark_master,
        long=long_format,
        strict=strict,
        limits=settings().screening_limits(),
    )
    show = sys.stderr.isatty() if progress is None else progress
    outcome = _run(request, rules, show)
    click.echo(_summary(outcome))


def _mapping(path: Path, features: Any) -> Any:
    from app.batch.mapping import MappingError, load_mapping  # noqa: PLC0415

    try:
        return load_mapping(path, features)
    except MappingError as exc:
        fail("invalid mapping:\n" + str(exc))


def _run(request: Request, rules: Any, show: bool) -> Outcome:
    from app.batch.backends import SourceError  # noqa: PLC0415
    from app.batch.mapping import MappingError  # noqa: PLC0415
    from app.batch.runner import quiet, screen  # noqa: PLC0415
    from app.engine.inputs import InvalidInput  # noqa: PLC0415

    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=max(total, 1), label="screening", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        return screen(request, rules, progress=progress if show else quiet)
    except SourceError as exc:  # a FHIR Bulk folder's BulkError too
        fail(str(exc))
    except MappingError as exc:
        fail("the source's columns do not fit:\n" + str(exc))
    except InvalidInput as exc:
        fail("; ".join(f"{i.field}: {i.message}" for i in exc.issues))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _summary(outcome: Outcome) -> str:
    from app.engine.evaluate import Status  # noqa: PLC0415

    report = outcome.report
    lines = [
        f"rows read {report['rows']:,}; rejected {report['rejected']['count']:,}; "
        f"screened {report['screened']:,}",
    ]
    for rejected in outcome.rejected[:SHOWN_REJECTED]:
        lines.append(f"  {rejected.where}: {rejected.problems}")
    if len(outcome.rejected) > SHOWN_REJECTED:
        lines.append(f"  … all in {outcome.rejected_file}")
    lines += _unknown_cells(outcome)
    lines += [f"warning: {unread['message']}" for unread in report["indications_unread"]]
    if report["corrected"]:
        lines.append("values given that were corrected (corrected:<feature>):")
        lines += [f"  {c['summary']}" for c in report["corrected"]]
    header = ["rule set", *(s.value for s in Status)]
    rows = [[r["id"], *(f"{r['counts'][s.value]:,}" for s in Status)] for r in report["rulesets"]]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    lines += _undecided(report["rulesets"])
    lines += _bounds(report["rulesets"])
    lines += _written(outcome)
    lines.append(report["review"])
    return "\n".join(lines)


def _written(outcome: Outcome) -> list[str]:
    from app.batch.runner import side_file  # noqa: PLC0415

    def beside(suffix: str) -> Path:
        return side_file(outcome.results, suffix)

    written = [
        ("results", outcome.results),
        ("report", beside(".report.html")),
        ("", beside(".report.json")),
        ("tables", f"{beside('.tables')}/"),
        ("funnels", f"{beside('.funnels')}/"),
        ("rejected", outcome.rejected_file),
    ]
    if outcome.problems_file is not None:
        written.append(("problems", outcome.problems_file))
    if outcome.long is not None:
        written.insert(1, ("long", outcome.long))
    return [f"{name + ':' if name else '':9} {path}" for name, path in written]


def _unknown_cells(outcome: Outcome) -> list[str]:
    """The cells read as unknown (the rows screened), by registry column: counts and the
    first place, never a value or an id."""
    from app.engine.words import counted  # noqa: PLC0415

    problems = outcome.report["problems"]
    if not problems["cells"]:
        return []
    lines = [
        f"{counted(problems['cells'], 'cell')} in {counted(problems['rows'], 'row')} read as "
        f"unknown (not a value of their feature), all in {outcome.problems_file}:"
    ]
    for found in problems["by_column"][:SHOWN_REJECTED]:
        lines.append(
            f"  {found['column']} ({found['feature']}): {found['problem']}: "
            f"{counted(found['cells'], 'cell')}, first at {found['first']}"
        )
    return lines


def _undecided(rulesets: list[dict[str, Any]]) -> list[str]:
    """What keeps patients indeterminate, per rule set, in the report's two lists: values to
    measure apart from confirmations only a clinician can give."""

    def listed(entries: list[dict[str, Any]]) -> str:
        return ", ".join(f"{e['feature']} for {e['patients']:,}" for e in entries)

    measure = [f"  {r['id']}: {listed(r['missing'][:3])}" for r in rulesets if r["missing"]]
    confirm = [
        f"  {r['id']}: {listed(r['to_confirm'])};"
        f" {r['to_confirm_only']:,} await nothing but confirmations"
        for r in rulesets
        if r["to_confirm"]
    ]
    lines = ["values missing most (to measure), patients:", *measure] if measure else []
    if confirm:
        lines += ["awaiting a clinician's confirmation (not a measurement), patients:", *confirm]
    return lines


def _bounds(rulesets: list[dict[str, Any]]) -> list[str]:
    """Per rule set, eligible as far as is known and at most, and what would decide the most
    undecided patients by itself."""
    lines = ["bounds (an upper bound: eligible if every unknown item were favourable):"]
    for entry in rulesets:
        b = entry["bounds"]
        line = (
            f"  {entry['id']}: eligible {b['eligible']:,} (known); up to {b['best_case']:,} "
            f"if every unknown were favourable: {b['data_gaps_only']:,} only values to measure, "
            f"{b['confirmations_only']:,} only confirmations, {b['gaps_and_confirmations']:,} both"
        )
        if b["unlock"]:
            first = b["unlock"][0]
            patients = f"{first['patients']:,} patient" + ("" if first["patients"] == 1 else "s")
            line += f"; most unlocking: {first['feature']} ({patients})"
        lines.append(line)
    return lines
