"""Run one SQLAlchemy Core SELECT over a small patients table on each real engine.

Each backend creates the table with real column types (DOUBLE, BOOLEAN, text), loads the
rows and returns the result rows as tuples. SQLite and PostgreSQL go through SQLAlchemy;
DuckDB and Spark take the SQL text `app.batch.dialects` prints, as a screening does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from app.batch.database import arrow_type
from app.batch.dialects import duckdb_sql, spark_sql
from app.batch.validate import duckdb_macros

Row = dict[str, Any]


class Backend(Protocol):
    name: str

    def run(
        self, table: sa.Table, rows: Sequence[Row], query: sa.Select[Any]
    ) -> list[tuple[Any, ...]]: ...


class SQLAlchemyBackend:
    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.engine = sa.create_engine(url)

    def run(
        self, table: sa.Table, rows: Sequence[Row], query: sa.Select[Any]
    ) -> list[tuple[Any, ...]]:
        with self.engine.begin() as connection:
            table.drop(connection, checkfirst=True)
            table.create(connection)
            if rows:
                connection.execute(table.insert(), list(rows))
            return [tuple(r) for r in connection.execute(query)]

    def close(self) -> None:
        self.engine.dispose()


class DuckDBBackend:
    name = "duckdb"

    def __init__(self) -> None:
        self.connection = duckdb.connect()
        for macro in duckdb_macros():  # as DuckDBBackend defines them
            self.connection.execute(macro)

    def run(
        self, table: sa.Table, rows: Sequence[Row], query: sa.Select[Any]
    ) -> list[tuple[Any, ...]]:
        schema = pa.schema([(c.name, arrow_type(c.type)) for c in table.columns])
        data = pa.Table.from_pylist([dict(r) for r in rows], schema=schema)
        self.connection.register(table.name, data)
        return [tuple(r) for r in self.connection.execute(duckdb_sql(query)).fetchall()]

    def close(self) -> None:
        self.connection.close()


def _spark_type(column: sa.Column[Any]) -> Any:
    from pyspark.sql import types  # noqa: PLC0415 - Spark is imported only where it runs

    if isinstance(column.type, sa.Boolean):
        return types.BooleanType()
    if isinstance(column.type, sa.Double | sa.Float):
        return types.DoubleType()
    if isinstance(column.type, sa.Integer):
        return types.LongType()
    return types.StringType()


class SparkBackend:
    name = "spark"

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(
        self, table: sa.Table, rows: Sequence[Row], query: sa.Select[Any]
    ) -> list[tuple[Any, ...]]:
        from pyspark.sql import types  # noqa: PLC0415

        schema = types.StructType(
            [types.StructField(c.name, _spark_type(c), True) for c in table.columns]
        )
        names = [c.name for c in table.columns]
        frame = self.session.createDataFrame([[r.get(n) for n in names] for r in rows], schema)
        frame.createOrReplaceTempView(table.name)
        return [tuple(r) for r in self.session.sql(spark_sql(query)).collect()]
