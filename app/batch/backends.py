"""Where a screening runs: DuckDB over files (the embedded default), the user's own database
(the query is pushed down; only results come out), or Spark.

An engine opens a source as a relation named `raw_source` with a `_row` column (the row's
1-based position in the file, or in key order for a table), says what kind each column
holds, and streams the rows of a SELECT back as Arrow record batches.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import duckdb
import pyarrow as pa

from app.batch import sql_cache
from app.batch.head import HeadError, Limits, check, columns_within, csv_scan, first_long_line
from app.batch.mapping import RawKind
from app.batch.names import ROW

# SQLAlchemy builds the queries; DuckDB is handed their text, from the compiled-SQL cache
# when it has them (app/batch/sql_cache.py), so that only a miss imports SQLAlchemy.
if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.sql.expression import FromClause

BATCH_ROWS = 100_000
# Duplicate keys a DuckDB screening query names, at most (`DuckDBBackend.duplicates`): each
# costs every row a comparison (1,000 of them half a second a million rows).
NAMED_DUPLICATES = 100
FORMATS = {".csv": "csv", ".parquet": "parquet", ".ndjson": "ndjson", ".jsonl": "ndjson"}


class SourceError(ValueError):
    """The source cannot be read: the message names the file or table. `code`, where set,
    says which limit or check refused it (the API's error code)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def _checked_head(path: Path, fmt: str, limits: Limits) -> None:
    try:
        check(path, fmt, limits)
    except HeadError as exc:
        raise SourceError(str(exc), exc.code) from None


def within(kinds: dict[str, RawKind], name: str, limits: Limits) -> None:
    try:
        columns_within(len(kinds), name, limits)
    except HeadError as exc:
        raise SourceError(str(exc), exc.code) from None


class Backend(Protocol):
    dialect: str

    def open(self, source: str) -> tuple[Relation | FromClause, dict[str, RawKind]]: ...

    def count(self) -> int:
        """Rows in the source, for a progress display: free for Parquet, an Arrow table, a
        table's statistics or Spark's numbering; a parse of its own for CSV and NDJSON."""
        ...

    def duplicates(self, query: Any) -> list[str] | None:
        """The keys `query` (`validate.duplicate_keys`; its SQL text for DuckDB and Spark)
        finds, read ahead of the screening for its query to name; None where the screening
        query is to find them itself."""
        ...

    def batches(self, query: Any) -> Iterator[pa.RecordBatch]:
        """The rows of `query`: a SQLAlchemy SELECT, or its SQL text for the engines that run
        text (DuckDB, Spark)."""
        ...

    def close(self) -> None: ...


def file_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise SourceError(f"{path}: unsupported format {path.suffix!r} (use {known}, or a folder)")
    return fmt


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _scan(fmt: str, path: Path) -> str:
    """The SELECT behind `raw_source`. The path is the only interpolated text, and _quoted
    doubles its quotes."""
    quoted = _quoted(path)
    if fmt == "parquet":
        reader = f"read_parquet({quoted}, file_row_number = true)"
        return f"SELECT file_row_number + 1 AS {ROW}, * EXCLUDE (file_row_number) FROM {reader}"  # noqa: S608
    if fmt == "csv":
        reader = csv_scan(quoted)
    else:
        reader = f"read_json({quoted}, format = 'newline_delimited')"
    return f"SELECT row_number() OVER () AS {ROW}, * FROM {reader}"  # noqa: S608


def _duckdb_kind(type_name: str) -> RawKind:
    upper = type_name.upper()
    if upper == "BOOLEAN":
        return RawKind.BOOLEAN
    if upper == "JSON":  # NDJSON fields whose lines disagree on the type
        return RawKind.JSON
    if upper == "VARCHAR" or upper.startswith(("VARCHAR", "ENUM")):
        return RawKind.TEXT
    return RawKind.NUMBER


@dataclass(frozen=True, slots=True)
class Relation:
    """A view the engine made of the source (`raw_source`): its name and columns, a SQLAlchemy
    table only when a query over it is compiled (not when its SQL comes from the cache)."""

    name: str
    kinds: dict[str, RawKind]

    def table(self) -> FromClause:
        import sqlalchemy as sa  # noqa: PLC0415 - see the TYPE_CHECKING import

        columns = [sa.column(ROW, sa.BigInteger), *(sa.column(name) for name in self.kinds)]
        return sa.table(self.name, *columns)


def text(query: str | sa.Select[Any], dialect: str) -> str:
    """A query's SQL text for `dialect`: as given, or printed by SQLAlchemy."""
    if isinstance(query, str):
        return query
    from app.batch.dialects import render  # noqa: PLC0415 - see the TYPE_CHECKING import

    return render(query, dialect)


class DuckDBBackend:
    """In-process DuckDB reading CSV, Parquet and NDJSON where they lie (nothing is loaded
    first), or an Arrow table (a FHIR Bulk export, mapped in Python). A file's header is
    checked against `limits` (app/batch/head.py) before DuckDB reads it."""

    dialect = "duckdb"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.path: Path | None = None  # the file opened, for errors that need its lines
        self.connection = duckdb.connect()
        # Row numbers come from the scan order: DuckDB keeps it unless told not to.
        self.connection.execute("SET preserve_insertion_order = true")
        # DuckDB draws its own progress bar on stderr: in a server that is the log.
        self.connection.execute("SET enable_progress_bar = false")
        # IN lists stay expressions: DuckDB makes one of six values or more a join, and a
        # query with a join streams its rows out of the source's order (see `duplicates`).
        self.connection.execute("SET disabled_optimizers = 'in_clause'")
        # DuckDB computes a streamed result only as far as this buffer holds while Python
        # counts and writes a batch; at the default 10 MiB it stalled there (peer rule set:
        # 0.90x the time at 256 MiB; all 11 rule sets: the same time, 95 MiB more at peak).
        self.connection.execute("SET streaming_buffer_size = '256MB'")
        for macro in sql_cache.macros():
            self.connection.execute(macro)

    def open(self, source: str) -> tuple[Relation, dict[str, RawKind]]:
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"{path}: no such file")
        fmt = file_format(path)
        _checked_head(path, fmt, self.limits)
        self.path = path
        opened = self._view(_scan(fmt, path), str(path))
        within(opened[1], str(path), self.limits)  # NDJSON keys past the checked sample
        return opened

    def open_arrow(self, table: pa.Table) -> tuple[Relation, dict[str, RawKind]]:
        self.connection.register("arrow_source", table)
        return self._view(f"SELECT row_number() OVER () AS {ROW}, * FROM arrow_source", "input")  # noqa: S608

    def _view(self, scan: str, name: str) -> tuple[Relation, dict[str, RawKind]]:
        try:
            self.connection.execute(f"CREATE OR REPLACE TEMP VIEW raw_source AS {scan}").fetchall()
            described = self.connection.execute("DESCRIBE raw_source").fetchall()
        except duckdb.Error as exc:
            raise self._described(exc, name) from None
        kinds = {str(row[0]): _duckdb_kind(str(row[1])) for row in described if row[0] != ROW}
        return Relation("raw_source", kinds), kinds

    def count(self) -> int:
        try:
            found = self.connection.execute("SELECT count(*) FROM raw_source").fetchall()
        except duckdb.Error as exc:
            raise self._described(exc) from None
        return int(found[0][0])

    def duplicates(self, query: str | sa.Select[Any]) -> list[str] | None:
        """Read first, so that the screening query needs no join: DuckDB streams a query's
        rows in the source's order only when it has none (a join's threads pass rows on as
        they finish). Past NAMED_DUPLICATES keys, None: the screening query joins, and its
        results may come in another order than the source's (every row is there; the
        rejected rows are listed in row order)."""
        try:
            found = self.connection.execute(text(query, self.dialect)).fetchall()
        except duckdb.Error as exc:
            raise self._described(exc) from None
        keys = [str(row[0]) for row in found if row[0] is not None]
        return keys if len(keys) <= NAMED_DUPLICATES else None

    def batches(self, query: str | sa.Select[Any]) -> Iterator[pa.RecordBatch]:
        try:
            # A view, then a short SELECT of it: `connection.sql` tokenises its text in Python
            # first, 0.2-0.3 s for the shipped rule sets' 300 kB of SQL.
            sql = text(query, self.dialect)
            self.connection.execute(f"CREATE OR REPLACE TEMP VIEW screened AS {sql}")
            reader = self.connection.sql("SELECT * FROM screened").to_arrow_reader(BATCH_ROWS)
            yield from at_least_one(reader, reader.schema)
        except duckdb.Error as exc:
            raise self._described(exc) from None

    def _described(self, exc: duckdb.Error, name: str | None = None) -> SourceError:
        """DuckDB's first line (the rest quotes the source's cells). A line over DuckDB's
        length limit is found here, as DuckDB's own line number can be wrong for it: that
        error names the file and line itself (and has a code)."""
        first = first_line(exc)
        found = _LINE_LIMIT.search(str(exc))
        if found is not None and self.path is not None:
            limit = int(found.group(1))
            number = first_long_line(self.path, limit)
            if number is not None:
                located = f"{self.path}:{number}: a line longer than {limit:,} bytes"
                return SourceError(located, "line_too_long")
        return SourceError(f"{name}: {first}" if name else first)

    def close(self) -> None:
        self.connection.close()


