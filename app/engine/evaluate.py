"""Kleene three-valued evaluation of a rule set, with the trace built by the evaluator itself.

Truth values are Python's True / False / None (unknown). A missing feature is unknown, and
unknown propagates by Kleene's strong tables, which are also SQL's:

    AND: any False -> False, else any None -> None, else True
    OR:  any True  -> True,  else any None -> None, else False
    NOT: None -> None

Every child is evaluated (no short-circuit) so the trace shows every value a clinician might
ask about. That costs a few hundred nanoseconds per comparison and buys a complete
explanation: the trace is what the evaluator did, not a second evaluator's reconstruction.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

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


@dataclass(slots=True)
class AtomTrace:
    """One comparison as evaluated: the value used, the threshold, the margin to it."""

    atom: Atom
    value: FeatureValue | None
    result: Truth
    margin: float | None


@dataclass(slots=True)
class CriterionResult:
    criterion: Criterion
    result: Result
    trace: tuple[AtomTrace, ...]


@dataclass(slots=True)
class Decision:
    ruleset: RuleSet
    status: Status
    criteria: tuple[CriterionResult, ...]
    cautions: tuple[CriterionResult, ...]
    missing: tuple[str, ...]  # values to measure that would decide an indeterminate status
    to_confirm: tuple[str, ...] = ()  # clinician confirmations that would decide it


def _atom(atom: Atom, values: Values, trace: list[AtomTrace]) -> Truth:
    given = values.get(atom.feature)
    if given is None:
        trace.append(AtomTrace(atom, None, None, None))
        return None
    value = given.value
    margin: float | None = None
    if isinstance(atom, Compare):
        result = _COMPARE[atom.op](value, atom.value)
        if isinstance(atom.value, float) and isinstance(value, float):
            margin = value - atom.value
    elif isinstance(atom, Between):
        assert isinstance(value, float)
        result = atom.low <= value <= atom.high
        margin = min(value - atom.low, atom.high - value)
    else:
        result = value in atom.values
    trace.append(AtomTrace(atom, given, result, margin))
    return result


def _node(node: Node, values: Values, trace: list[AtomTrace]) -> Truth:
    if isinstance(node, All):
        results = [_node(child, values, trace) for child in node.children]
        if False in results:
            return False
        return None if None in results else True
    if isinstance(node, AnyOf):
        results = [_node(child, values, trace) for child in node.children]
        if True in results:
            return True
        return None if None in results else False
    if isinstance(node, Not):
        inner = _node(node.child, values, trace)
        return None if inner is None else not inner
    return _atom(node, values, trace)


def evaluate_criterion(criterion: Criterion, values: Values) -> CriterionResult:
    trace: list[AtomTrace] = []
    truth = _node(criterion.when, values, trace)
    return CriterionResult(criterion, as_result(truth), tuple(trace))


def truth(node: Node, values: Values) -> Truth:
    """The value of a tree without building a trace."""
    return _node(node, values, [])


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
    return [node.feature] if node.feature not in values else []


def decisive(decision: Decision) -> list[CriterionResult]:
    """The criteria that settled a not_indicated or ineligible status."""
    if decision.status is Status.NOT_INDICATED:
        return [decision.criteria[0]]
    if decision.status is Status.INELIGIBLE:
        return [r for r in decision.criteria[1:] if r.result is _failing(r.criterion)]
    return []


def _failing(criterion: Criterion) -> Result:
    return Result.MET if criterion.kind is CriterionKind.EXCLUSION else Result.NOT_MET


def decide(ruleset: RuleSet, values: Values) -> Decision:
    """Evaluate one patient against one rule set: status, full trace, missing features."""
    criteria = tuple(evaluate_criterion(c, values) for c in ruleset.deciding)
    cautions = tuple(evaluate_criterion(c, values) for c in ruleset.cautions)
    status = _status(criteria)
    if status is not Status.INDETERMINATE:
        return Decision(ruleset, status, criteria, cautions, ())
    undecided = (r.criterion.when for r in criteria if r.result is Result.UNKNOWN)
    unknown = dict.fromkeys(f for node in undecided for f in deciding_unknowns(node, values))
    confirm = ruleset.confirmations
    if not confirm:
        return Decision(ruleset, status, criteria, cautions, tuple(unknown))
    return Decision(
        ruleset,
        status,
        criteria,
        cautions,
        tuple(f for f in unknown if f not in confirm),
        tuple(f for f in unknown if f in confirm),
    )


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
