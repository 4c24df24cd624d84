"""One screening from source to results, rejected rows and report.

    source --backend.open--> raw_source --validated()--> rows with problems, derived values,
                                                        corrected:<feature> flags
        --Screening.verdicts(missing=True)--> every row's verdicts, with its number, problems
        and validity --backend.batches--> split here: valid rows --> results (Parquet or CSV)
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
import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from app.batch import report, sql_cache, table1
from app.batch.backends import (
    Backend,
    DuckDBBackend,
    Relation,
    SourceError,
    SparkBackend,
    spark_session,
)
from app.batch.files import written_whole
from app.batch.funnel import funnel_svg
from app.batch.head import Limits
from app.batch.long import write_long
from app.batch.mapping import Column, MappingFile, Plan, plan
from app.batch.names import (
    FIELD_SEP,
    KEY,
    PROBLEM_SEP,
    PROBLEMS,
    ROW,
    VALID,
    corrected_columns,
)
from app.batch.report_html import report_html
from app.batch.report_tables import tables
from app.engine.inputs import FeatureValue
from app.engine.model import Feature, RuleBase, RuleSet
from app.engine.result_columns import MISSING, STATUS, TO_CONFIRM, column_name
from app.engine.run import select
from app.engine.units import Linear

# A FHIR Bulk folder brings the FHIR models (0.1-0.2 s to import): imported for one only.
if TYPE_CHECKING:
    from app.batch.bulk import BulkCohort

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
    problems_file: Path | None = None  # `.problems.csv`: each cell made unknown


@dataclass
class _Found:
    """What `_split` set aside from the batches: (`_row`, `id`, `_problems`) of the rows
    rejected, and of the rows screened with a cell made unknown."""

    rejected: list[pa.RecordBatch] = field(default_factory=list)
    flagged: list[pa.RecordBatch] = field(default_factory=list)


def _never() -> bool:
    return False


def quiet(done: int, total: int) -> None:
    """No progress display: the source is not counted for one."""


@dataclass
class Job:
    """What to screen and where the files go."""

    backend: Backend
    rules: RuleBase
    rulesets: Sequence[RuleSet]
    out: Path
    mapping: MappingFile | None = None
    source_name: str = "source"
    line_offset: int = 0  # CSV: the header is line 1, so row N is line N + 1
    progress: Progress = quiet
    cancelled: Callable[[], bool] = _never
    extra_rejected: Sequence[Rejected] = ()  # found before the backend saw the rows (FHIR Bulk)
    strict: bool = False  # a bad cell rejects its row (else the value is unknown, reported)


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
    problems_file = side_file(job.out, ".problems.csv")
    # Reading the whole source happens here, so here is where a file's own defects (a ragged
    # CSV line past what the header check sampled) come out: name the file, as every other
    # error does.
    try:
        verdicts = _verdicts(job, raw, columns, features)
        # Counting costs a CSV or NDJSON source a parse of its own: only for a progress display.
        total = job.backend.count() if job.progress is not quiet else 0
        found = _write(job.backend.batches(verdicts), job.out, job, total, tally)
    except SourceError as exc:
        if exc.code:  # names the file (and line) itself
            raise
        raise SourceError(f"{job.source_name}: {exc}") from None
    refused = _problem_table(found.rejected)
    rejected = _rejected(job, refused, rejected_file)
    flagged = _problem_table(found.flagged)
    problems = _write_problems(job, flagged, problems_file)
    counted = tally.reports(job.rules.features)
    rows = counted.screened + refused.num_rows
    cell_problems: report.CellProblems = {
        "cells": problems.num_rows,
        "rows": flagged.num_rows,
        "by_column": _by_column(job, flagged),
    }
    rejected_by = _by_column(job, refused)
    summary = _summary(
        job, columns, rows, refused=(rejected, rejected_by), problems=cell_problems, counted=counted
    )
    _funnel_rows(summary, rows + len(job.extra_rejected), len(rejected), flagged.num_rows)
    return Outcome(job.out, rejected_file, summary, rejected, problems_file=problems_file)


# What the verdicts query carries for `_split` besides the results' own columns.
SIDE = (ROW, PROBLEMS, VALID)


def _described(job: Job, columns: Plan) -> list[str]:
    """Table 1's features: those the source gives (`table1.chosen`)."""
    return table1.chosen([c.feature.id for c in columns.columns], job.rules.features)


