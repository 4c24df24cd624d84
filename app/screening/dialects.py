"""SQL text for the engines that take a string instead of a SQLAlchemy connection.

DuckDB and Spark SQL run the screening from SQL text with every literal inlined (the rule
thresholds are the only literals, and they are ours, not user input). DuckDB speaks
PostgreSQL's dialect closely enough for these expressions: CASE, AND/OR/NOT, comparisons,
BETWEEN, IN, IS NULL, CAST(... AS DOUBLE PRECISION), TRY_CAST. Spark SQL needs its own small
dialect: backquoted identifiers (the generic compiler already prints `DOUBLE`).
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.sql import compiler
from sqlalchemy.sql.elements import ClauseElement


class SparkDialect(DefaultDialect):
    """Enough of Spark SQL to print the screening queries."""

    name = "spark"
    supports_native_boolean = True

    def __init__(self) -> None:
        super().__init__()
        self.identifier_preparer = compiler.IdentifierPreparer(
            self, initial_quote="`", escape_quote="``"
        )

    # Spark reads a backslash in a string literal as an escape. The only string literals
    # printed are enum values and status labels from the validated rules (snake_case).


_DUCKDB = PGDialect()  # type: ignore[no-untyped-call]  # not annotated upstream
_SPARK = SparkDialect()


def _text(statement: ClauseElement, dialect: DefaultDialect) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def duckdb_sql(statement: ClauseElement) -> str:
    return _text(statement, _DUCKDB)


def spark_sql(statement: ClauseElement) -> str:
    return _text(statement, _SPARK)
