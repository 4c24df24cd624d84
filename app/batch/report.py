"""The screening report, counted from the results as they stream to the results file.

Per rule set: how many patients are eligible, ineligible, indeterminate, not indicated; per
criterion, how many met it, did not, were unknown, and were excluded by it first; the
attrition funnel (patients leave at the first criterion, in reading order, that rules them
out, as a CONSORT diagram reads); and what kept patients indeterminate, in two lists as the
API's answer splits them: the values to measure whose absence kept most patients undecided
(`missing`), and the clinician confirmations most awaited (`to_confirm`: a judgement such as
"no severe comorbidity" that no measurement gives), with the number of undecided patients
who await nothing but confirmations.

Bounds, not just counts: per rule set, the patients eligible as far as is known, and the best
case, an upper bound, eligible if every unknown item were favourable (eligible plus
indeterminate: filling in an unknown value never changes a known criterion, so only an
undecided patient can still become eligible), split by what the undecided await (values to
measure only, confirmations only, both), with the items that alone keep most patients
undecided (`unlock`: measure or confirm that one item and they are decided). And over the rule
sets of one therapy for one indication, the patients eligible under each combination of them
(`overlap`: exclusive Venn regions), known and best case.

And, over all rule sets, the values given against a catalogue derivation (`corrected`): per
derived feature, the rows screened whose given value was replaced by the value their record
implies ("prior_alkylating_or_irradiation: given false in 12 rows where
prior_cyclophosphamide_iv_g > 0 g implies true (cyclophosphamide is an alkylating agent); the
implied value was used"), counted from the results' `corrected:<feature>` flags. Like every
count here it names no patient: the registry finds the rows by those flags in the results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field, with_config

# typing_extensions': pydantic reads field descriptions from it on Python 3.11.
from typing_extensions import TypedDict

from app.batch import table1
from app.batch.table1 import Table1
from app.engine.evaluate import Status
from app.engine.model import Criterion, CriterionKind, Feature, RuleSet, Scalar, atoms
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
MOST_IN_OVERLAP = 30  # rule sets of one therapy and indication: each is a bit of an int32

# --- the report: one typed definition, beside its builder ---------------------------------------
# Plain dicts at run time (written as JSON by `eligo screen` and the worker, served by GET
# /v1/screenings/{id}/report.json, whose OpenAPI schema this is). The per-rule-set parts are
# built below; the envelope (`ScreeningReport`) by app/batch/runner.py's `_summary`.

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
class Unlock(TypedDict):
    feature: str
    label: str
    kind: Annotated[
        Literal["missing", "to_confirm"],
        Field(description="A value to measure, or a clinician confirmation"),
    ]
    patients: Annotated[
        int,
        Field(
            description="Undecided patients for whom this is the only unknown item: measuring "
            "or confirming it decides them (eligible or not)"
        ),
    ]


@with_config(_STRICT)
class Bounds(TypedDict):
    """How many patients are eligible as far as is known, and at most."""

    eligible: Annotated[int, Field(description="Eligible with every deciding value known")]
    best_case: Annotated[
        int,
        Field(
            description="An upper bound: eligible if every unknown item were favourable "
            "(eligible + indeterminate; an undecided patient may still be ruled out, and one "
            "whose indication is unknown is counted as having it)"
        ),
    ]
    data_gaps_only: Annotated[
        int, Field(description="Undecided patients awaiting only values to measure")
    ]
    confirmations_only: Annotated[
        int, Field(description="Undecided patients awaiting only clinician confirmations")
    ]
    gaps_and_confirmations: Annotated[
        int, Field(description="Undecided patients awaiting values to measure and confirmations")
    ]
    unlock: Annotated[
        list[Unlock],
        Field(
            description="The items that are the only unknown of most undecided patients "
            f"(at most {TOP_MISSING})"
        ),
    ]


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
    bounds: Bounds


@with_config(_STRICT)
class OverlapRegion(TypedDict):
    rulesets: Annotated[
        list[str], Field(description="Eligible under exactly these rule sets of the group")
    ]
    patients: int


@with_config(_STRICT)
class Overlap(TypedDict):
    """The patients eligible under each combination of one therapy's rule sets for one
    indication: exclusive regions of their Venn diagram, the non-empty ones, most first."""

    therapy: Therapy
    indication: Indication
    rulesets: list[str]
    eligible: Annotated[list[OverlapRegion], Field(description="Eligible as far as is known")]
    best_case: Annotated[
        list[OverlapRegion],
        Field(description="Eligible if every unknown item were favourable (an upper bound)"),
    ]


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
    strict: NotRequired[
        Annotated[
            bool,
            Field(
                description="Strict mode: a bad cell rejected its row (else only a row "
                "without a usable id is rejected, and a bad cell is unknown); absent from "
                "reports written before it was recorded"
            ),
        ]
    ]
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
class IndicationUnread(TypedDict):
    """A diagnosis no column of the source gives: every patient's indication is unknown under
    the rule sets that read it, so none is `not_indicated` there and patients of another
    disease are counted among the undecided (and in `best_case`)."""

    feature: Annotated[str, Field(description="The indication's feature, e.g. ssc_diagnosis")]
    rulesets: list[str]
    message: str


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
    indications_unread: Annotated[
        list[IndicationUnread],
        Field(description="Diagnoses the source gives no column for (empty: all read)"),
    ]
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
    table1: Annotated[
        Table1, Field(description="The screened cohort's characteristics (rejected rows not in)")
    ]
    overlap: Annotated[
        list[Overlap],
        Field(
            description="Per therapy and indication with two rule sets or more (at most "
            f"{MOST_IN_OVERLAP})"
        ),
    ]


def indications_unread(rulesets: Sequence[RuleSet], read: Iterable[str]) -> list[IndicationUnread]:
    """The indication features (ssc_diagnosis, sle_diagnosis) that no column gives, each with
    the rule sets whose indication criterion reads only unread features: there every patient
    is undecided at the first step, whatever their disease."""
    given = set(read)
    unread: dict[str, list[str]] = {}
    for ruleset in rulesets:
        features = sorted({a.feature for a in atoms(ruleset.indication_criterion.when)})
        if features and not given.intersection(features):
            for feature in features:
                unread.setdefault(feature, []).append(ruleset.id)
    return [
        {
            "feature": feature,
            "rulesets": ids,
            "message": (
                f"no column gives {feature}: under {', '.join(ids)} no patient can be "
                "not_indicated, so patients of another disease are counted among the "
                "undecided (and in best_case); map the registry's diagnosis column to "
                f"{feature} (a `values:` map turns its codes into true and false)"
            ),
        }
        for feature, ids in unread.items()
    ]


class Tally:
    """The counts the report needs, added up batch by batch as the results stream past.

    Every engine's rows come through here on their way to the results file, so there is no
    second scan and no second dialect. Each count is one vectorised Arrow kernel a batch.
    """

    def __init__(
        self,
        rulesets: Sequence[RuleSet],
        derived: Sequence[str] = (),
        described: Sequence[Feature] = (),
    ) -> None:
        """`derived`: the derived features whose `corrected:<feature>` flags the results carry;
        any other flag a batch carries (a fraction of completed units rounded down,
        `validate.corrected_columns`) is counted too. `described`: Table 1's features, whose
        `table1:<feature>` columns the batches carry."""
        self.rulesets = tuple(rulesets)
        self.derived = tuple(derived)
        self.table1 = table1.Counts(described)
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
        self._groups = _overlap_groups(self.rulesets)
        # Per group, kind ("eligible", "best_case") and combination (bit i: the group's rule
        # set i): patients in that exclusive region.
        self.regions: Counter[tuple[int, str, int]] = Counter()

    def add(self, batch: pa.RecordBatch) -> None:
        self.counts[("*", "screened")] += batch.num_rows
        self.table1.add(batch)
        for feature in self._flagged(batch):
            self.counts[("*", CORRECTED, feature)] += _true(batch.column(corrected_column(feature)))
        overall: dict[tuple[str, str], Any] = {}
        for ruleset in self.rulesets:
            self._statuses(batch, ruleset)
            self._funnel(batch, ruleset)
            for criterion in ruleset.cautions:
                self._criterion(ruleset.id, criterion.id, _column(batch, ruleset, criterion.id))
            measure, gaps = self._awaited(batch, ruleset, MISSING, overall)
            confirm, confirmations = self._awaited(batch, ruleset, TO_CONFIRM, overall)
            self._split_undecided(ruleset.id, measure, confirm)
            self._unlock(ruleset.id, [*gaps, *confirmations])
        for (kind, feature), flags in overall.items():
            self.counts[("*", kind, feature)] += _true(flags)
        for index, group in enumerate(self._groups):
            self._overlap(batch, index, group)

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
        exit_step = pc.fill_null(excluded_at, steps[-1])
        # Patients per exit step (the last: not excluded) by bincount over the step numbers:
        # value_counts hashed them and built a Python dict per value, 0.8 ms a rule set per
        # 100,000 rows against 0.1.
        exits = np.bincount(exit_step.to_numpy(), minlength=len(steps))
        for step, patients in enumerate(exits[:-1].tolist()):
            if patients:
                self.counts[(ruleset.id, "excluded", ruleset.deciding[step].id)] += patients
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
    ) -> tuple[Any, list[tuple[str, Any]]]:
        """Per rule set, and overall: patients indeterminate somewhere for want of each value
        to measure (`kind` MISSING) or confirmation (TO_CONFIRM). Returns the rule set's
        patients who want any (None when the rule set has no such column), and its flag
        columns by feature."""
        prefix = column_name(ruleset, kind, "")
        wanting = None
        found: list[tuple[str, Any]] = []
        for name in batch.schema.names:
            if name.startswith(prefix):
                flags, feature = batch.column(name), name.removeprefix(prefix)
                found.append((feature, flags))
                self.counts[(ruleset.id, kind, feature)] += _true(flags)
                seen = overall.get((kind, feature))
                overall[kind, feature] = flags if seen is None else pc.or_(seen, flags)
                wanting = flags if wanting is None else pc.or_(wanting, flags)
        return wanting, found

    def _split_undecided(self, ruleset_id: str, measure: Any, confirm: Any) -> None:
        """The undecided patients by what they await: values to measure only, confirmations
        only, both. (A flag is only ever set for an indeterminate patient.)"""
        if measure is not None:
            gaps = measure if confirm is None else pc.and_(measure, pc.invert(confirm))
            self.counts[(ruleset_id, "gaps_only")] += _true(gaps)
        if confirm is not None:
            only = confirm if measure is None else pc.and_(confirm, pc.invert(measure))
            self.counts[(ruleset_id, "to_confirm_only")] += _true(only)
        if measure is not None and confirm is not None:
            self.counts[(ruleset_id, "gaps_and_confirmations")] += _true(pc.and_(measure, confirm))

    def _unlock(self, ruleset_id: str, flags: Sequence[tuple[str, Any]]) -> None:
        """Per item, the undecided patients whose only unknown item it is: the flags are
        folded into "one or more" and "two or more" bitmaps, whose difference is "exactly
        one" (bitmap operations: no per-row count is materialised)."""
        once: Any = None
        twice: Any = None
        for _, column in flags:
            if once is None:
                once = column
                continue
            both = pc.and_(once, column)
            twice = both if twice is None else pc.or_(twice, both)
            once = pc.or_(once, column)
        if once is None:
            return
        only = once if twice is None else pc.and_(once, pc.invert(twice))
        if not _true(only):
            return
        for feature, column in flags:
            self.counts[(ruleset_id, "unlock", feature)] += _true(pc.and_(column, only))

    def _overlap(self, batch: pa.RecordBatch, index: int, group: _Group) -> None:
        """Each patient's combination of the group's rule sets it is eligible under, as bits
        of one number (rule set i: 2**i), counted per number: a few kernels per rule set and
        a count, however many regions the Venn diagram has. The status text is compared
        with two statuses: hashing it with `index_in` instead cost half as much again."""
        known: Any = None
        best: Any = None
        for ruleset, weight in zip(group.rulesets, group.weights, strict=True):
            column = _column(batch, ruleset, STATUS)
            yes = pc.equal(column, _ELIGIBLE)
            at_best = pc.or_(yes, pc.equal(column, _INDETERMINATE))
            if at_best.null_count:  # no status: a NULL would void the patient's whole number
                yes, at_best = pc.fill_null(yes, False), pc.fill_null(at_best, False)
            eligible = pc.if_else(yes, weight, _ZERO)
            hopeful = pc.if_else(at_best, weight, _ZERO)
            known = eligible if known is None else pc.add(known, eligible)
            best = hopeful if best is None else pc.add(best, hopeful)
        for kind, codes in (("eligible", known), ("best_case", best)):
            for item in pc.value_counts(codes).to_pylist():
                if item["values"]:
                    self.regions[(index, kind, item["values"])] += item["counts"]

    def reports(self, features: Mapping[str, Feature]) -> Reports:
        """Patients screened, one report per rule set, and overall the values missing most,
        the confirmations most awaited and the values given that derivations replaced."""
        return Reports(
            self.counts[("*", "screened")],
            [ruleset_report(self.counts, r, features) for r in self.rulesets],
            _missing_list(self.counts, "*", features),
            _to_confirm_list(self.counts, "*", features),
            _corrected_list(self.counts, features),
            self.table1.table(),
            [_overlap(self.regions, i, g) for i, g in enumerate(self._groups)],
        )