def _verdicts(job: Job, raw: Any, columns: Plan, features: Sequence[Feature]) -> Any:
    """The one query: every row of `raw` validated and screened, with its number, problems
    and validity. The correction flags go to the results, so that the report counts them as
    the rows stream. DuckDB is given its text, from the compiled-SQL cache when it has it."""
    if isinstance(job.backend, DuckDBBackend) and isinstance(raw, Relation):
        return _duckdb_verdicts(job, raw, columns, features)
    relation = raw.table() if isinstance(raw, Relation) else raw
    duplicates = job.backend.duplicates(_duplicates_query(relation, columns))
    return _compiled(job, relation, columns, features, duplicates)


def _duplicates_query(relation: Any, columns: Plan) -> Any:
    from app.batch.validate import duplicate_keys  # noqa: PLC0415 - SQLAlchemy

    return duplicate_keys(relation, columns)


def _compiled(
    job: Job,
    relation: Any,
    columns: Plan,
    features: Sequence[Feature],
    duplicates: Sequence[str] | None,
) -> Any:
    """The verdicts query, built with SQLAlchemy (a cache miss, or a backend that takes it)."""
    import sqlalchemy as sa  # noqa: PLC0415 - see sql_cache

    from app.batch.validate import validated  # noqa: PLC0415
    from app.engine.sql import Screening  # noqa: PLC0415 - SQLAlchemy: see sql_cache

    dialect = job.backend.dialect
    checked = validated(relation, columns, features, dialect, duplicates, strict=job.strict)
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
        from app.batch.dialects import duckdb_sql  # noqa: PLC0415 - SQLAlchemy

        relation = raw.table()
        return {
            "duplicates": duckdb_sql(_duplicates_query(relation, columns)),
            "verdicts": duckdb_sql(_compiled(job, relation, columns, features, [])),
        }

    texts = sql_cache.recall(_cache_parts(job, raw, columns, features), compile_texts)
    duplicates = job.backend.duplicates(texts["duplicates"])
    if duplicates == []:
        return texts["verdicts"]
    from app.batch.dialects import duckdb_sql  # noqa: PLC0415 - SQLAlchemy

    return duckdb_sql(_compiled(job, raw.table(), columns, features, duplicates))


def _cache_parts(
    job: Job, raw: Relation, columns: Plan, features: Sequence[Feature]
) -> dict[str, Any]:
    """What the verdicts' SQL is made of, besides the code (sql_cache.key)."""
    return {
        "dialect": job.backend.dialect,
        "relation": [raw.name, *(f"{name}:{kind}" for name, kind in raw.kinds.items())],
        "catalogue": [f.spec.model_dump(mode="json") for f in features],
        "rulesets": [[r.id, r.hash] for r in job.rulesets],
        "key": columns.key,
        "strict": job.strict,
        # Every field of every mapped column, by its dataclass fields: a field added to
        # Column cannot be left out of the key (a warm cache would serve SQL made without it).
        "columns": [
            [_cache_value(getattr(c, f.name)) for f in dataclasses.fields(Column)]
            for c in columns.columns
        ],
    }


def _cache_value(value: Any) -> Any:
    """A Column field as JSON the key hashes: the feature by id (the catalogue is in the key),
    sets and maps sorted, so that the same mapping is the same key in every run."""
    if isinstance(value, Feature):
        return value.id
    if isinstance(value, Linear):
        return [value.scale, value.offset]
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, Mapping):
        return sorted([str(k), v] for k, v in value.items())
    if isinstance(value, Enum):
        return value.value
    return value


def _split(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, _Found | None]:
    """A batch of the verdicts query as its valid rows' results, and (`_row`, `id`,
    `_problems`) of its rejected rows and of its screened rows with a problem (None when it
    has neither, as most batches: two null counts tell). A batch with a rejected row is copied
    without it: ~0.1 s per 100,000 rows of the shipped rule sets, less than storing the
    validated rows and reading them twice cost every batch."""
    valid, problems = batch.column(VALID), batch.column(PROBLEMS)
    results = batch.drop_columns(list(SIDE))
    if problems.null_count == batch.num_rows and valid.null_count == 0:
        return results, None  # a row is only ever invalid for a problem
    # `_valid` is never NULL; were it ever, the row is rejected rather than lost.
    valid = pc.fill_null(valid, False)
    side = [ROW, KEY, PROBLEMS]
    flagged = batch.filter(pc.and_(valid, pc.is_valid(problems))).select(side)
    found = _Found([], [flagged] if flagged.num_rows else [])
    if valid.false_count == 0:
        return results, found
    found.rejected.append(batch.filter(pc.invert(valid)).select(side))
    return results.filter(valid), found


