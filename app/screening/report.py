"""The screening report, counted from the results as they stream to the results file.

Per rule set: how many patients are eligible, ineligible, indeterminate, not indicated; per
criterion, how many met it, did not, were unknown, and were excluded by it first; the
attrition funnel (patients leave at the first criterion, in reading order, that rules them
out, as a CONSORT diagram reads); and the features whose absence kept most patients
indeterminate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from app.engine.evaluate import Status
from app.engine.model import Criterion, CriterionKind, Feature, RuleSet
from app.engine.sql import EXCLUDED_BY, MISSING, STATUS, column_name

TOP_MISSING = 10


class Tally:
    """The counts the report needs, added up batch by batch as the results stream past.

    Every engine's rows come through here on their way to the results file, so there is no
    second scan and no second dialect. Each count is one vectorised Arrow kernel a batch.
    """

    def __init__(self, rulesets: Sequence[RuleSet]) -> None:
        self.rulesets = tuple(rulesets)
        self.counts: Counter[tuple[str, ...]] = Counter()

    def add(self, batch: pa.RecordBatch) -> None:
        self.counts[("*", "screened")] += batch.num_rows
        overall: dict[str, Any] = {}
        for ruleset in self.rulesets:
            self._statuses(batch, ruleset)
            self._funnel(batch, ruleset)
            for criterion in ruleset.cautions:
                self._criterion(ruleset.id, criterion.id, _column(batch, ruleset, criterion.id))
            self._missing(batch, ruleset, overall)
        for feature, flags in overall.items():
            self.counts[("*", "missing", feature)] += _true(flags)

    def _statuses(self, batch: pa.RecordBatch, ruleset: RuleSet) -> None:
        for item in pc.value_counts(_column(batch, ruleset, STATUS)).to_pylist():
            self.counts[(ruleset.id, "count", item["values"])] += item["counts"]

    def _funnel(self, batch: pa.RecordBatch, ruleset: RuleSet) -> None:
        excluded_by = _column(batch, ruleset, EXCLUDED_BY)
        for item in pc.value_counts(excluded_by).to_pylist():
            if item["values"] is not None:
                self.counts[(ruleset.id, "excluded", item["values"])] += item["counts"]
        # Each patient's exit step as a number (one past the last when none): a patient is
        # still in the funnel at step i when that number is above i.
        ids = pa.array([c.id for c in ruleset.deciding], pa.string())
        exit_step = pc.fill_null(pc.index_in(excluded_by, value_set=ids), len(ids))
        for i, criterion in enumerate(ruleset.deciding):
            column = _column(batch, ruleset, criterion.id)
            self._criterion(ruleset.id, criterion.id, column)
            still_unknown = pc.and_(pc.is_null(column), pc.greater(exit_step, i))
            self.counts[(ruleset.id, "step_unknown", criterion.id)] += _true(still_unknown)

    def _criterion(self, ruleset_id: str, criterion_id: str, column: Any) -> None:
        met, unknown = _true(column), column.null_count
        self.counts[(ruleset_id, "met", criterion_id)] += met
        self.counts[(ruleset_id, "unknown", criterion_id)] += unknown
        self.counts[(ruleset_id, "not_met", criterion_id)] += len(column) - met - unknown

    def _missing(self, batch: pa.RecordBatch, ruleset: RuleSet, overall: dict[str, Any]) -> None:
        """Per rule set, and overall: patients indeterminate somewhere for want of it."""
        prefix = column_name(ruleset, MISSING, "")
        for name in batch.schema.names:
            if name.startswith(prefix):
                flags, feature = batch.column(name), name.removeprefix(prefix)
                self.counts[(ruleset.id, "missing", feature)] += _true(flags)
                seen = overall.get(feature)
                overall[feature] = flags if seen is None else pc.or_(seen, flags)

    def reports(
        self, features: Mapping[str, Feature]
    ) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
        """(patients screened, one report per rule set, the features missing most overall)."""
        reports = [ruleset_report(self.counts, r, features) for r in self.rulesets]
        return self.counts[("*", "screened")], reports, _missing_list(self.counts, "*", features)


def _column(batch: pa.RecordBatch, ruleset: RuleSet, part: str) -> Any:
    return batch.column(column_name(ruleset, part))


def _true(column: Any) -> int:
    """TRUEs in a boolean column (NULLs are not counted): `sum` counts them without the
    casts that cost forty times as much."""
    return int(pc.sum(column).as_py() or 0)


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
    if criterion.kind is not CriterionKind.CAUTION:
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
