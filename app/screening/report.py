"""The screening report, computed by DuckDB from the results file in one pass.

Per rule set: how many patients are eligible, ineligible, indeterminate, not indicated; per
criterion, how many met it, did not, were unknown, and were excluded by it first; the
attrition funnel (patients leave at the first criterion, in reading order, that rules them
out, as a CONSORT diagram reads); and the features whose absence kept most patients
indeterminate. Whatever engine screened, the results are a local Parquet file by now, so the
report is one dialect and one code path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from app.engine.evaluate import Status
from app.engine.model import Criterion, Feature, RuleSet
from app.engine.sql import EXCLUDED_BY, MISSING, STATUS, column_name

TOP_MISSING = 10


def _name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class _Aggregates:
    """SELECT items and the report slot each one fills."""

    items: list[str] = field(default_factory=list)
    slots: list[tuple[str, ...]] = field(default_factory=list)

    def add(self, sql: str, *slot: str) -> None:
        self.items.append(f"{sql} AS a{len(self.items)}")
        self.slots.append(slot)


def _ruleset_aggregates(agg: _Aggregates, ruleset: RuleSet, missing: Sequence[str]) -> None:
    status = _name(column_name(ruleset, STATUS))
    excluded_by = _name(column_name(ruleset, EXCLUDED_BY))
    for s in Status:
        agg.add(f"count_if({status} = {_text(s.value)})", ruleset.id, "count", s.value)
    before: list[str] = []
    for criterion in ruleset.deciding:
        column = _name(column_name(ruleset, criterion.id))
        before.append(_text(criterion.id))
        _criterion_counts(agg, ruleset, criterion, column)
        agg.add(
            f"count_if({excluded_by} = {_text(criterion.id)})", ruleset.id, "excluded", criterion.id
        )
        still_in = f"({excluded_by} IS NULL OR {excluded_by} NOT IN ({', '.join(before)}))"
        agg.add(
            f"count_if({column} IS NULL AND {still_in})", ruleset.id, "step_unknown", criterion.id
        )
    for criterion in ruleset.cautions:
        _criterion_counts(agg, ruleset, criterion, _name(column_name(ruleset, criterion.id)))
    for feature in missing:
        flag = _name(column_name(ruleset, MISSING, feature))
        agg.add(f"count_if({flag})", ruleset.id, "missing", feature)


def _criterion_counts(
    agg: _Aggregates, ruleset: RuleSet, criterion: Criterion, column: str
) -> None:
    agg.add(f"count_if({column})", ruleset.id, "met", criterion.id)
    agg.add(f"count_if(NOT {column})", ruleset.id, "not_met", criterion.id)
    agg.add(f"count_if({column} IS NULL)", ruleset.id, "unknown", criterion.id)


def _overall_missing(
    agg: _Aggregates, rulesets: Sequence[RuleSet], missing: Mapping[str, Sequence[str]]
) -> None:
    """Per feature: patients indeterminate in at least one rule set for want of it."""
    by_feature: dict[str, list[str]] = {}
    for ruleset in rulesets:
        for feature in missing[ruleset.id]:
            by_feature.setdefault(feature, []).append(_name(column_name(ruleset, MISSING, feature)))
    for feature, flags in sorted(by_feature.items()):
        agg.add(f"count_if({' OR '.join(flags)})", "*", "missing", feature)


def missing_features(ruleset: RuleSet, columns: Sequence[str]) -> list[str]:
    prefix = column_name(ruleset, MISSING, "")
    return [c.removeprefix(prefix) for c in columns if c.startswith(prefix)]


def aggregate(results: Path, rulesets: Sequence[RuleSet]) -> dict[tuple[str, ...], int]:
    """Every count the report needs, from the results file, in one scan."""
    connection = duckdb.connect()
    try:
        source = f"read_parquet({_text(str(results))})"
        # Identifiers are quoted by _name and values by _text; nothing comes from a patient.
        described = connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()  # noqa: S608
        columns = [str(r[0]) for r in described]
        missing = {r.id: missing_features(r, columns) for r in rulesets}
        agg = _Aggregates()
        agg.add("count(*)", "*", "screened")
        for ruleset in rulesets:
            _ruleset_aggregates(agg, ruleset, missing[ruleset.id])
        _overall_missing(agg, rulesets, missing)
        row = connection.execute(f"SELECT {', '.join(agg.items)} FROM {source}").fetchone()  # noqa: S608
    finally:
        connection.close()
    assert row is not None
    return {slot: int(value or 0) for slot, value in zip(agg.slots, row, strict=True)}


def _criterion(
    counts: Mapping[tuple[str, ...], int], ruleset: RuleSet, criterion: Criterion
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": criterion.id,
        "kind": criterion.kind.value,
        "title": criterion.title,
    }
    for key in ("met", "not_met", "unknown"):
        entry[key] = counts[(ruleset.id, key, criterion.id)]
    if (ruleset.id, "excluded", criterion.id) in counts:
        entry["excluded_first"] = counts[(ruleset.id, "excluded", criterion.id)]
    return entry


def _funnel(
    counts: Mapping[tuple[str, ...], int], ruleset: RuleSet, screened: int
) -> dict[str, Any]:
    remaining, steps = screened, []
    for criterion in ruleset.deciding:
        excluded = counts[(ruleset.id, "excluded", criterion.id)]
        remaining -= excluded
        steps.append(
            {
                "criterion": criterion.id,
                "title": criterion.title,
                "kind": criterion.kind.value,
                "excluded": excluded,
                "unknown": counts[(ruleset.id, "step_unknown", criterion.id)],
                "remaining": remaining,
            }
        )
    return {
        "screened": screened,
        "steps": steps,
        "eligible": counts[(ruleset.id, "count", Status.ELIGIBLE.value)],
        "indeterminate": counts[(ruleset.id, "count", Status.INDETERMINATE.value)],
    }


def _missing_list(
    counts: Mapping[tuple[str, ...], int], scope: str, features: Mapping[str, Feature]
) -> list[dict[str, Any]]:
    found = [
        (key[2], n) for key, n in counts.items() if key[0] == scope and key[1] == "missing" and n
    ]
    found.sort(key=lambda item: (-item[1], item[0]))
    return [
        {"feature": f, "label": features[f].spec.label if f in features else f, "patients": n}
        for f, n in found[:TOP_MISSING]
    ]


def ruleset_report(
    counts: Mapping[tuple[str, ...], int], ruleset: RuleSet, features: Mapping[str, Feature]
) -> dict[str, Any]:
    screened = counts[("*", "screened")]
    return {
        "id": ruleset.id,
        "version": ruleset.version,
        "hash": ruleset.hash,
        "title": ruleset.title,
        "therapy": ruleset.therapy.value,
        "indication": ruleset.indication.value,
        "review_status": ruleset.review_status.value,
        "counts": {s.value: counts[(ruleset.id, "count", s.value)] for s in Status},
        "criteria": [_criterion(counts, ruleset, c) for c in ruleset.deciding],
        "cautions": [_criterion(counts, ruleset, c) for c in ruleset.cautions],
        "funnel": _funnel(counts, ruleset, screened),
        "missing": _missing_list(counts, ruleset.id, features),
    }


def build(
    results: Path, rulesets: Sequence[RuleSet], features: Mapping[str, Feature]
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """(patients screened, one report per rule set, the features missing most overall)."""
    counts = aggregate(results, rulesets)
    reports = [ruleset_report(counts, r, features) for r in rulesets]
    return counts[("*", "screened")], reports, _missing_list(counts, "*", features)
