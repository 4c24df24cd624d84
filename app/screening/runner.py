"""One screening from source to results, rejected rows and report.

    source --engine.open--> raw_source --validated()--> rows with problems --+--> rejected
                            (derived values, corrected:<feature> flags)     +--> Screening
    Screening.verdicts(missing=True) --engine.batches--> results (Parquet or CSV)
    results, counted as they pass (report.Tally) --> report JSON (+ one funnel SVG per rule set)

Files appear whole or not at all: each is written beside its final name and renamed at the
end, so a crash or a cancellation never leaves half a results file that looks complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import sqlalchemy as sa

from app.engine.inputs import FeatureValue
from app.engine.model import RuleBase, RuleSet
from app.engine.run import select
from app.engine.sql import Screening
from app.screening import report
from app.screening.bulk import BulkCohort, read_bulk
from app.screening.engines import (
    DatabaseEngine,
    DuckDBEngine,
    Engine,
    SourceError,
    SparkEngine,
    arrow_type,
    spark_session,
)
from app.screening.funnel import funnel_svg
from app.screening.head import Limits, configured
from app.screening.mapping import MappingFile, Plan, plan
from app.screening.validate import (
    KEY,
    PROBLEMS,
    ROW,
    SQL_TYPES,
    VALID,
    corrected_columns,
    validated,
)

REJECTED_IN_REPORT = 100
REVIEW = "Rule sets are drafts that need local clinical review before use."

Progress = Callable[[int, int], None]


class Cancelled(Exception):
    """The screening was cancelled; nothing was kept."""


@dataclass(frozen=True, slots=True)
class Rejected:
    row: int
    where: str  # file:line, or "row N"
    problems: str


@dataclass
class Outcome:
    results: Path
    rejected_file: Path
    report: dict[str, Any]
    rejected: list[Rejected] = field(default_factory=list)


def _never() -> bool:
    return False


def _quiet(done: int, total: int) -> None:
    """No progress display."""


@dataclass
class Job:
    """What to screen and where the files go."""

    engine: Engine
    rules: RuleBase
    rulesets: Sequence[RuleSet]
    out: Path
    mapping: MappingFile | None = None
    source_name: str = "source"
    line_offset: int = 0  # CSV: the header is line 1, so row N is line N + 1
    progress: Progress = _quiet
    cancelled: Callable[[], bool] = _never
    extra_rejected: Sequence[Rejected] = ()  # found before the engine saw the rows (FHIR Bulk)


def side_file(out: Path, suffix: str) -> Path:
    """`results.parquet` -> `results.rejected.csv`, `results.report.json`, …"""
    return out.with_name(out.name.removesuffix(out.suffix) + suffix)


def run(job: Job, raw_and_kinds: tuple[Any, dict[str, Any]]) -> Outcome:
    raw, kinds = raw_and_kinds
    columns = plan(kinds, job.rules.features, job.mapping, name=job.source_name)
    features = list(job.rules.features.values())
    checked = validated(raw, columns, features, job.engine.dialect)
    # Validated once: the verdicts and the rejected rows both read it. Reading the whole
    # source happens here, so here is where a file's own defects (a ragged CSV line past
    # what the header check sampled) come out: name the file, as every other error does.
    try:
        rows = job.engine.materialise(sa.select(checked))
    except SourceError as exc:
        if exc.code:  # names the file (and line) itself
            raise
        raise SourceError(f"{job.source_name}: {exc}") from None
    total = job.engine.count()
    patients = sa.select(rows).where(rows.c[VALID]).subquery("patients")
    fence = job.engine.dialect == "postgresql"
    # The correction flags go to the results, so the report counts them as the rows stream.
    flags = corrected_columns(features)
    screening = Screening(job.rulesets, patients, key=KEY, fence=fence, carry=flags)
    verdicts = screening.verdicts(missing=True)
    tally = report.Tally(job.rulesets, [f.id for f in features if f.derivations])
    _write(job.engine.batches(verdicts), job.out, job, total, tally)
    rejected_file = side_file(job.out, ".rejected.csv")
    rejected = _rejected(job, rows, rejected_file)
    summary = _summary(job, columns, total, rejected, tally.reports(job.rules.features))
    return Outcome(job.out, rejected_file, summary, rejected)


def _write(
    batches: Iterator[pa.RecordBatch], out: Path, job: Job, total: int, tally: report.Tally
) -> None:
    """Results to `out` (Parquet, or CSV), counted into `tally` on the way. Encoding a batch
    runs on a second thread (Arrow releases the GIL) while this one counts it and the engine
    makes the next: 1.5 s of a million rows' 10."""
    partial = out.with_name(f".{out.name}.partial")
    writer: Any = None
    done = 0
    try:
        with ThreadPoolExecutor(1) as pool:
            pending: Future[None] | None = None
            for batch in batches:
                if job.cancelled():
                    raise Cancelled
                if writer is None:
                    writer = _writer(partial, batch.schema, out.suffix.lower())
                if pending is not None:
                    pending.result()
                pending = pool.submit(writer.write_batch, batch)
                tally.add(batch)
                done += batch.num_rows
                job.progress(done, total)
            if pending is not None:
                pending.result()
        if writer is None:
            raise ValueError("the screening query returned no schema")
        writer.close()
        writer = None
        os.replace(partial, out)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)


