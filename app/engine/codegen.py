"""Each rule set compiled into one specialised Python function, as query compilers do.

The generated function reads each feature once, evaluates every comparison inline with its
threshold as a constant, combines them with Kleene's tables as straight-line code, records
the same trace as the reference interpreter (`evaluate.interpret`: every criterion's truth
value, the value used, the result and the margin of every atom in reading order, the features
that would decide an indeterminate status) and builds the Decision. No dispatch on node
types, no call per node, no object per atom: the whole trace is one tuple display of locals
already computed (Decision.record).

The source is kept on the compiled function (`__source__`) for a reader who wants to see
what runs, and `tests/engine/test_compiled.py` holds it to the interpreter on every shipped
rule set and on random trees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from app.engine.evaluate import Decision, Status, Values, layout
from app.engine.model import (
    All,
    AnyOf,
    Atom,
    Between,
    Criterion,
    CriterionKind,
    In,
    Node,
    Not,
    RuleSet,
    atoms,
)

Compiled = Callable[[Values], Decision]


class Source:
    """The generated function's text, and the objects it refers to by name.

    The objects become the parameters of an enclosing factory, so the function reads them as
    closure cells (as fast as locals), never as globals."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self.count = 0

    def bind(self, prefix: str, value: Any) -> str:
        self.count += 1
        name = f"{prefix}{self.count}"
        self.names[name] = value
        return name

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


class _RuleSetCompiler:
    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.src = Source()
        self.given: dict[str, str] = {}  # feature id -> local holding its FeatureValue or None
        self.truths: dict[int, str] = {}  # id(node) -> local holding its truth value

    def build(self) -> tuple[str, dict[str, Any]]:
        src, rs = self.src, self.ruleset
        src.emit(1, "def decide(values):")
        src.emit(2, "get = values.get")
        every = (a.feature for c in (*rs.deciding, *rs.cautions) for a in atoms(c.when))
        for ident in dict.fromkeys(every):
            self.given[ident] = local = src.fresh("g")
            src.emit(2, f"{local} = get({ident!r})")
        # evaluate.layout's order: each criterion's truth, then its atoms' (value, truth, margin)
        record = [entry for c, _, _ in layout(rs) for entry in self._criterion(c)]
        src.emit(2, f"record = ({''.join(entry + ', ' for entry in record)})")
        self._status()
        return "\n".join(src.lines), src.names

    def _criterion(self, criterion: Criterion) -> list[str]:
        """Evaluate one criterion; the expressions of its entries in the record."""
        entries: list[str] = []
        truth = self._node(criterion.when, entries)
        self.truths[id(criterion)] = truth
        return [truth, *entries]

    def _node(self, node: Node, entries: list[str]) -> str:
        """Emit the statements evaluating `node`; the local that holds its truth value."""
        src = self.src
        if isinstance(node, Not):
            inner = self._node(node.child, entries)
            out = src.fresh("n")
            src.emit(2, f"{out} = None if {inner} is None else not {inner}")
        elif isinstance(node, All | AnyOf):
            children = [self._node(child, entries) for child in node.children]
            decisive = isinstance(node, AnyOf)  # OR: any True decides; AND: any False decides
            out = src.fresh("n")
            settled = " or ".join(f"{c} is {decisive}" for c in children)
            unknown = " or ".join(f"{c} is None" for c in children)
            otherwise = f"None if {unknown} else {not decisive}"
            src.emit(2, f"{out} = {decisive} if {settled} else {otherwise}")
        else:
            out = self._atom(node, entries)
        self.truths[id(node)] = out
        return out

    def _atom(self, atom: Atom, entries: list[str]) -> str:
        src = self.src
        given = self.given[atom.feature]
        test, margin = _comparison(atom, src)
        out = src.fresh("r")
        src.emit(2, f"if {given} is None:")
        src.emit(3, f"{out} = None")
        if margin != "None":
            kept = src.fresh("m")
            src.emit(3, f"{kept} = None")
        src.emit(2, "else:")
        src.emit(3, f"v = {given}.value")
        src.emit(3, f"{out} = {test}")
        if margin != "None":
            src.emit(3, f"{kept} = {margin}")
            margin = kept
        entries += [given, out, margin]
        return out

    def _status(self) -> None:
        """DESIGN.md's statuses, first match wins; `missing` only when indeterminate."""
        src, rs = self.src, self.ruleset
        indication = self.truths[id(rs.indication_criterion)]
        failing = [
            f"{self.truths[id(c)]} is {c.kind is CriterionKind.EXCLUSION}"
            for c in (*rs.inclusions, *rs.exclusions)
        ]
        unknown = [f"{self.truths[id(c)]} is None" for c in rs.deciding]
        src.emit(2, f"if {indication} is False:")
        src.emit(3, "return Decision(RS, NOT_INDICATED, record)")
        if failing:
            src.emit(2, f"if {' or '.join(failing)}:")
            src.emit(3, "return Decision(RS, INELIGIBLE, record)")
        src.emit(2, f"if not ({' or '.join(unknown)}):")
        src.emit(3, "return Decision(RS, ELIGIBLE, record)")
        src.emit(2, "unknown = []")
        src.emit(2, "add = unknown.append")
        for criterion in rs.deciding:
            self._unknowns(criterion.when, 2)
        src.emit(2, "unknown = tuple(dict.fromkeys(unknown))")
        if not rs.confirmations:
            src.emit(2, "return Decision(RS, INDETERMINATE, record, unknown)")
            return
        src.emit(2, "measure = tuple([f for f in unknown if f not in CONFIRM])")
        src.emit(2, "confirm = tuple([f for f in unknown if f in CONFIRM])")
        src.emit(2, "return Decision(RS, INDETERMINATE, record, measure, confirm)")

    def _unknowns(self, node: Node, indent: int) -> None:
        """`evaluate.deciding_unknowns` as code: the features of the unknown atoms reached
        through unknown nodes, in reading order (a known node can be neither changed nor the
        reason for its parent's unknown)."""
        self.src.emit(indent, f"if {self.truths[id(node)]} is None:")
        if isinstance(node, All | AnyOf):
            for child in node.children:
                self._unknowns(child, indent + 1)
        elif isinstance(node, Not):
            self._unknowns(node.child, indent + 1)
        else:
            self.src.emit(indent + 1, f"add({node.feature!r})")


