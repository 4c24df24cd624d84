"""The screening report, counted from the results as they stream to the results file.

Per rule set: how many patients are eligible, ineligible, indeterminate, not indicated; per
criterion, how many met it, did not, were unknown, and were excluded by it first; the
attrition funnel (patients leave at the first criterion, in reading order, that rules them
out, as a CONSORT diagram reads); and what kept patients indeterminate, in two lists as the
API's answer splits them: the values to measure whose absence kept most patients undecided
(`missing`), and the clinician confirmations most awaited (`to_confirm`: a judgement such as
"no severe comorbidity" that no measurement gives), with the number of undecided patients
who await nothing but confirmations.

And, over all rule sets, the values given against a catalogue derivation (`corrected`): per
derived feature, the rows screened whose given value was replaced by the value their record
implies ("prior_alkylating_or_irradiation: given false in 12 rows where
prior_cyclophosphamide_iv_g > 0 g implies true (cyclophosphamide is an alkylating agent); the
implied value was used"), counted from the results' `corrected:<feature>` flags. Like every
count here it names no patient: the registry finds the rows by those flags in the results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field, with_config

# typing_extensions': pydantic reads field descriptions from it on Python 3.11.
from typing_extensions import TypedDict

from app.engine.evaluate import Status
from app.engine.model import Criterion, CriterionKind, Feature, RuleSet, Scalar
from app.engine.present import KindText, OriginOut, StatusText, criterion_spec
from app.engine.result_columns import (
    CORRECTED,
    EXCLUDED_BY,
    MISSING,
    STATUS,
    TO_CONFIRM,
    column_name,
    corrected_column,
)
from app.engine.schema import Indication, ReviewStatus, Therapy
from app.engine.unit_names import words

TOP_MISSING = 10

# --- the report: one typed definition, beside its builder ---------------------------------------
# Plain dicts at run time (written as JSON by `eligo screen` and the worker, served by GET
# /v1/screenings/{id}/report.json, whose OpenAPI schema this is). The per-rule-set parts are
# built below; the envelope (`ScreeningReport`) by app/screening/runner.py's `_summary`.

_STRICT = ConfigDict(extra="forbid")  # a key no builder writes is a contract test failure


@with_config(_STRICT)
class CriterionCounts(TypedDict):
    id: str
    kind: KindText
    title: str
    origin: OriginOut | None
    met: int
    not_met: int
    unknown: int
    excluded_first: NotRequired[
        Annotated[
            int,
            Field(description="Patients this criterion excluded first (not on a caution)"),
        ]
    ]


@with_config(_STRICT)
class FunnelStep(TypedDict):
    criterion: str
    title: str
    kind: KindText
    origin: OriginOut | None
    excluded: Annotated[int, Field(description="Patients who leave the funnel here")]
    unknown: Annotated[
        int, Field(description="Patients still in the funnel for whom this criterion is unknown")
    ]
    remaining: int


@with_config(_STRICT)
class Funnel(TypedDict):
    """CONSORT-style attrition: from the rows read (rejected ones set aside), patients leave
    at the first deciding criterion, in reading order, that rules them out."""

    read: Annotated[int, Field(description="Rows read, rejected ones included")]
    rejected: Annotated[int, Field(description="Rows rejected (no id, a duplicate id; strict)")]
    kept_unknown: Annotated[int, Field(description="Rows screened with a bad cell read as unknown")]
    screened: int
    steps: list[FunnelStep]
    eligible: int
    indeterminate: int
    to_confirm_only: Annotated[
        int, Field(description="Undecided patients who await nothing but confirmations")
    ]


@with_config(_STRICT)
class MissingValue(TypedDict):
    feature: str
    label: str
    patients: Annotated[
        int, Field(description="Patients indeterminate somewhere for want of this value")
    ]


@with_config(_STRICT)
class AwaitedConfirmation(TypedDict):
    feature: str
    label: str
    question: NotRequired[Annotated[str, Field(description="The question a clinician answers")]]
    proceeds_when: NotRequired[
        Annotated[bool, Field(description="The answer that lets a patient go on")]
    ]
    patients: Annotated[
        int, Field(description="Patients indeterminate somewhere awaiting this confirmation")
    ]


@with_config(_STRICT)
class Derivation(TypedDict):
    when: str
    because: str


@with_config(_STRICT)
class CorrectedValues(TypedDict):
    feature: str
    label: str
    rows: Annotated[int, Field(description="Rows whose given value the implied one replaced")]
    given: Annotated[
        Scalar | None, Field(description="What was given (for a yes/no, the other answer)")
    ]
    implied: Annotated[
        Scalar | None,
        Field(description="The implied value; null for fractions rounded down to completed units"),
    ]
    derivations: Annotated[
        list[Derivation], Field(description="Empty for fractions rounded down to completed units")
    ]
    summary: Annotated[str, Field(description="The sentence `eligo screen` prints")]


@with_config(_STRICT)
class RulesetReport(TypedDict):
    id: str
    version: str
    hash: str
    title: str
    therapy: Therapy
    indication: Indication
    review_status: ReviewStatus
    counts: dict[StatusText, int]
    criteria: Annotated[list[CriterionCounts], Field(description="The deciding criteria")]
    cautions: list[CriterionCounts]
    funnel: Funnel
    missing: Annotated[
        list[MissingValue],
        Field(description=f"The values to measure missing most (at most {TOP_MISSING})"),
    ]
    to_confirm: Annotated[
        list[AwaitedConfirmation],
        Field(description=f"The confirmations most awaited (at most {TOP_MISSING})"),
    ]
    to_confirm_only: int


@with_config(_STRICT)
class ReportSource(TypedDict):
    name: str
    engine: str


@with_config(_STRICT)
class RejectedRow(TypedDict):
    row: int
    where: Annotated[str, Field(description='file:line, or "row N"')]
    problems: str


@with_config(_STRICT)
class ProblemCount(TypedDict):
    column: Annotated[str, Field(description="The registry's column")]
    feature: Annotated[str, Field(description="The feature it gives (empty for the id)")]
    problem: Annotated[str, Field(description="What is wrong, e.g. not a number")]
    cells: int
    first: Annotated[str, Field(description='Where it first occurs: file:line, or "row N"')]


@with_config(_STRICT)
class RejectedRows(TypedDict):
    count: int
    first: Annotated[list[RejectedRow], Field(description="The first rejected rows")]
    by_column: Annotated[
        list[ProblemCount], Field(description="The rejected rows' problems, by registry column")
    ]


@with_config(_STRICT)
class CellProblems(TypedDict):
    """Cells that held no value of their feature's type and were read as unknown (the row
    screened; `strict` rejects the row instead): counts only, each cell in `.problems.csv`."""

    cells: int
    rows: int
    by_column: list[ProblemCount]


@with_config(_STRICT)
class ReportColumns(TypedDict):
    used: Annotated[dict[str, str], Field(description="Feature id: the column read")]
    units: Annotated[dict[str, str], Field(description="Feature id: the column's unit")]
    ignored: Annotated[list[str], Field(description="Columns no feature was mapped to")]


@with_config(_STRICT)
class ScreeningReport(TypedDict):
    """Counts, funnels, missing data and rejected rows per rule set; no patient named."""

    rules_hash: str
    review: str
    source: ReportSource
    rows: Annotated[int, Field(description="Rows read, rejected ones included")]
    screened: int
    rejected: RejectedRows
    problems: CellProblems
    columns: ReportColumns
    rulesets: list[RulesetReport]
    missing: Annotated[
        list[MissingValue], Field(description="Over all rule sets: values missing most")
    ]
    to_confirm: Annotated[
        list[AwaitedConfirmation],
        Field(description="Over all rule sets: confirmations most awaited"),
    ]
    corrected: Annotated[
        list[CorrectedValues],
        Field(description="Values given that a catalogue derivation replaced, per feature"),
    ]


class Tally:
    """The counts the report needs, added up batch by batch as the results stream past.

    Every engine's rows come through here on their way to the results file, so there is no
    second scan and no second dialect. Each count is one vectorised Arrow kernel a batch.
    """

    def __init__(self, rulesets: Sequence[RuleSet], derived: Sequence[str] = ()) -> None:
        """`derived`: the derived features whose `corrected:<feature>` flags the results carry;
        any other flag a batch carries (a fraction of completed units rounded down,
        `validate.corrected_columns`) is counted too."""
        self.rulesets = tuple(rulesets)
        self.derived = tuple(derived)
        self._flags: dict[tuple[str, ...], list[str]] = {}  # per batch schema: flagged features
        self.counts: Counter[tuple[str, ...]] = Counter()
        # Per rule set, its deciding criteria's ids and their steps 0..n as Arrow scalars:
        # made once, as each Python int made into a scalar for a comparison costs an import
        # attempt of dateutil (0.2 ms; 1,800 of them a million rows of the shipped rule sets).
        self._steps = {
            r.id: (
                pa.array([c.id for c in r.deciding], pa.string()),
                [pa.scalar(i, pa.int32()) for i in range(len(r.deciding) + 1)],
            )
            for r in self.rulesets
        }

    def add(self, batch: pa.RecordBatch) -> None:
        self.counts[("*", "screened")] += batch.num_rows
        for feature in self._flagged(batch):
            self.counts[("*", CORRECTED, feature)] += _true(batch.column(corrected_column(feature)))
        overall: dict[tuple[str, str], Any] = {}
        for ruleset in self.rulesets:
            self._statuses(batch, ruleset)
            self._funnel(batch, ruleset)
            for criterion in ruleset.cautions:
                self._criterion(ruleset.id, criterion.id, _column(batch, ruleset, criterion.id))
            measure = self._awaited(batch, ruleset, MISSING, overall)
            confirm = self._awaited(batch, ruleset, TO_CONFIRM, overall)
            if confirm is not None:
                only = confirm if measure is None else pc.and_(confirm, pc.invert(measure))
                self.counts[(ruleset.id, "to_confirm_only")] += _true(only)
        for (kind, feature), flags in overall.items():
            self.counts[("*", kind, feature)] += _true(flags)

    def _flagged(self, batch: pa.RecordBatch) -> list[str]:
        """The features whose `corrected:<feature>` flags the batch carries."""
        names = tuple(batch.schema.names)
        found = self._flags.get(names)
        if found is None:
            prefix = corrected_column("")
            found = [n.removeprefix(prefix) for n in names if n.startswith(prefix)]
            self._flags[names] = found
        return found

    def _statuses(self, batch: pa.RecordBatch, ruleset: RuleSet) -> None:
        for item in pc.value_counts(_column(batch, ruleset, STATUS)).to_pylist():
            self.counts[(ruleset.id, "count", item["values"])] += item["counts"]

    def _funnel(self, batch: pa.RecordBatch, ruleset: RuleSet) -> None:
        # Each patient's exit step as a number (one past the last when none): a patient is
        # still in the funnel at step i when that number is above i. Counted as numbers, not
        # as the criterion ids (hashing the text took twice as long).
        ids, steps = self._steps[ruleset.id]
        excluded_at = pc.index_in(_column(batch, ruleset, EXCLUDED_BY), value_set=ids)
        for item in pc.value_counts(excluded_at).to_pylist():
            if item["values"] is not None:
                excluded = ruleset.deciding[item["values"]].id
                self.counts[(ruleset.id, "excluded", excluded)] += item["counts"]
        exit_step = pc.fill_null(excluded_at, steps[-1])
        for criterion, step in zip(ruleset.deciding, steps, strict=False):
            column = _column(batch, ruleset, criterion.id)
            self._criterion(ruleset.id, criterion.id, column)
            still_unknown = pc.and_(pc.is_null(column), pc.greater(exit_step, step))
            self.counts[(ruleset.id, "step_unknown", criterion.id)] += _true(still_unknown)

    def _criterion(self, ruleset_id: str, criterion_id: str, column: Any) -> None:
        met, unknown = _true(column), column.null_count
        self.counts[(ruleset_id, "met", criterion_id)] += met
        self.counts[(ruleset_id, "unknown", criterion_id)] += unknown
        self.counts[(ruleset_id, "not_met", criterion_id)] += len(column) - met - unknown

    def _awaited(
        self,
        batch: pa.RecordBatch,
        ruleset: RuleSet,
        kind: str,
        overall: dict[tuple[str, str], Any],
    ) -> Any:
        """Per rule set, and overall: patients indeterminate somewhere for want of each value
        to measure (`kind` MISSING) or confirmation (TO_CONFIRM). Returns the rule set's
        patients who want any (None when the rule set has no such column)."""
        prefix = column_name(ruleset, kind, "")
        wanting = None
        for name in batch.schema.names:
            if name.startswith(prefix):
                flags, feature = batch.column(name), name.removeprefix(prefix)
                self.counts[(ruleset.id, kind, feature)] += _true(flags)
                seen = overall.get((kind, feature))
                overall[kind, feature] = flags if seen is None else pc.or_(seen, flags)
                wanting = flags if wanting is None else pc.or_(wanting, flags)
        return wanting

    def reports(self, features: Mapping[str, Feature]) -> Reports:
        """Patients screened, one report per rule set, and overall the values missing most,
        the confirmations most awaited and the values given that derivations replaced."""
        return Reports(
            self.counts[("*", "screened")],
            [ruleset_report(self.counts, r, features) for r in self.rulesets],
            _missing_list(self.counts, "*", features),
            _to_confirm_list(self.counts, "*", features),
            _corrected_list(self.counts, features),
        )


@dataclass(frozen=True, slots=True)
class Reports:
    screened: int
    rulesets: list[RulesetReport]
    missing: list[MissingValue]  # values to measure
    to_confirm: list[AwaitedConfirmation]  # clinician confirmations
    corrected: list[CorrectedValues]  # values given that a derivation replaced


def _column(batch: pa.RecordBatch, ruleset: RuleSet, part: str) -> Any:
    return batch.column(column_name(ruleset, part))


def _true(column: Any) -> int:
    """TRUEs in a boolean column (NULLs are not counted): `sum` counts them without the
    casts that cost forty times as much."""
    return int(pc.sum(column).as_py() or 0)


def _criterion(
    counts: Mapping[tuple[str, ...], int], ruleset: RuleSet, criterion: Criterion
) -> CriterionCounts:
    entry: CriterionCounts = {
        "id": criterion.id,
        "kind": criterion.kind.value,
        "title": criterion.title,
        "origin": criterion_spec(criterion)["origin"],
        "met": counts[(ruleset.id, "met", criterion.id)],
        "not_met": counts[(ruleset.id, "not_met", criterion.id)],
        "unknown": counts[(ruleset.id, "unknown", criterion.id)],
    }
    if criterion.kind is not CriterionKind.CAUTION:
        entry["excluded_first"] = counts[(ruleset.id, "excluded", criterion.id)]
    return entry


def _funnel(counts: Mapping[tuple[str, ...], int], ruleset: RuleSet, screened: int) -> Funnel:
    remaining, steps = screened, list[FunnelStep]()
    for criterion in ruleset.deciding:
        excluded = counts[(ruleset.id, "excluded", criterion.id)]
        remaining -= excluded
        steps.append(
            {
                "criterion": criterion.id,
                "title": criterion.title,
                "kind": criterion.kind.value,
                # an included criterion says where it comes from, as the API's answer does
                "origin": criterion_spec(criterion)["origin"],
                "excluded": excluded,
                "unknown": counts[(ruleset.id, "step_unknown", criterion.id)],
                "remaining": remaining,
            }
        )
    # The rows rejected are the runner's to add (`runner._funnel_rows`): counted here, the
    # funnel starts at the rows screened.
    return {
        "read": screened,
        "rejected": 0,
        "kept_unknown": 0,
        "screened": screened,
        "steps": steps,
        "eligible": counts[(ruleset.id, "count", Status.ELIGIBLE.value)],
        "indeterminate": counts[(ruleset.id, "count", Status.INDETERMINATE.value)],
        "to_confirm_only": counts[(ruleset.id, "to_confirm_only")],
    }


def _most(counts: Mapping[tuple[str, ...], int], scope: str, kind: str) -> list[tuple[str, int]]:
    found = [(key[2], n) for key, n in counts.items() if key[0] == scope and key[1] == kind and n]
    found.sort(key=lambda item: (-item[1], item[0]))
    return found[:TOP_MISSING]


def _missing_list(
    counts: Mapping[tuple[str, ...], int], scope: str, features: Mapping[str, Feature]
) -> list[MissingValue]:
    """The values to measure whose absence kept most patients indeterminate."""
    return [
        {"feature": f, "label": features[f].spec.label if f in features else f, "patients": n}
        for f, n in _most(counts, scope, MISSING)
    ]


def _to_confirm_list(
    counts: Mapping[tuple[str, ...], int], scope: str, features: Mapping[str, Feature]
) -> list[AwaitedConfirmation]:
    """The clinician confirmations most awaited, with the question a clinician answers and
    the answer that lets a patient go on."""
    found: list[AwaitedConfirmation] = []
    for ident, n in _most(counts, scope, TO_CONFIRM):
        spec = features[ident].spec if ident in features else None
        confirmation = spec.confirmation if spec else None
        entry: AwaitedConfirmation = {
            "feature": ident,
            "label": spec.label if spec else ident,
            "patients": n,
        }
        if confirmation is not None:
            # In this order: question and answer before the count, as the report has them.
            entry = {
                "feature": entry["feature"],
                "label": entry["label"],
                "question": confirmation.question,
                "proceeds_when": confirmation.proceeds_when,
                "patients": n,
            }
        found.append(entry)
    return found


def _corrected_list(
    counts: Mapping[tuple[str, ...], int], features: Mapping[str, Feature]
) -> list[CorrectedValues]:
    """Per derived feature with any, the rows whose given value the implied one replaced, in
    catalogue order: what was given (for a yes/no, the other answer), what was implied, the
    derivations (condition and reason) and the sentence `eligo screen` prints. And per
    feature counted in completed units, the rows whose fraction was rounded down."""
    found: list[CorrectedValues] = []
    for ident, feature in features.items():
        rows = counts[("*", CORRECTED, ident)]
        if rows and feature.spec.integer == "completed":
            found.append(_rounded_down(feature, rows))
        if not rows or not feature.derivations:
            continue
        implied = feature.derivations[0].value
        given = (not implied) if isinstance(implied, bool) else None
        rules: list[Derivation] = [
            {"when": d.text, "because": d.because} for d in feature.derivations
        ]
        found.append(
            {
                "feature": ident,
                "label": feature.spec.label,
                "rows": rows,
                "given": given,
                "implied": implied,
                "derivations": rules,
                "summary": _corrected_summary(ident, rows, given, implied, rules),
            }
        )
    return found


def _rounded_down(feature: Feature, rows: int) -> CorrectedValues:
    """`age_years: a fraction of years given in 3 rows; age_years counts completed years, so
    the completed years were used` (65.5 is taken as 65, as the API and FHIR's birthDate)."""
    unit = words(feature.unit)
    counted = f"{rows:,} row" + ("" if rows == 1 else "s")
    summary = (
        f"{feature.id}: a fraction of {unit} given in {counted}; {feature.id} counts "
        f"completed {unit}, so the completed {unit} were used"
    )
    return {
        "feature": feature.id,
        "label": feature.spec.label,
        "rows": rows,
        "given": None,
        "implied": None,
        "derivations": [],
        "summary": summary,
    }


def _corrected_summary(
    ident: str, rows: int, given: Scalar | None, implied: Scalar, rules: list[Derivation]
) -> str:
    """One line: `prior_alkylating_or_irradiation: given false in 12 rows where
    prior_cyclophosphamide_iv_g > 0 g implies true (cyclophosphamide is an alkylating agent);
    the implied value was used`."""
    shown = "another value" if given is None else _json(given)
    conditions = " or ".join(r["when"] for r in rules)
    reasons = "; ".join(dict.fromkeys(r["because"] for r in rules))
    counted = f"{rows:,} row" + ("" if rows == 1 else "s")
    return (
        f"{ident}: given {shown} in {counted} where {conditions} implies {_json(implied)}"
        f" ({reasons}); the implied value was used"
    )


def _json(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def ruleset_report(
    counts: Mapping[tuple[str, ...], int], ruleset: RuleSet, features: Mapping[str, Feature]
) -> RulesetReport:
    screened = counts[("*", "screened")]
    return {
        "id": ruleset.id,
        "version": ruleset.version,
        "hash": ruleset.hash,
        "title": ruleset.title,
        "therapy": ruleset.therapy,  # a StrEnum: written as its value
        "indication": ruleset.indication,
        "review_status": ruleset.review_status,
        "counts": {s.value: counts[(ruleset.id, "count", s.value)] for s in Status},
        "criteria": [_criterion(counts, ruleset, c) for c in ruleset.deciding],
        "cautions": [_criterion(counts, ruleset, c) for c in ruleset.cautions],
        "funnel": _funnel(counts, ruleset, screened),
        "missing": _missing_list(counts, ruleset.id, features),
        "to_confirm": _to_confirm_list(counts, ruleset.id, features),
        "to_confirm_only": counts[(ruleset.id, "to_confirm_only")],
    }