@dataclass(frozen=True, slots=True)
class Reports:
    screened: int
    rulesets: list[RulesetReport]
    missing: list[MissingValue]  # values to measure
    to_confirm: list[AwaitedConfirmation]  # clinician confirmations
    corrected: list[CorrectedValues]  # values given that a derivation replaced
    table1: Table1  # the screened cohort's characteristics
    overlap: list[Overlap]  # per therapy and indication with two rule sets or more


@dataclass(frozen=True, slots=True)
class _Group:
    """The rule sets of one therapy for one indication, with each one's bit as a scalar."""

    therapy: Therapy
    indication: Indication
    rulesets: tuple[RuleSet, ...]
    weights: tuple[pa.Scalar, ...]


# The scalars the kernels take, made once (see `Tally._steps`).
_ELIGIBLE = pa.scalar(Status.ELIGIBLE.value, pa.string())
_INDETERMINATE = pa.scalar(Status.INDETERMINATE.value, pa.string())
_ZERO = pa.scalar(0, pa.int32())


def _overlap_groups(rulesets: Sequence[RuleSet]) -> list[_Group]:
    """Therapy x indication with two rule sets or more, in the order the rule sets come."""
    grouped: dict[tuple[Therapy, Indication], list[RuleSet]] = {}
    for ruleset in rulesets:
        grouped.setdefault((ruleset.therapy, ruleset.indication), []).append(ruleset)
    groups = []
    for (therapy, indication), members in grouped.items():
        # More would not fit the bits, and a Venn diagram of 2**31 regions reads as nothing:
        # such a group is left out of the overlap rather than failing the screening.
        if not 2 <= len(members) <= MOST_IN_OVERLAP:
            continue
        weights = tuple(pa.scalar(1 << i, pa.int32()) for i in range(len(members)))
        groups.append(_Group(therapy, indication, tuple(members), weights))
    return groups


