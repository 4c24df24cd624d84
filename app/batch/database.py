"""A table in the user's own database (PostgreSQL) as a screening source: validation and
verdicts run there as one query, built with SQLAlchemy; only the result rows come back.

Apart from app/batch/backends.py so that a screening of a file, run from the compiled-SQL
cache (app/batch/sql_cache.py), need not import SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.expression import FromClause

from app.batch.backends import SourceError, at_least_one, first_line, within
from app.batch.head import Limits
from app.batch.mapping import RawKind
from app.batch.names import ROW

# A database driver hands back Python tuples: 100,000 rows of 300 columns are 2 GB of them.
DRIVER_ROWS = 10_000
# A registry database that does not answer must not hold a request (the API's pre-check) or a
# worker for the minutes a TCP connect can take.
CONNECT_SECONDS = 10


def arrow_type(type_: sa.types.TypeEngine[Any]) -> pa.DataType:
    """The Arrow type that holds values of a SQL type."""
    if isinstance(type_, sa.Boolean):
        return pa.bool_()
    if isinstance(type_, sa.Integer):
        return pa.int64()
    if isinstance(type_, sa.Float | sa.Numeric):
        return pa.float64()
    return pa.string()


def arrow_schema(query: sa.Select[Any]) -> pa.Schema:
    """The Arrow types of a query's columns, from their SQL types: a batch whose column is
    all NULL keeps its type (a driver's rows carry none)."""
    return pa.schema([(c.name, arrow_type(c.type)) for c in query.selected_columns])


def _columnar(rows: Sequence[Any], schema: pa.Schema) -> pa.RecordBatch:
    """Driver rows -> one Arrow batch, column by column (no dict per row)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    arrays = [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _sql_kind(type_: sa.types.TypeEngine[Any]) -> RawKind:
    if isinstance(type_, sa.Boolean):
        return RawKind.BOOLEAN
    if isinstance(type_, sa.Numeric | sa.Integer | sa.Float):
        return RawKind.NUMBER
    return RawKind.TEXT


class DatabaseBackend:
    """A table in the user's own database: validation and verdicts run there as one query;
    only the result rows come back, streamed with a server-side cursor."""

    def __init__(self, url: str, *, key: str = "id", limits: Limits | None = None) -> None:
        try:
            # Parameters stay out of error messages: a registry's values must not reach a log.
            self.engine = sa.create_engine(
                url, hide_parameters=True, connect_args={"connect_timeout": CONNECT_SECONDS}
            )
        except (SQLAlchemyError, ValueError) as exc:
            raise SourceError(f"database URL: {first_line(exc)}") from None
        except ImportError as exc:  # the URL names a driver that is not installed
            missing = exc.name or "its driver"
            raise SourceError(
                f"database URL: the driver {missing!r} is not installed here", "driver_unavailable"
            ) from None
        self.limits = limits or Limits()
        self.dialect = self.engine.dialect.name
        if self.dialect != "postgresql":
            raise SourceError(f"database URL: {self.dialect} is not supported (PostgreSQL is)")
        self.key = key
        self.table: sa.Table | None = None

    def open(self, source: str) -> tuple[FromClause, dict[str, RawKind]]:
        schema, _, name = source.rpartition(".")
        try:
            self.table = sa.Table(
                name, sa.MetaData(), schema=schema or None, autoload_with=self.engine
            )
        except SQLAlchemyError as exc:
            raise SourceError(f"table {source!r}: {first_line(exc)}") from None
        kinds = {c.name: _sql_kind(c.type) for c in self.table.columns}
        within(kinds, f"table {source!r}", self.limits)
        order = self.table.c[self.key] if self.key in self.table.c else sa.literal(1)
        numbered = sa.select(
            sa.func.row_number(type_=sa.BigInteger).over(order_by=order).label(ROW), *self.table.c
        )
        return numbered.subquery("raw_source"), kinds

    def duplicates(self, query: sa.Select[Any]) -> list[str] | None:  # noqa: ARG002 - Backend
        """The screening query finds them: one query, in the database."""
        return None

    def count(self) -> int:
        assert self.table is not None
        with self.engine.connect() as connection:
            return int(
                connection.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one()
            )

    def batches(self, query: sa.Select[Any]) -> Iterator[pa.RecordBatch]:
        try:
            with self.engine.connect() as connection:
                result = connection.execution_options(
                    stream_results=True, yield_per=DRIVER_ROWS
                ).execute(query)
                schema = arrow_schema(query)
                batches = (_columnar(rows, schema) for rows in result.partitions())
                yield from at_least_one(batches, schema)
        except SQLAlchemyError as exc:
            raise SourceError(f"database: {first_line(exc)}") from None

    def close(self) -> None:
        self.engine.dispose()