def _writer(path: Path, schema: pa.Schema, suffix: str) -> Any:
    if suffix == ".csv":
        return pa_csv.CSVWriter(str(path), schema)
    # Dictionaries only for the text columns (status, excluded_by): on a million booleans
    # they cost time and save nothing; statistics are not read by anyone.
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    return pq.ParquetWriter(
        str(path), schema, compression="zstd", use_dictionary=strings, write_statistics=False
    )


def _rejected(job: Job, rows: Any, path: Path) -> list[Rejected]:
    """Every rejected row goes to the `.rejected.csv` beside the results (with its id, for
    the registry to correct it); the report keeps row numbers and problems only."""
    query = (
        sa.select(rows.c[ROW], rows.c[KEY], rows.c[PROBLEMS])
        .where(sa.not_(rows.c[VALID]))
        .order_by(rows.c[ROW])
    )
    found = [*job.extra_rejected]
    ids: list[str | None] = [None] * len(found)
    for batch in job.engine.batches(query):
        for row, ident, problems in zip(
            *(batch.column(i).to_pylist() for i in range(3)), strict=True
        ):
            found.append(Rejected(int(row), _where(job, int(row)), str(problems)))
            ids.append(ident)
    table = pa.table(
        {
            "row": [r.row for r in found],
            "where": [r.where for r in found],
            "id": ids,
            "problems": [r.problems for r in found],
        }
    )
    partial = path.with_name(f".{path.name}.partial")
    pa_csv.write_csv(table, str(partial))
    os.replace(partial, path)
    return found


def _where(job: Job, row: int) -> str:
    if job.line_offset:
        return f"{job.source_name}:{row + job.line_offset}"
    return f"{job.source_name}: row {row}"


def _summary(
    job: Job, columns: Plan, total: int, rejected: Sequence[Rejected], counted: report.Reports
) -> dict[str, Any]:
    return {
        "rules_hash": job.rules.hash,
        "review": REVIEW,
        "source": {"name": job.source_name, "engine": job.engine.dialect},
        "rows": total + len(job.extra_rejected),
        "screened": counted.screened,
        "rejected": {
            "count": len(rejected),
            "first": [
                {"row": r.row, "where": r.where, "problems": r.problems}
                for r in rejected[:REJECTED_IN_REPORT]
            ],
        },
        "columns": {
            "used": {c.feature.id: c.column for c in columns.columns},
            "units": {c.feature.id: c.unit for c in columns.columns if c.unit},
            "ignored": list(columns.ignored),
        },
        "rulesets": counted.rulesets,
        "missing": counted.missing,
        "to_confirm": counted.to_confirm,
        "corrected": counted.corrected,
    }


