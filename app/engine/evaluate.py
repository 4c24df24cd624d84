"""Kleene three-valued evaluation of a rule set, with the trace built by the evaluator itself.

Truth values are Python's True / False / None (unknown). A missing feature is unknown, and
unknown propagates by Kleene's strong tables, which are also SQL's:

    AND: any False -> False, else any None -> None, else True
    OR:  any True  -> True,  else any None -> None, else False
    NOT: None -> None

Every child is evaluated (no short-circuit) so the trace shows every value a clinician might
ask about. That costs tens of nanoseconds per comparison and buys a complete explanation.

Two evaluators give the same Decision: `decide` runs the rule set compiled into one
specialised function (codegen.py), which records the trace as it evaluates; `interpret`
walks the rule tree and is the reference the compiled code is tested against.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import NamedTuple

from app.engine.inputs import FeatureValue
from app.engine.model import (
    All,
    AnyOf,
    Atom,
    Between,
    Compare,
    Criterion,
    CriterionKind,
    Node,
    Not,
    Op,
    RuleSet,
    Scalar,
    atoms,
)

Truth = bool | None
Values = Mapping[str, FeatureValue]

_COMPARE: dict[Op, Callable[[Scalar, Scalar], bool]] = {
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}


class Result(StrEnum):
    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"


def as_result(truth: Truth) -> Result:
    if truth is None:
        return Result.UNKNOWN
    return Result.MET if truth else Result.NOT_MET


class Status(StrEnum):
    NOT_INDICATED = "not_indicated"
    INELIGIBLE = "ineligible"
    INDETERMINATE = "indeterminate"
    ELIGIBLE = "eligible"


class AtomTrace(NamedTuple):
    """One comparison as evaluated: the value used, the threshold, the margin to it."""

    atom: Atom
    value: FeatureValue | None
    result: Truth
    margin: float | None


class CriterionResult(NamedTuple):
    criterion: Criterion
    result: Result
    trace: tuple[AtomTrace, ...]


# Where each criterion's entries start in a Decision's record, and its atoms in reading order.
Layout = tuple[tuple[Criterion, int, tuple[Atom, ...]], ...]
_RESULT = {True: Result.MET, False: Result.NOT_MET, None: Result.UNKNOWN}


def layout(ruleset: RuleSet) -> Layout:
    """The shape of the rule set's records, computed once and kept with the rule set."""
    known: Layout | None = ruleset.layout
    if known is None:
        entries, offset = [], 0
        for criterion in (*ruleset.deciding, *ruleset.cautions):
            below = tuple(atoms(criterion.when))
            entries.append((criterion, offset, below))
            offset += 1 + 3 * len(below)
        known = tuple(entries)
        object.__setattr__(ruleset, "layout", known)  # a cache on an immutable object
    return known


class Decision:
    """One patient against one rule set: the status, the trace, what would decide it.

    `record` is the trace exactly as the evaluator wrote it, one flat tuple: for each
    criterion in reading order (deciding ones, then cautions) its truth value, then for each
    of its atoms the value used (a FeatureValue, None when unknown), the atom's truth value
    and the margin to the threshold. One tuple instead of an object per atom and criterion
    is what lets the compiled evaluator keep pace with a hand-written function; `criteria`
    and `cautions` are the same record as objects, built when first read.
    """

    __slots__ = ("_results", "missing", "record", "ruleset", "status", "to_confirm")

    def __init__(
        self,
        ruleset: RuleSet,
        status: Status,
        record: tuple[object, ...],
        missing: tuple[str, ...] = (),  # values to measure that would decide indeterminate
        to_confirm: tuple[str, ...] = (),  # clinician confirmations that would decide it
    ) -> None:
        self.ruleset = ruleset
        self.status = status
        self.record = record
        self.missing = missing
        self.to_confirm = to_confirm
        self._results: tuple[CriterionResult, ...] | None = None

    def __repr__(self) -> str:
        return f"Decision({self.ruleset.id!r}, {self.status.value}, missing={self.missing})"

    @property
    def criteria(self) -> tuple[CriterionResult, ...]:
        """The deciding criteria's results: the indication first, then inclusions, exclusions."""
        return self._every()[: len(self.ruleset.deciding)]

    @property
    def cautions(self) -> tuple[CriterionResult, ...]:
        return self._every()[len(self.ruleset.deciding) :]

    def _every(self) -> tuple[CriterionResult, ...]:
        if self._results is None:
            record = self.record
            self._results = tuple(
                CriterionResult(
                    criterion,
                    _RESULT[record[offset]],  # type: ignore[index]
                    tuple(
                        AtomTrace(atom, *record[at : at + 3])  # type: ignore[arg-type]
                        for atom, at in zip(below, _positions(offset, below), strict=True)
                    ),
                )
                for criterion, offset, below in layout(self.ruleset)
            )
        return self._results


def _positions(offset: int, below: tuple[Atom, ...]) -> range:
    """Where each atom's (value, truth, margin) starts in the record, after the criterion's."""
    return range(offset + 1, offset + 1 + 3 * len(below), 3)


