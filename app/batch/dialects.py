"""SQL text for the engines that take a string instead of a SQLAlchemy connection.

DuckDB and Spark SQL run the screening from SQL text with every literal inlined (the rule
thresholds and the mapping's codes, which are ours or the operator's, never a patient's).
DuckDB speaks PostgreSQL's dialect closely enough to print with it, except that it has
TRY_CAST; Spark SQL needs backquoted identifiers, TRY_CAST and STRING as the text type.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import compiler
from sqlalchemy.sql.elements import ClauseElement, TryCast


class DuckDBDialect(PGDialect):
    name = "duckdb"
    # PostgreSQL's pyformat would print '%' as '%%' in a literal (printf's format).
    default_paramstyle = "qmark"


class _SparkTypes(compiler.GenericTypeCompiler):
    def visit_string(self, type_: Any, **kw: Any) -> str:  # noqa: ARG002 - SQLAlchemy's signature
        return "STRING"


class SparkDialect(DefaultDialect):
    """Enough of Spark SQL to print the screening queries."""

    name = "spark"
    supports_native_boolean = True
    type_compiler_cls = _SparkTypes
    # Spark reads a backslash in a string literal as an escape; the string literals printed
    # are enum values, status labels and problem texts from the rules and the mapping.

    def __init__(self) -> None:
        super().__init__()
        self.identifier_preparer = compiler.IdentifierPreparer(
            self, initial_quote="`", escape_quote="``"
        )


@compiles(TryCast, "duckdb")
@compiles(TryCast, "spark")
def _try_cast(element: TryCast[Any], compiler: compiler.SQLCompiler, **kw: Any) -> str:
    inner = compiler.process(element.clause, **kw)
    return f"TRY_CAST({inner} AS {compiler.dialect.type_compiler_instance.process(element.type)})"


_DUCKDB = DuckDBDialect()  # type: ignore[no-untyped-call]  # not annotated upstream
_SPARK = SparkDialect()
DIALECTS: dict[str, DefaultDialect] = {"duckdb": _DUCKDB, "spark": _SPARK}


def render(statement: ClauseElement, dialect: str) -> str:
    compiled = statement.compile(dialect=DIALECTS[dialect], compile_kwargs={"literal_binds": True})
    return str(compiled)


def duckdb_sql(statement: ClauseElement) -> str:
    return render(statement, "duckdb")


def spark_sql(statement: ClauseElement) -> str:
    return render(statement, "spark")