def _comparison(atom: Atom, src: Source) -> tuple[str, str]:
    """The test on `v` and the margin expression, thresholds written as constants."""
    if isinstance(atom, Between):
        low, high = _literal(atom.low, src), _literal(atom.high, src)
        return f"{low} <= v <= {high}", f"min(v - {low}, {high} - v)"
    if isinstance(atom, In):
        return f"v in {src.bind('K', frozenset(atom.values))}", "None"
    threshold = _literal(atom.value, src)
    test = f"v {atom.op.value} {threshold}"
    if isinstance(atom.value, float):  # as the interpreter: a margin only for a float value
        return test, f"v - {threshold} if type(v) is float else None"
    return test, "None"


def _literal(value: object, src: Source) -> str:
    """A constant in the source when its repr reads back exactly, else a bound name."""
    if isinstance(value, bool | str) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    return src.bind("K", value)


_RUNTIME: dict[str, Any] = {
    "Decision": Decision,
    "NOT_INDICATED": Status.NOT_INDICATED,
    "INELIGIBLE": Status.INELIGIBLE,
    "INDETERMINATE": Status.INDETERMINATE,
    "ELIGIBLE": Status.ELIGIBLE,
}


def compile_ruleset(ruleset: RuleSet) -> Compiled:
    """The rule set as one function `values -> Decision` (the source is on `__source__`)."""
    body, names = _RuleSetCompiler(ruleset).build()
    bound = {**_RUNTIME, **names, "RS": ruleset, "CONFIRM": ruleset.confirmations}
    source = f"def factory({', '.join(bound)}):\n{body}\n    return decide\n"
    # Only the builtins the generated source calls.
    builtins = {"min": min, "type": type, "float": float, "tuple": tuple, "dict": dict}
    namespace: dict[str, Any] = {"__builtins__": builtins}
    exec(compile(source, f"<rule set {ruleset.id} {ruleset.version}>", "exec"), namespace)  # noqa: S102 - our own generated source, built from a validated rule set
    function: Compiled = namespace["factory"](**bound)
    function.__source__ = source  # type: ignore[attr-defined]
    return function