# DuckDB's words for a line (CSV) or a record (NDJSON) longer than it reads.
_LINE_LIMIT = re.compile(r'(?:Maximum line size|"maximum_object_size") of (\d+) bytes')


def at_least_one(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The batches, or one empty batch: a screening whose every row was rejected still writes
    a results file with the right columns."""
    empty = True
    for batch in batches:
        empty = False
        yield batch
    if empty:
        yield pa.RecordBatch.from_pylist([], schema=schema)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def spark_session(master: str | None = None) -> Any:
    """A Spark session: `master` (e.g. `spark://host:7077`, `yarn`), else SPARK_MASTER, else
    local mode on every core, bound to loopback with no UI."""
    try:
        from pyspark.sql import SparkSession  # noqa: PLC0415 - only `--engine spark` needs it
    except ImportError:
        raise SourceError("the spark engine needs PySpark: pip install 'eligo[spark]'") from None

    chosen = master or os.environ.get("SPARK_MASTER") or "local[*]"
    builder = SparkSession.builder.master(chosen).appName("eligo-screening")
    if chosen.startswith("local"):
        builder = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "4")
            # The results are collected to the driver as Arrow; in local mode the driver is
            # the executor too. SPARK_DRIVER_MEMORY overrides.
            .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "4g"))
        )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _numbered(frame: Any) -> tuple[Any, int]:
    """`frame` with `_row`, its 1-based position in the files, computed without a window (and
    the rows counted on the way): a window with no partition puts every row in one task (a
    Java heap of 1 GB ran out at a million rows). monotonically_increasing_id() is the
    partition index times 2^33 plus the row's place in its partition, and partitions follow
    file order; one small count per partition gives each partition's offset."""
    from pyspark.sql import functions  # noqa: PLC0415 - only the spark engine needs it

    tagged = frame.withColumn("_mid", functions.monotonically_increasing_id()).withColumn(
        "_pid", functions.spark_partition_id()
    )
    counts = sorted(tuple(r) for r in tagged.groupBy("_pid").count().collect())
    offsets, start = [], 0
    for pid, count in counts:
        offsets.append((int(pid), start))
        start += int(count)
    session = frame.sparkSession
    table = session.createDataFrame(offsets or [(0, 0)], "_pid INT, _offset BIGINT")
    place = functions.col("_mid") - functions.col("_pid").cast("long") * (1 << 33)
    numbered = tagged.join(functions.broadcast(table), "_pid").withColumn(
        ROW, functions.col("_offset") + place + 1
    )
    return numbered.drop("_mid", "_pid", "_offset"), start


def _spark_kind(type_name: str) -> RawKind:
    if type_name == "boolean":
        return RawKind.BOOLEAN
    if type_name in {"string", "binary"}:
        return RawKind.TEXT
    return RawKind.NUMBER


class SparkBackend:
    """Spark SQL over files Spark can reach: the same compiled SQL, printed for Spark."""

    dialect = "spark"

    def __init__(self, session: Any, limits: Limits | None = None) -> None:
        self.session = session
        self.limits = limits or Limits()
        self.rows = 0  # counted when the source is opened

    def open(self, source: str) -> tuple[Relation, dict[str, RawKind]]:
        fmt = file_format(Path(source))
        if Path(source).is_file():  # a local file: the same header checks as DuckDB's
            _checked_head(Path(source), fmt, self.limits)
        reader = self.session.read
        try:
            if fmt == "csv":
                # RFC 4180's quote and escape (Spark's own escape is a backslash), as csv_scan
                frame = reader.csv(source, header=True, quote='"', escape='"')
            elif fmt == "parquet":
                frame = reader.parquet(source)
            else:
                frame = reader.json(source)
        except Exception as exc:  # Spark raises AnalysisException and Py4J errors
            raise SourceError(f"{source}: {first_line(exc)}") from None
        numbered, self.rows = _numbered(frame)
        numbered.createOrReplaceTempView("raw_source")
        kinds = {f.name: _spark_kind(f.dataType.typeName()) for f in frame.schema.fields}
        within(kinds, source, self.limits)
        return Relation("raw_source", kinds), kinds

    def count(self) -> int:
        """Numbering the rows (`_numbered`) counted them."""
        return self.rows

    def duplicates(self, query: str | sa.Select[Any]) -> list[str] | None:  # noqa: ARG002 - Backend
        """The screening query finds them (Spark keeps no row order to protect)."""
        return None

    def batches(self, query: str | sa.Select[Any]) -> Iterator[pa.RecordBatch]:
        try:
            table = self.session.sql(text(query, self.dialect)).toArrow()
        except Exception as exc:  # Spark raises AnalysisException and Py4J errors
            raise SourceError(f"spark: {first_line(exc)}") from None
        yield from at_least_one(table.to_batches(max_chunksize=BATCH_ROWS), table.schema)

    def close(self) -> None:
        """The session is the caller's: a cluster session outlives one screening."""
