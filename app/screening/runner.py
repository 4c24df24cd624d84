"""One screening from source to results, rejected rows and report.

    source --engine.open--> raw_source --validated()--> rows with problems, derived values,
                                                        corrected:<feature> flags
        --Screening.verdicts(missing=True)--> every row's verdicts, with its number, problems
        and validity --engine.batches--> split here: valid rows --> results (Parquet or CSV)
                                                     the others --> rejected rows
    results, counted as they pass (report.Tally) --> report JSON (+ one funnel SVG per rule set)

One query, read once: the source is scanned, validated and screened in one pass, and each
batch is split here by its `_valid` column. Storing the validated rows first and reading them
twice (verdicts, then rejected rows) cost a million rows of the shipped rule sets 2-3 s of
CPU and their size in memory; the verdicts the query computes for a rejected row are dropped.

Files appear whole or not at all: each is written beside its final name and renamed at the
end, so a crash or a cancellation never leaves half a results file that looks complete.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from app.engine.inputs import FeatureValue
from app.engine.model import Feature, RuleBase, RuleSet
from app.engine.run import select
from app.screening import report, sql_cache, table1
from app.screening.engines import (
    DuckDBEngine,
    Engine,
    Relation,
    SourceError,
    SparkEngine,
    spark_session,
)
from app.screening.funnel import funnel_svg
from app.screening.head import Limits, configured
from app.screening.long import write_long
from app.screening.mapping import MappingFile, Plan, plan
from app.screening.names import KEY, PROBLEMS, ROW, VALID, corrected_columns
from app.screening.report_html import report_html
from app.screening.report_tables import tables

# A FHIR Bulk folder brings the FHIR models (0.1-0.2 s to import): imported for one only.
if TYPE_CHECKING:
    from app.screening.bulk import BulkCohort

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
    long: Path | None = None  # the long-format results, when asked for


def _never() -> bool:
    return False


def quiet(done: int, total: int) -> None:
    """No progress display: the source is not counted for one."""


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
    progress: Progress = quiet
    cancelled: Callable[[], bool] = _never
    extra_rejected: Sequence[Rejected] = ()  # found before the engine saw the rows (FHIR Bulk)


def side_file(out: Path, suffix: str) -> Path:
    """`results.parquet` -> `results.rejected.csv`, `results.report.json`, …"""
    return out.with_name(out.name.removesuffix(out.suffix) + suffix)


def run(job: Job, raw_and_kinds: tuple[Any, dict[str, Any]]) -> Outcome:
    raw, kinds = raw_and_kinds
    columns = plan(kinds, job.rules.features, job.mapping, name=job.source_name)
    features = list(job.rules.features.values())
    described = _described(job, columns)
    tally = report.Tally(
        job.rulesets,
        [f.id for f in features if f.derivations],
        [job.rules.features[f] for f in described],
    )
    rejected_file = side_file(job.out, ".rejected.csv")
    # Reading the whole source happens here, so here is where a file's own defects (a ragged
    # CSV line past what the header check sampled) come out: name the file, as every other
    # error does.
    try:
        verdicts = _verdicts(job, raw, columns, features)
        # Counting costs a CSV or NDJSON source a parse of its own: only for a progress display.
        total = job.engine.count() if job.progress is not quiet else 0
        found = _write(job.engine.batches(verdicts), job.out, job, total, tally)
    except SourceError as exc:
        if exc.code:  # names the file (and line) itself
            raise
        raise SourceError(f"{job.source_name}: {exc}") from None
    rejected = _rejected(job, found, rejected_file)
    counted = tally.reports(job.rules.features)
    rows = counted.screened + sum(b.num_rows for b in found)
    summary = _summary(job, columns, rows, rejected, counted)
    return Outcome(job.out, rejected_file, summary, rejected)


# What the verdicts query carries for `_split` besides the results' own columns.
SIDE = (ROW, PROBLEMS, VALID)


def _described(job: Job, columns: Plan) -> list[str]:
    """Table 1's features: those the source gives (`table1.chosen`)."""
    return table1.chosen([c.feature.id for c in columns.columns], job.rules.features)


def _verdicts(job: Job, raw: Any, columns: Plan, features: Sequence[Feature]) -> Any:
    """The one query: every row of `raw` validated and screened, with its number, problems
    and validity. The correction flags go to the results, so that the report counts them as
    the rows stream. DuckDB is given its text, from the compiled-SQL cache when it has it."""
    if isinstance(job.engine, DuckDBEngine) and isinstance(raw, Relation):
        return _duckdb_verdicts(job, raw, columns, features)
    relation = raw.table() if isinstance(raw, Relation) else raw
    duplicates = job.engine.duplicates(_duplicates_query(relation, columns))
    return _compiled(job, relation, columns, features, duplicates)