def _overlap(regions: Mapping[tuple[int, str, int], int], index: int, group: _Group) -> Overlap:
    def listed(kind: str) -> list[OverlapRegion]:
        found = [(code, n) for (i, k, code), n in regions.items() if i == index and k == kind]
        found.sort(key=lambda item: (-item[1], item[0]))
        return [
            {
                "rulesets": [r.id for bit, r in enumerate(group.rulesets) if code >> bit & 1],
                "patients": n,
            }
            for code, n in found
            if n
        ]

    return {
        "therapy": group.therapy,
        "indication": group.indication,
        "rulesets": [r.id for r in group.rulesets],
        "eligible": listed("eligible"),
        "best_case": listed("best_case"),
    }


def _column(batch: pa.RecordBatch, ruleset: RuleSet, part: str) -> Any:
    return batch.column(column_name(ruleset, part))


def _true(column: Any) -> int:
    """TRUEs in a boolean column (NULLs are not counted). An array's own `true_count` is a
    popcount of its bitmaps, with no kernel dispatched (0.7 us against `sum`'s 5 per 65,536
    rows; some 5,700 a million rows of the shipped rule sets); `sum` for anything else (a
    chunked column), without the casts that cost forty times as much."""
    if isinstance(column, pa.BooleanArray):
        return int(column.true_count)
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
        "bounds": _bounds(counts, ruleset, features),
    }


def _bounds(
    counts: Mapping[tuple[str, ...], int], ruleset: RuleSet, features: Mapping[str, Feature]
) -> Bounds:
    eligible = counts[(ruleset.id, "count", Status.ELIGIBLE.value)]
    undecided = counts[(ruleset.id, "count", Status.INDETERMINATE.value)]
    unlock: list[Unlock] = [
        {
            "feature": f,
            "label": features[f].spec.label if f in features else f,
            "kind": "to_confirm" if f in ruleset.confirmations else "missing",
            "patients": n,
        }
        for f, n in _most(counts, ruleset.id, "unlock")
    ]
    return {
        "eligible": eligible,
        "best_case": eligible + undecided,
        "data_gaps_only": counts[(ruleset.id, "gaps_only")],
        "confirmations_only": counts[(ruleset.id, "to_confirm_only")],
        "gaps_and_confirmations": counts[(ruleset.id, "gaps_and_confirmations")],
        "unlock": unlock,
    }