def _write(
    batches: Iterator[pa.RecordBatch], out: Path, job: Job, total: int, tally: report.Tally
) -> _Found:
    """Results to `out` (Parquet, or CSV), counted into `tally` on the way; returns the
    rejected rows' and the flagged rows' side batches. Encoding a batch runs on a second
    thread (Arrow releases the GIL) while this one counts it and the backend makes the next."""
    partial = out.with_name(f".{out.name}.partial")
    writer: Any = None
    found = _Found()
    done = 0
    try:
        with ThreadPoolExecutor(1) as pool:
            pending: Future[None] | None = None
            for batch in batches:
                if job.cancelled():
                    raise Cancelled
                results, side = _split(batch)
                if side is not None:
                    found.rejected += side.rejected
                    found.flagged += side.flagged
                done += batch.num_rows
                job.progress(done, max(total, done))
                # Table 1's values are counted, not written (the results hold verdicts only)
                written = results.drop_columns(_described_columns(results.schema))
                if writer is None:
                    schema = _declared(written.schema, job.rulesets)
                    writer = _writer(partial, schema, out.suffix.lower())
                elif not results.num_rows:
                    continue
                written = pa.RecordBatch.from_arrays(written.columns, schema=schema)
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
    return found


def _described_columns(schema: pa.Schema) -> list[str]:
    return [name for name in schema.names if name.startswith(table1.PREFIX)]


def _declared(schema: pa.Schema, rulesets: Sequence[RuleSet]) -> pa.Schema:
    """The results' schema with the columns the query never leaves NULL declared so: each
    rule set's status (a CASE with an ELSE) and its missing and to-confirm flags (ANDs and
    ORs of IS NULL tests and the status compared). A required Parquet column has no
    definition levels to encode: 0.4 of the 4.3 CPU-s that writing the shipped rule sets'
    1,000,000 rows took. Were one ever NULL, the writer refuses the batch (the screening
    fails, keeping nothing) rather than write it."""
    required = {column_name(r, STATUS) for r in rulesets}
    prefixes = tuple(column_name(r, kind, "") for r in rulesets for kind in (MISSING, TO_CONFIRM))
    return pa.schema(
        f.with_nullable(False) if f.name in required or f.name.startswith(prefixes) else f
        for f in schema
    )


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


_SIDE_SCHEMA = pa.schema([(ROW, pa.int64()), (KEY, pa.string()), (PROBLEMS, pa.string())])


def _problem_table(batches: Sequence[pa.RecordBatch]) -> pa.Table:
    """Side batches (`_row`, `id`, `_problems`) as one table in row order."""
    if not batches:
        return _SIDE_SCHEMA.empty_table()
    table = pa.Table.from_batches([b.cast(_SIDE_SCHEMA) for b in batches])
    return table.sort_by(ROW)


def _cells(table: pa.Table) -> pa.Table:
    """A side table's problems one per line: row, id, column, feature, what, value (the fields
    `validate._problem` joins, taken apart by Arrow kernels: a million flagged rows are no
    million Python strings)."""
    pieces = pc.split_pattern(table.column(PROBLEMS), PROBLEM_SEP)
    parents = pc.list_parent_indices(pieces)
    fields = pc.split_pattern(pc.list_flatten(pieces), FIELD_SEP, max_splits=3)
    parts = {name: pc.list_element(fields, i) for i, name in enumerate(_FIELDS)}
    rows = {ROW: pc.take(table.column(ROW), parents), KEY: pc.take(table.column(KEY), parents)}
    return pa.table({**rows, **parts})


_FIELDS = ("column", "feature", "problem", "value")


def sentence(column: str, feature: str, problem: str, value: str) -> str:
    """One problem in words: `LVEF (lvef_percent): '61,5' is not a number; a decimal comma is
    read only where a mapping declares decimal: ","`, or, for the row's id, `PAT_ID: duplicate
    (…)`."""
    if not feature:
        return f"{column}: {problem}"
    named = column if column == feature else f"{column} ({feature})"
    return f"{named}: {value!r} is {problem}"


