"""The results in long format (`eligo screen --long`): one row per patient and rule set.

The results file is wide (a column per rule set, criterion and missing value: ~300 for the
shipped rule sets), which suits a machine and not a person filtering a spreadsheet or a
statistician's `group by`. The long file has, per patient and rule set: `id`, `ruleset`,
`status`, `first_reason_id` and `first_reason` (the criterion, in reading order, that rules
the patient out, and its title), `missing` (the values to measure, `;`-joined) and
`to_confirm` (the clinician confirmations awaited, `;`-joined).

Made by DuckDB from the results file once it is complete (one UNION ALL of a SELECT per rule
set, COPY to CSV or Parquet as the results are), so the screening itself pays nothing when it
is not asked for. The results' CSV is read as text (an id such as `00123` stays as written)
and its flags cast to booleans.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from app.batch.files import written_whole
from app.batch.head import csv_scan
from app.batch.names import KEY
from app.engine.model import RuleSet
from app.engine.result_columns import EXCLUDED_BY, MISSING, STATUS, TO_CONFIRM, column_name


def write_long(results: Path, rulesets: Sequence[RuleSet], out: Path) -> None:
    """`out` (.csv or .parquet) from the complete `results` file; written whole or not at all."""
    columns = _columns(results)
    selects = [_select(r, columns) for r in rulesets]
    fmt = "(FORMAT parquet, COMPRESSION zstd)" if out.suffix == ".parquet" else "(HEADER)"
    connection = duckdb.connect()
    try:
        # Every name and text in the SQL is quoted by _name or _literal.
        view = f"CREATE TEMP VIEW results AS SELECT * FROM {_reader(results)}"  # noqa: S608
        connection.execute(view)
        query = " UNION ALL ".join(selects)
        with written_whole(out) as partial:
            connection.execute(f"COPY ({query}) TO {_literal(str(partial))} {fmt}")
    finally:
        connection.close()


def _reader(results: Path) -> str:
    path = _literal(str(results))
    if results.suffix.lower() == ".csv":
        return csv_scan(path)
    return f"read_parquet({path})"


def _columns(results: Path) -> list[str]:
    connection = duckdb.connect()
    try:
        described = f"DESCRIBE SELECT * FROM {_reader(results)}"  # noqa: S608
        found = connection.execute(described).fetchall()
    finally:
        connection.close()
    return [str(row[0]) for row in found]


def _select(ruleset: RuleSet, columns: Sequence[str]) -> str:
    reasons = " ".join(f"WHEN {_literal(c.id)} THEN {_literal(c.title)}" for c in ruleset.deciding)
    excluded = _name(column_name(ruleset, EXCLUDED_BY))
    # Every name and text quoted by _name or _literal.
    return (
        f"SELECT {_name(KEY)} AS id, {_literal(ruleset.id)} AS ruleset, "  # noqa: S608
        f"{_name(column_name(ruleset, STATUS))} AS status, "
        f"{excluded} AS first_reason_id, "
        f"CASE {excluded} {reasons} END AS first_reason, "
        f"{_joined(ruleset, MISSING, columns)} AS missing, "
        f"{_joined(ruleset, TO_CONFIRM, columns)} AS to_confirm "
        "FROM results"
    )


def _joined(ruleset: RuleSet, kind: str, columns: Sequence[str]) -> str:
    """The features whose `<ruleset>:<kind>:<feature>` flag is true, `;`-joined (NULL for
    none)."""
    prefix = column_name(ruleset, kind, "")
    flags = [c for c in columns if c.startswith(prefix)]
    if not flags:
        return "CAST(NULL AS VARCHAR)"
    parts = ", ".join(
        f"CASE WHEN TRY_CAST({_name(c)} AS BOOLEAN) THEN {_literal(c.removeprefix(prefix))} END"
        for c in flags
    )
    return f"NULLIF(concat_ws(';', {parts}), '')"


def _name(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