def _duplicates_query(relation: Any, columns: Plan) -> Any:
    from app.screening.validate import duplicate_keys  # noqa: PLC0415 - SQLAlchemy

    return duplicate_keys(relation, columns)


def _compiled(
    job: Job,
    relation: Any,
    columns: Plan,
    features: Sequence[Feature],
    duplicates: Sequence[str] | None,
) -> Any:
    """The verdicts query, built with SQLAlchemy (a cache miss, or an engine that takes it)."""
    import sqlalchemy as sa  # noqa: PLC0415 - see sql_cache

    from app.engine.sql import Screening  # noqa: PLC0415 - SQLAlchemy: see sql_cache
    from app.screening.validate import validated  # noqa: PLC0415

    dialect = job.engine.dialect
    checked = validated(relation, columns, features, dialect, duplicates)
    # Table 1's values under names of their own: a feature a criterion reads is a column of
    # the screening's first stage already, and one name may not be selected twice there.
    chosen = _described(job, columns)
    described = [table1.column(f) for f in chosen]
    if chosen:
        labelled = (checked.c[f].label(table1.column(f)) for f in chosen)
        checked = sa.select(checked, *labelled).subquery("described")
    flags = corrected_columns(features)
    fence = dialect == "postgresql"
    carry = [*flags, *described, *SIDE]
    screening = Screening(job.rulesets, checked, key=KEY, fence=fence, carry=carry)
    return screening.verdicts(missing=True)


def _duckdb_verdicts(job: Job, raw: Relation, columns: Plan, features: Sequence[Feature]) -> str:
    """The verdicts query's DuckDB text. The texts (duplicate keys, verdicts with none) come
    from the cache; a source with duplicate keys gets a query naming them, compiled each time
    and never kept (the keys are patients' ids)."""

    def compile_texts() -> sql_cache.Texts:
        from app.screening.dialects import duckdb_sql  # noqa: PLC0415 - SQLAlchemy

        relation = raw.table()
        return {
            "duplicates": duckdb_sql(_duplicates_query(relation, columns)),
            "verdicts": duckdb_sql(_compiled(job, relation, columns, features, [])),
        }

    texts = sql_cache.recall(_cache_parts(job, raw, columns, features), compile_texts)
    duplicates = job.engine.duplicates(texts["duplicates"])
    if duplicates == []:
        return texts["verdicts"]
    from app.screening.dialects import duckdb_sql  # noqa: PLC0415 - SQLAlchemy

    return duckdb_sql(_compiled(job, raw.table(), columns, features, duplicates))


def _cache_parts(
    job: Job, raw: Relation, columns: Plan, features: Sequence[Feature]
) -> dict[str, Any]:
    """What the verdicts' SQL is made of, besides the code (sql_cache.key)."""
    return {
        "dialect": job.engine.dialect,
        "relation": [raw.name, *(f"{name}:{kind}" for name, kind in raw.kinds.items())],
        "catalogue": [f.spec.model_dump(mode="json") for f in features],
        "rulesets": [[r.id, r.hash] for r in job.rulesets],
        "key": columns.key,
        "columns": [
            [
                c.feature.id,
                c.column,
                c.kind.value,
                c.unit,
                c.linear.scale,
                c.linear.offset,
                sorted(c.values.items()),
                sorted(c.missing),
            ]
            for c in columns.columns
        ],
    }