def _sentences(text: str) -> str:
    """A row's `_problems` as the rejected file and the console say it."""
    found = []
    for part in text.split(PROBLEM_SEP):
        fields = part.split(FIELD_SEP, 3)
        found.append(sentence(*fields) if len(fields) == len(_FIELDS) else part)
    return "; ".join(found)


def _rejected(job: Job, refused: pa.Table, path: Path) -> list[Rejected]:
    """Every rejected row goes to the `.rejected.csv` beside the results (with its id, for
    the registry to correct it), in row order; the report keeps row numbers and problems
    only."""
    found = [*job.extra_rejected]
    ids: list[str | None] = [None] * len(found)
    columns = (refused.column(name).to_pylist() for name in (ROW, KEY, PROBLEMS))
    for row, ident, problems in zip(*columns, strict=True):
        found.append(Rejected(int(row), _where(job, int(row)), _sentences(str(problems))))
        ids.append(ident)
    table = pa.table(
        {
            "row": [r.row for r in found],
            "where": [r.where for r in found],
            "id": ids,
            "problems": [r.problems for r in found],
        }
    )
    _atomic_csv(table, path)
    return found


def _write_problems(job: Job, flagged: pa.Table, path: Path) -> pa.Table:
    """`.problems.csv`: each cell made unknown in a row that was screened, one a line (row,
    where, id, column, feature, value, problem), in row order, for the registry to correct;
    returns those cells."""
    cells = _cells(flagged)
    table = pa.table(
        {
            "row": cells.column(ROW),
            "where": _wheres(job, cells.column(ROW)),
            "id": cells.column(KEY),
            "column": cells.column("column"),
            "feature": cells.column("feature"),
            "value": cells.column("value"),
            "problem": cells.column("problem"),
        }
    )
    _atomic_csv(table, path)
    return cells


def _wheres(job: Job, rows: Any) -> Any:
    """`_where` of a column of row numbers."""
    if job.line_offset:
        lines = pc.cast(pc.add(rows, job.line_offset), pa.string())
        return pc.binary_join_element_wise(f"{job.source_name}:", lines, "")
    return pc.binary_join_element_wise(f"{job.source_name}: row ", pc.cast(rows, pa.string()), "")


def _by_column(job: Job, table: pa.Table) -> list[report.ProblemCount]:
    """Problems counted per registry column, feature and problem, with the first place each
    occurs (file:line or row N), most frequent first: no id, no value."""
    cells = _cells(table)
    keys = ["column", "feature", "problem"]
    grouped = cells.group_by(keys).aggregate([(ROW, "count"), (ROW, "min")]).to_pylist()
    grouped.sort(key=lambda g: (-g[f"{ROW}_count"], g["column"], g["feature"], g["problem"]))
    return [
        {
            "column": g["column"],
            "feature": g["feature"],
            "problem": g["problem"],
            "cells": g[f"{ROW}_count"],
            "first": _where(job, g[f"{ROW}_min"]),
        }
        for g in grouped
    ]


def _funnel_rows(summary: dict[str, Any], read: int, rejected: int, flagged: int) -> None:
    """Each rule set's funnel starts at the rows read, as CONSORT's does: rows read, rows
    rejected, rows screened with a value made unknown, then the patients screened."""
    for entry in summary["rulesets"]:
        entry["funnel"].update(read=read, rejected=rejected, kept_unknown=flagged)


def _atomic_csv(table: pa.Table, path: Path) -> None:
    with written_whole(path) as partial:
        pa_csv.write_csv(table, str(partial))


def _where(job: Job, row: int) -> str:
    if job.line_offset:
        return f"{job.source_name}:{row + job.line_offset}"
    return f"{job.source_name}: row {row}"