def decide(ruleset: RuleSet, values: Values) -> Decision:
    """Evaluate one patient against one rule set: status, full trace, missing features.

    Runs the rule set's compiled function (codegen.py), built on first use and kept with the
    rule set: a reload builds new rule sets, so it can never be stale."""
    compiled = ruleset.compiled
    if compiled is None:
        # Imported here: codegen builds on this module's types.
        from app.engine.codegen import compile_ruleset  # noqa: PLC0415

        compiled = compile_ruleset(ruleset)
        object.__setattr__(ruleset, "compiled", compiled)  # a cache on an immutable object
    result: Decision = compiled(values)
    return result


def interpret(ruleset: RuleSet, values: Values) -> Decision:
    """The reference evaluator: the same Decision as `decide`, by walking the rule tree.

    Slow and plain on purpose. It is the oracle the compiled functions are tested against,
    and it is what `decide` means."""
    record: list[object] = []
    for criterion, _, below in layout(ruleset):
        record.append(truth(criterion.when, values))
        for atom in below:
            record += _trace(atom, values)
    decision = Decision(ruleset, Status.ELIGIBLE, tuple(record))
    decision.status = status = _status(decision.criteria)
    if status is not Status.INDETERMINATE:
        return decision
    undecided = (r.criterion.when for r in decision.criteria if r.result is Result.UNKNOWN)
    unknown = dict.fromkeys(f for node in undecided for f in deciding_unknowns(node, values))
    decision.missing = tuple(f for f in unknown if f not in ruleset.confirmations)
    decision.to_confirm = tuple(f for f in unknown if f in ruleset.confirmations)
    return decision


def _trace(atom: Atom, values: Values) -> tuple[FeatureValue | None, Truth, float | None]:
    given = values.get(atom.feature)
    if given is None:
        return None, None, None
    value, margin = given.value, None
    if isinstance(atom, Between):
        margin = min(value - atom.low, atom.high - value)  # type: ignore[operator]
    elif isinstance(atom, Compare) and isinstance(atom.value, float) and type(value) is float:
        margin = value - atom.value
    return given, _atom_truth(atom, values), margin


def truth(node: Node, values: Values) -> Truth:
    """The value of any node of a tree, without a trace (for `missing` and derivations)."""
    if isinstance(node, All | AnyOf):
        decisive = isinstance(node, AnyOf)
        results = [truth(child, values) for child in node.children]
        if decisive in results:
            return decisive
        return None if None in results else not decisive
    if isinstance(node, Not):
        inner = truth(node.child, values)
        return None if inner is None else not inner
    return _atom_truth(node, values)


def _atom_truth(atom: Atom, values: Values) -> Truth:
    given = values.get(atom.feature)
    if given is None:
        return None
    value = given.value
    if isinstance(atom, Compare):
        return _COMPARE[atom.op](value, atom.value)
    if isinstance(atom, Between):
        return atom.low <= value <= atom.high  # type: ignore[operator]
    return value in atom.values


def deciding_unknowns(node: Node, values: Values) -> list[str]:
    """Features whose missing values keep `node` unknown.

    Under Kleene logic a node is unknown only through its unknown children (a known child can
    neither have decided it nor be changed), so the deciding features are those of the
    unknown atoms reached through unknown nodes.
    """
    if isinstance(node, All | AnyOf):
        return [
            f
            for child in node.children
            if truth(child, values) is None
            for f in deciding_unknowns(child, values)
        ]
    if isinstance(node, Not):
        return deciding_unknowns(node.child, values)
    return [node.feature] if values.get(node.feature) is None else []


def decisive(decision: Decision) -> list[CriterionResult]:
    """The criteria that settled a not_indicated or ineligible status."""
    reasons = set(settled_by(decision))
    return [r for r in decision.criteria if r.criterion in reasons]


def settled_by(decision: Decision) -> list[Criterion]:
    """`decisive`'s criteria, read straight from the record (the answer's `reasons`)."""
    if decision.status is Status.NOT_INDICATED:
        return [decision.ruleset.indication_criterion]
    if decision.status is not Status.INELIGIBLE:
        return []
    record, ruleset = decision.record, decision.ruleset
    deciding = layout(ruleset)[1 : len(ruleset.deciding)]
    return [
        criterion
        for criterion, offset, _ in deciding
        if record[offset] is (criterion.kind is CriterionKind.EXCLUSION)
    ]


def _failing(criterion: Criterion) -> Result:
    return Result.MET if criterion.kind is CriterionKind.EXCLUSION else Result.NOT_MET


def _status(criteria: tuple[CriterionResult, ...]) -> Status:
    """DESIGN.md's statuses; `eligible` only when every deciding criterion is known."""
    indication, rest = criteria[0], criteria[1:]
    if indication.result is Result.NOT_MET:
        return Status.NOT_INDICATED
    if any(r.result is _failing(r.criterion) for r in rest):
        return Status.INELIGIBLE
    if any(r.result is Result.UNKNOWN for r in criteria):
        return Status.INDETERMINATE
    return Status.ELIGIBLE
