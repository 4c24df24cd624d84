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
    In,
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


Traced = tuple[Truth, tuple[AtomTrace, ...]]
Plan = Callable[[Values], Traced]


def plan(criterion: Criterion) -> Plan:
    """The criterion's tree compiled once into nested closures, each returning its truth
    value and the trace of the atoms below it, in reading order.

    A closure per node instead of a dispatch on the node's type at every call more than
    halves the cost of a criterion; the trace is still recorded by the code that evaluates.
    """
    compiled: Plan | None = criterion.plan
    if compiled is None:
        compiled = _compile(criterion.when)
        object.__setattr__(criterion, "plan", compiled)  # a cache on an immutable object
    return compiled


def _compile(node: Node) -> Plan:
    if isinstance(node, All | AnyOf):
        return _compile_connective(node)
    if isinstance(node, Not):
        child = _compile(node.child)

        def negation(values: Values) -> Traced:
            inner, trace = child(values)
            return (None if inner is None else not inner), trace

        return negation
    if isinstance(node, Compare):
        return _compile_compare(node)
    if isinstance(node, Between):
        return _compile_between(node)
    return _compile_in(node)


def _compile_connective(node: All | AnyOf) -> Plan:
    """Kleene AND / OR. Every child is evaluated (no short-circuit): the trace shows every
    value a clinician might ask about."""
    children = tuple(_compile(child) for child in node.children)
    decisive = isinstance(node, AnyOf)  # OR: any TRUE decides; AND: any FALSE decides

    def connective(values: Values) -> Traced:
        unknown = settled = False
        trace: tuple[AtomTrace, ...] = ()
        for child in children:
            result, below = child(values)
            trace += below
            if result is None:
                unknown = True
            elif result is decisive:
                settled = True
        if settled:
            return decisive, trace
        return (None if unknown else not decisive), trace

    return connective


def _compile_compare(atom: Compare) -> Plan:
    feature, threshold, compare = atom.feature, atom.value, _COMPARE[atom.op]
    numeric = isinstance(threshold, float)
    absent = (None, (AtomTrace(atom, None, None, None),))  # the same for every patient

    def comparison(values: Values) -> Traced:
        given = values.get(feature)
        if given is None:
            return absent
        value = given.value
        result = compare(value, threshold)
        margin = value - threshold if numeric and type(value) is float else None  # type: ignore[operator]
        return result, (AtomTrace(atom, given, result, margin),)

    return comparison


def _compile_between(atom: Between) -> Plan:
    feature, low, high = atom.feature, atom.low, atom.high
    absent = (None, (AtomTrace(atom, None, None, None),))

    def between(values: Values) -> Traced:
        given = values.get(feature)
        if given is None:
            return absent
        value = given.value
        assert isinstance(value, float)
        result = low <= value <= high
        return result, (AtomTrace(atom, given, result, min(value - low, high - value)),)

    return between


def _compile_in(atom: In) -> Plan:
    feature, allowed = atom.feature, frozenset(atom.values)
    absent = (None, (AtomTrace(atom, None, None, None),))

    def membership(values: Values) -> Traced:
        given = values.get(feature)
        if given is None:
            return absent
        result = given.value in allowed
        return result, (AtomTrace(atom, given, result, None),)

    return membership


_RESULT = {True: Result.MET, False: Result.NOT_MET, None: Result.UNKNOWN}


def evaluate_criterion(criterion: Criterion, values: Values) -> CriterionResult:
    truth, trace = plan(criterion)(values)
    return CriterionResult(criterion, _RESULT[truth], trace)


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
    criteria = tuple([evaluate_criterion(c, values) for c in ruleset.deciding])
    cautions = tuple([evaluate_criterion(c, values) for c in ruleset.cautions])
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