def _split(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """A batch of the verdicts query as its valid rows' results, and (`_row`, `id`,
    `_problems`) of its rejected rows (None when it has none, as most batches). A batch with
    a rejected row is copied without it: ~0.1 s per 100,000 rows of the shipped rule sets,
    less than storing the validated rows and reading them twice cost every batch."""
    valid = batch.column(VALID)
    results = batch.drop_columns(list(SIDE))
    if valid.null_count == 0 and valid.false_count == 0:
        return results, None
    # `_valid` is never NULL; were it ever, the row is rejected rather than lost.
    valid = pc.fill_null(valid, False)
    rejected = batch.filter(pc.invert(valid)).select([ROW, KEY, PROBLEMS])
    return results.filter(valid), rejected


def _write(
    batches: Iterator[pa.RecordBatch], out: Path, job: Job, total: int, tally: report.Tally
) -> list[pa.RecordBatch]:
    """Results to `out` (Parquet, or CSV), counted into `tally` on the way; returns the
    rejected rows' batches. Encoding a batch runs on a second thread (Arrow releases the GIL)
    while this one counts it and the engine makes the next."""
    partial = out.with_name(f".{out.name}.partial")
    writer: Any = None
    rejected: list[pa.RecordBatch] = []
    done = 0
    try:
        with ThreadPoolExecutor(1) as pool:
            pending: Future[None] | None = None
            for batch in batches:
                if job.cancelled():
                    raise Cancelled
                results, refused = _split(batch)
                if refused is not None:
                    rejected.append(refused)
                done += batch.num_rows
                job.progress(done, max(total, done))
                # Table 1's values are counted, not written (the results hold verdicts only)
                written = results.drop_columns(_described_columns(results.schema))
                if writer is None:
                    writer = _writer(partial, written.schema, out.suffix.lower())
                elif not results.num_rows:
                    continue
                if pending is not None:
                    pending.result()
                pending = pool.submit(writer.write_batch, written)
                tally.add(results)
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
    return rejected


def _described_columns(schema: pa.Schema) -> list[str]:
    return [name for name in schema.names if name.startswith(table1.PREFIX)]


def _writer(path: Path, schema: pa.Schema, suffix: str) -> Any:
    if suffix == ".csv":
        return pa_csv.CSVWriter(str(path), schema)
    # Dictionaries only for the text columns of few values (status, excluded_by): on a
    # million booleans, or the patients' distinct keys, they cost time and save nothing
    # (the keys' dictionary is built and then dropped for plain text: 0.05-0.3 CPU-s a
    # million rows, and 1.5 MB more); statistics are not read by anyone.
    strings = [f.name for f in schema if pa.types.is_string(f.type) and f.name != KEY]
    return pq.ParquetWriter(
        str(path), schema, compression="zstd", use_dictionary=strings, write_statistics=False
    )


def _rejected(job: Job, batches: Sequence[pa.RecordBatch], path: Path) -> list[Rejected]:
    """Every rejected row goes to the `.rejected.csv` beside the results (with its id, for
    the registry to correct it), in row order; the report keeps row numbers and problems
    only."""
    found = [*job.extra_rejected]
    ids: list[str | None] = [None] * len(found)
    refused = [
        (int(row), ident, str(problems))
        for batch in batches
        for row, ident, problems in zip(
            *(batch.column(i).to_pylist() for i in range(3)), strict=True
        )
    ]
    for row, ident, problems in sorted(refused, key=lambda r: r[0]):
        found.append(Rejected(row, _where(job, row), problems))
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
        "table1": counted.table1,
        "overlap": counted.overlap,
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
    long: bool = False  # also the results in long format (`long_file`)


def is_url(source: str) -> bool:
    return "://" in source


def screen(
    request: Request,
    rules: RuleBase,
    *,
    progress: Progress = quiet,
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
    if request.long:
        outcome.long = long_file(request.out)
        write_long(outcome.results, rulesets, outcome.long)
    return outcome


def long_file(out: Path) -> Path:
    """`results.parquet` -> `results.long.parquet`; `results.csv` -> `results.long.csv`."""
    return side_file(out, ".long" + out.suffix.lower())


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
        from app.screening.database import DatabaseEngine  # noqa: PLC0415 - SQLAlchemy

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
    from app.screening.bulk import read_bulk  # noqa: PLC0415 - see BulkCohort's import

    cohort = read_bulk(path, rules.features, request.as_of or date.today())
    problems = [Rejected(0, p.where, p.message) for p in cohort.problems]
    return engine.open_arrow(_bulk_table(cohort, rules)), problems


def _bulk_table(cohort: BulkCohort, rules: RuleBase) -> pa.Table:
    """The mapped patients as feature-named columns of canonical values: what `validated`
    reads from any other source (it checks them again, which costs nothing here). The values
    as the records give them, before derivations: `validated` derives them as `read_bulk`
    did, and flags a value given that an implied one replaces, as for any other source."""
    from app.screening.database import arrow_type  # noqa: PLC0415 - SQLAlchemy
    from app.screening.validate import SQL_TYPES  # noqa: PLC0415

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
    """`<out>.report.json`, one CONSORT-style funnel per rule set in `<out>.funnels/`, the
    same as a page people read (`<out>.report.html`, the funnels inline)."""
    _atomic_text(side_file(outcome.results, ".report.json"), json.dumps(outcome.report, indent=2))
    folder = side_file(outcome.results, ".funnels")
    folder.mkdir(exist_ok=True)
    funnels = {entry["id"]: funnel_svg(entry) for entry in outcome.report["rulesets"]}
    for ident, svg in funnels.items():
        _atomic_text(folder / f"{ident}.svg", svg)
    _atomic_text(side_file(outcome.results, ".report.html"), report_html(outcome.report, funnels))
    folder = side_file(outcome.results, ".tables")
    folder.mkdir(exist_ok=True)
    for name, (header, rows) in tables(outcome.report).items():
        _atomic_csv(folder / f"{name}.csv", header, rows)


def _atomic_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """With a byte order mark: a spreadsheet then reads µmol/L and m² as written."""
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(partial, path)


def _atomic_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
