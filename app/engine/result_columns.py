"""The names of a screening's result columns, apart from the SQL that computes them
(app/engine/sql.py): what reads the results (the report, the API) needs the names without
SQLAlchemy, which a screening run from its compiled-SQL cache never imports."""

from __future__ import annotations

from app.engine.model import RuleSet

STATUS = "status"
EXCLUDED_BY = "excluded_by"
MISSING = "missing"
TO_CONFIRM = "to_confirm"
CORRECTED = "corrected"


def column_name(ruleset: RuleSet, *parts: str) -> str:
    """Result columns: `hsct-ssc-astis:status`, `hsct-ssc-astis:age-18-to-65`, …"""
    return ":".join((ruleset.id, *parts))


def corrected_column(feature: str) -> str:
    """`corrected:<feature>`: TRUE where the value given for a derived feature was replaced by
    the value its derivations imply (`Derived.corrected`), FALSE elsewhere."""
    return f"{CORRECTED}:{feature}"