@dataclass(frozen=True)
class Request:
    """A screening as a user asks for it, by the CLI or POST /v1/screenings."""

    source: str  # a file, a FHIR Bulk folder, or a SQLAlchemy URL (with `table`)
    out: Path
    table: str | None = None
    mapping: MappingFile | None = None
    rulesets: Sequence[str] | None = None
    engine: str = "duckdb"  # or "spark"; a URL source runs in its own database
    as_of: date | None = None  # FHIR freshness windows count back from this day
    spark_master: str | None = None
    source_name: str | None = None  # how reports name the source (never a server path)
    limits: Limits = field(default_factory=configured)  # columns, first line, sample (head.py)


def is_url(source: str) -> bool:
    return "://" in source


def screen(
    request: Request,
    rules: RuleBase,
    *,
    progress: Progress = _quiet,
    cancelled: Callable[[], bool] = _never,
) -> Outcome:
    """Open the engine the request names, screen, write the report beside the results."""
    rulesets = select(rules, list(request.rulesets) if request.rulesets else None)
    engine = _engine(request)
    try:
        opened, extra = _open(engine, request, rules)
        job = Job(
            engine=engine,
            rules=rules,
            rulesets=rulesets,
            out=request.out,
            mapping=request.mapping,
            source_name=_name(request),
            line_offset=1 if request.source.lower().endswith(".csv") else 0,
            progress=progress,
            cancelled=cancelled,
            extra_rejected=extra,
        )
        outcome = run(job, opened)
    finally:
        engine.close()
    _write_report(outcome)
    return outcome


def _name(request: Request) -> str:
    if request.source_name:
        return request.source_name
    if is_url(request.source):
        return request.table or "table"
    return Path(request.source).name


def _engine(request: Request) -> Engine:
    if is_url(request.source):
        if not request.table:
            raise SourceError("a database source needs a table (--table)")
        key = request.mapping.key if request.mapping else "id"
        return DatabaseEngine(request.source, key=key, limits=request.limits)
    if request.engine == "spark":
        return SparkEngine(spark_session(request.spark_master), request.limits)
    if request.engine != "duckdb":
        raise SourceError(f"unknown engine {request.engine!r} (duckdb or spark)")
    return DuckDBEngine(request.limits)


Opened = tuple[Any, dict[str, Any]]


def _open(engine: Engine, request: Request, rules: RuleBase) -> tuple[Opened, list[Rejected]]:
    if is_url(request.source):
        return engine.open(request.table or ""), []
    path = Path(request.source)
    if not path.is_dir():
        return engine.open(request.source), []
    if not isinstance(engine, DuckDBEngine):
        raise SourceError(f"{path.name}: a FHIR Bulk folder is read with the duckdb engine")
    cohort = read_bulk(path, rules.features, request.as_of or date.today())
    problems = [Rejected(0, p.where, p.message) for p in cohort.problems]
    return engine.open_arrow(_bulk_table(cohort, rules)), problems


def _bulk_table(cohort: BulkCohort, rules: RuleBase) -> pa.Table:
    """The mapped patients as feature-named columns of canonical values: what `validated`
    reads from any other source (it checks them again, which costs nothing here). The values
    as the records give them, before derivations: `validated` derives them as `read_bulk`
    did, and flags a value given that an implied one replaces, as for any other source."""
    present = {f for p in cohort.patients for f in p.given}
    columns: dict[str, pa.Array] = {"id": pa.array([p.ident for p in cohort.patients], pa.string())}
    for feature in rules.features.values():
        if feature.id in present:
            values = [_scalar(p.given.get(feature.id)) for p in cohort.patients]
            columns[feature.id] = pa.array(values, arrow_type(SQL_TYPES[feature.type]))
    return pa.table(columns)


def _scalar(value: FeatureValue | None) -> Any:
    return None if value is None else value.value


def _write_report(outcome: Outcome) -> None:
    """`<out>.report.json` and one CONSORT-style funnel per rule set in `<out>.funnels/`."""
    _atomic_text(side_file(outcome.results, ".report.json"), json.dumps(outcome.report, indent=2))
    folder = side_file(outcome.results, ".funnels")
    folder.mkdir(exist_ok=True)
    for entry in outcome.report["rulesets"]:
        _atomic_text(folder / f"{entry['id']}.svg", funnel_svg(entry))


def _atomic_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