def _summary(
    job: Job,
    columns: Plan,
    total: int,
    *,
    refused: tuple[Sequence[Rejected], list[report.ProblemCount]],
    problems: report.CellProblems,
    counted: report.Reports,
) -> dict[str, Any]:
    rejected, by_column = refused
    return {
        "rules_hash": job.rules.hash,
        "review": REVIEW,
        "source": {"name": job.source_name, "engine": job.backend.dialect},
        "rows": total + len(job.extra_rejected),
        "screened": counted.screened,
        "rejected": {
            "count": len(rejected),
            "strict": job.strict,
            "first": [
                {"row": r.row, "where": r.where, "problems": r.problems}
                for r in rejected[:REJECTED_IN_REPORT]
            ],
            "by_column": by_column,
        },
        "problems": problems,
        "columns": {
            "used": {c.feature.id: c.column for c in columns.columns},
            "units": {c.feature.id: c.unit for c in columns.columns if c.unit},
            "ignored": list(columns.ignored),
        },
        "indications_unread": report.indications_unread(
            job.rulesets, (c.feature.id for c in columns.columns)
        ),
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
    backend: str = "duckdb"  # or "spark"; a URL source runs in its own database
    as_of: date | None = None  # FHIR freshness windows count back from this day
    spark_master: str | None = None
    source_name: str | None = None  # how reports name the source (never a server path)
    strict: bool = False  # a bad cell rejects its row (so does the mapping's `strict: true`)
    # columns, first line, sample (head.py); the caller's settings, else these defaults
    limits: Limits = field(default_factory=Limits)
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
    """Open the backend the request names, screen, write the report beside the results."""
    rulesets = select(rules, list(request.rulesets) if request.rulesets else None)
    backend = _backend(request)
    try:
        opened, extra = _open(backend, request, rules)
        job = Job(
            backend=backend,
            rules=rules,
            rulesets=rulesets,
            out=request.out,
            mapping=request.mapping,
            source_name=_name(request),
            line_offset=1 if request.source.lower().endswith(".csv") else 0,
            progress=progress,
            cancelled=cancelled,
            extra_rejected=extra,
            strict=request.strict or (request.mapping is not None and request.mapping.strict),
        )
        outcome = run(job, opened)
    finally:
        backend.close()
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


def _backend(request: Request) -> Backend:
    if is_url(request.source):
        if not request.table:
            raise SourceError("a database source needs a table (--table)")
        from app.batch.database import DatabaseBackend  # noqa: PLC0415 - SQLAlchemy

        key = request.mapping.key if request.mapping else "id"
        return DatabaseBackend(request.source, key=key, limits=request.limits)
    if request.backend == "spark":
        return SparkBackend(spark_session(request.spark_master), request.limits)
    if request.backend != "duckdb":
        raise SourceError(f"unknown backend {request.backend!r} (duckdb or spark)")
    return DuckDBBackend(request.limits)


Opened = tuple[Any, dict[str, Any]]


def _open(backend: Backend, request: Request, rules: RuleBase) -> tuple[Opened, list[Rejected]]:
    if is_url(request.source):
        return backend.open(request.table or ""), []
    path = Path(request.source)
    if not path.is_dir():
        return backend.open(request.source), []
    if not isinstance(backend, DuckDBBackend):
        raise SourceError(f"{path.name}: a FHIR Bulk folder is read with the duckdb backend")
    from app.batch.bulk import read_bulk  # noqa: PLC0415 - see BulkCohort's import

    cohort = read_bulk(path, rules.features, request.as_of or date.today())
    problems = [Rejected(0, p.where, p.message) for p in cohort.problems]
    return backend.open_arrow(_bulk_table(cohort, rules)), problems


def _bulk_table(cohort: BulkCohort, rules: RuleBase) -> pa.Table:
    """The mapped patients as feature-named columns of canonical values: what `validated`
    reads from any other source (it checks them again, which costs nothing here). The values
    as the records give them, before derivations: `validated` derives them as `read_bulk`
    did, and flags a value given that an implied one replaces, as for any other source."""
    from app.batch.database import arrow_type  # noqa: PLC0415 - SQLAlchemy
    from app.batch.validate import SQL_TYPES  # noqa: PLC0415

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
    rejected = outcome.report["rejected"]
    funnels = {entry["id"]: funnel_svg(entry, rejected) for entry in outcome.report["rulesets"]}
    for ident, svg in funnels.items():
        _atomic_text(folder / f"{ident}.svg", svg)
    _atomic_text(side_file(outcome.results, ".report.html"), report_html(outcome.report, funnels))
    folder = side_file(outcome.results, ".tables")
    folder.mkdir(exist_ok=True)
    for name, (header, rows) in tables(outcome.report).items():
        _atomic_rows_csv(folder / f"{name}.csv", header, rows)


def _atomic_rows_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """With a byte order mark: a spreadsheet then reads µmol/L and m² as written."""
    with (
        written_whole(path) as partial,
        partial.open("w", encoding="utf-8-sig", newline="") as file,
    ):
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def _atomic_text(path: Path, text: str) -> None:
    with written_whole(path) as partial:
        partial.write_text(text, encoding="utf-8")
