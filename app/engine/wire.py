"""The full view's decisions written as JSON bytes straight from their records:
`present.decision`'s twin for the API's hot path, byte for byte the same as `present.render`
of what `present.marked(present.decision(...))` builds.

An answer for every shipped rule set is ~340 kB, and building its ~200 criterion entries as
dicts and then serialising them was a third of a recorded evaluation's Python time (py-spy
on the worker under wrk; README "Performance"). A criterion entry is mostly its text (id,
title, expression, citations, source, note, origin): here that part is serialised once per
loaded criterion, and per request only the patient's part is written (each value once,
however many criteria compare it) and joined to it. Each rule set's writer is compiled once
into straight-line code (as codegen.py compiles its evaluation), and a decision's envelope
(the rule set's reference, risks, outcomes, citations and notes, serialised once) is joined
around it, so that the answer's `results` are one join of bytes that `render` splices in as
one orjson Fragment: no dict per decision, no copy of each array, no buffer grown piecemeal.
`present.decision` stays the reference: the dicts a channel reads (the form, the cards) and
the re-rendering that proves a record's digest come from it, and tests/engine/test_wire.py
holds the two to the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from app.engine import present
from app.engine.codegen import Source
from app.engine.evaluate import Decision, Layout, Status, layout
from app.engine.inputs import INPUT, FeatureValue
from app.engine.model import Criterion, CriterionKind, Feature, RuleBase, RuleSet

_render = present.render
_RESULT = {True: b'"met"', False: b'"not_met"', None: b'"unknown"'}
_ATOM_RESULT = {k: b',"result":' + v for k, v in _RESULT.items()}
_INPUT = present.render(present._INPUT)
_ATOM_STATIC = 5  # an atom's keys before the patient's (feature … unit): FeatureUse's order

# Per criterion: its bytes up to its first atom (`…,"result":"met","features":[`) by its
# result, its whole entry when every value is unknown, and for each atom its bytes up to its
# value and its whole entry when unknown.
_Wire = tuple[dict[bool | None, bytes], bytes, tuple[tuple[bytes, bytes], ...]]
# Per value of a request: its bytes up to the margin, and after the result.
_Memo = dict[int, tuple[bytes, bytes]]


def _wire(criterion: Criterion, features: dict[str, Feature]) -> _Wire:
    known: _Wire | None = criterion.wire
    if known is None:
        spec, statics, unknown = present._shown(criterion, features)
        atoms = tuple(
            (_head(dict(list(atom.items())[:_ATOM_STATIC]), b'"value":'), present.render(atom))
            for _, atom in statics
        )
        head = _head(spec, b'"result":')
        heads = {k: head + v + b',"features":[' for k, v in _RESULT.items()}
        known = (heads, present.render(unknown), atoms)
        object.__setattr__(criterion, "wire", known)  # a cache on an immutable object
    return known


def _head(static: Any, key: bytes) -> bytes:
    """The object's bytes, left open for `key` and its value."""
    return present.render(static)[:-1] + b"," + key


def _value(given: FeatureValue, memo: _Memo) -> tuple[bytes, bytes]:
    """A value's bytes, written once per request however many atoms compare it."""
    provenance = given.provenance
    shown = _INPUT if provenance is INPUT else present.render(present._provenance(provenance))
    found = (
        present.render(given.value) + b',"margin":',
        b',"given":'
        + present.render({"value": given.given_value, "unit": given.given_unit})
        + b',"provenance":'
        + shown
        + b"}",
    )
    memo[id(given)] = found
    return found


Writer = Callable[[tuple[Any, ...], _Memo, list[bytes]], None]
Failing = Callable[[tuple[Any, ...]], list[str]]


@dataclass(frozen=True, slots=True)
class _Written:
    """A rule set compiled for writing, within one rule base (its citations and units): the
    writer of its criteria and cautions, the reasons of an `ineligible`, and the envelope's
    bytes around what depends on the patient, in DecisionOut's order."""

    rules: RuleBase
    write: Writer  # appends `,"criteria":[…],"cautions":[…]` from a record
    failing: Failing  # evaluate.settled_by for an ineligible, compiled
    open: bytes  # {"ruleset":{…},"status":
    statuses: dict[Status, bytes]  # "ineligible","reasons":
    indication: bytes  # the reasons of a not_indicated: ["<its indication criterion>"]
    middle: bytes  # ,"risks":[…],"outcomes":[…],"missing":
    close: bytes  # ,"citations":[…],"notes":[…],"assessed":


def results(
    answered: Iterable[tuple[Decision, present.NotAssessedOut | None]], rules: RuleBase
) -> orjson.Fragment:
    """The full view's `results` array: each decision, with why it is not assessed if it is
    set apart, as `render` writes `present.marked(present.decision(...), reason)`. The
    values' bytes are written once for the whole answer, however many rule sets read them."""
    memo: _Memo = {}
    parts = [b"["]
    for i, (result, reason) in enumerate(answered):
        if i:
            parts.append(b",")
        _decision(result, rules, reason, memo, parts)
    parts.append(b"]")
    return orjson.Fragment(b"".join(parts))


def decision(
    result: Decision,
    rules: RuleBase,
    reason: present.NotAssessedOut | None = None,
    memo: _Memo | None = None,
) -> orjson.Fragment:
    """One decision as `results` writes it (`memo`: the answer's values' bytes, if shared)."""
    parts: list[bytes] = []
    _decision(result, rules, reason, {} if memo is None else memo, parts)
    return orjson.Fragment(b"".join(parts))


def _decision(
    result: Decision,
    rules: RuleBase,
    reason: present.NotAssessedOut | None,
    memo: _Memo,
    parts: list[bytes],
) -> None:
    ruleset, status, record = result.ruleset, result.status, result.record
    written = ruleset.writer
    if written is None or written.rules is not rules:
        written = _written(ruleset, rules)
    parts += (written.open, written.statuses[status])
    if status is Status.INELIGIBLE:
        parts.append(_render(written.failing(record)))
    else:
        parts.append(written.indication if status is Status.NOT_INDICATED else b"[]")
    written.write(record, memo, parts)
    confirm = present.to_confirm(result, rules.features) if result.to_confirm else []
    parts += (written.middle, _render(result.missing), b',"to_confirm":', _render(confirm))
    parts.append(written.close)
    if reason is None:
        parts.append(b"true}")
    else:
        parts += (b'false,"not_assessed":', _render(reason), b"}")


def _written(ruleset: RuleSet, rules: RuleBase) -> _Written:
    """The rule set compiled for `rules`, kept with it (a reload builds new rule sets)."""
    static = present._static(ruleset, rules)
    risks, outcomes = _render(static["risks"]), _render(static["outcomes"])
    citations, notes = _render(static["citations"]), _render(static["notes"])
    write, failing = _compile(ruleset, rules.features)
    written = _Written(
        rules=rules,
        write=write,
        failing=failing,
        open=b'{"ruleset":' + _render(static["ruleset"]) + b',"status":',
        statuses={s: _render(s.value) + b',"reasons":' for s in Status},
        indication=_render([ruleset.indication_criterion.id]),
        middle=b',"risks":' + risks + b',"outcomes":' + outcomes + b',"missing":',
        close=b',"citations":' + citations + b',"notes":' + notes + b',"assessed":',
    )
    object.__setattr__(ruleset, "writer", written)  # a cache on an immutable object
    return written


def _compile(ruleset: RuleSet, features: dict[str, Feature]) -> tuple[Writer, Failing]:
    """`present._entry` of every criterion, as straight-line code (as codegen.py compiles the
    evaluation): each criterion's bytes and offsets are constants, so the writer reads the
    record and the memo and appends, with no loop over the layout, no dispatch on the number
    of atoms and no separator to decide. The margins of all atoms are written by one
    `orjson.dumps` of a tuple and split at its commas (a number or null has none): one call
    instead of one per atom, the same bytes."""
    src, shape = Source(), layout(ruleset)
    deciding = len(ruleset.deciding)
    # Each atom's (value, truth, margin) follows its criterion's truth in the record.
    margins = [offset + 3 + 3 * i for _, offset, below in shape for i in range(len(below))]
    src.emit(1, "def write(record, memo, parts):")
    src.emit(2, f"m = dumps(({''.join(f'record[{at}], ' for at in margins)}))[1:-1].split(b',')")
    src.emit(2, "get = memo.get")
    atom = 0  # the index of the criterion's first atom among all the rule set's atoms
    for name, part in (("criteria", shape[:deciding]), ("cautions", shape[deciding:])):
        opening = f',"{name}":['.encode()
        if not part:
            src.emit(2, f"parts.append({opening + b']'!r})")
        for i, (criterion, offset, below) in enumerate(part):
            _criterion(src, _wire(criterion, features), offset, atom, b"," if i else opening)
            atom += len(below)
        if part:
            src.emit(2, "parts.append(b']')")
    _failing(src, shape[1:deciding])
    body = "\n".join(src.lines)
    bound = {**src.names, "dumps": orjson.dumps, "value": _value, "AR": _ATOM_RESULT}
    source = f"def factory({', '.join(bound)}):\n{body}\n    return write, failing\n"
    namespace: dict[str, Any] = {"__builtins__": {"id": id}}
    exec(compile(source, f"<writer {ruleset.id} {ruleset.version}>", "exec"), namespace)  # noqa: S102 - our own generated source, built from a validated rule set
    write, failing = namespace["factory"](**bound)
    write.__source__ = source
    return write, failing


def _criterion(src: Source, wire: _Wire, offset: int, atom: int, separator: bytes) -> None:
    """Append one criterion's entry: whole when every value is unknown, else its head by
    result and each atom's static head, value, margin (`m[atom]`), result and tail."""
    heads, unknown, atoms = wire
    givens = [src.fresh("g") for _ in atoms]
    for i, given in enumerate(givens):
        src.emit(2, f"{given} = record[{offset + 1 + 3 * i}]")
    src.emit(2, f"if {' and '.join(f'{g} is None' for g in givens)}:")
    src.emit(3, f"parts.append({src.bind('U', separator + unknown)})")
    src.emit(2, "else:")
    if len(atoms) == 1:  # most criteria: the atom's head joins the criterion's, one append
        head = src.bind("H", {k: separator + v + atoms[0][0] for k, v in heads.items()})
        src.emit(3, f"shown, tail = get(id({givens[0]})) or value({givens[0]}, memo)")
        result = f"AR[record[{offset + 2}]]"
        src.emit(
            3, f"parts += ({head}[record[{offset}]], shown, m[{atom}], {result}, tail, b']}}')"
        )
        return
    head = src.bind("H", {k: separator + v for k, v in heads.items()})
    src.emit(3, f"parts.append({head}[record[{offset}]])")
    for i, ((atom_head, atom_unknown), given) in enumerate(zip(atoms, givens, strict=True)):
        comma = b"," if i else b""
        src.emit(3, f"if {given} is None:")
        src.emit(4, f"parts.append({src.bind('A', comma + atom_unknown)})")
        src.emit(3, "else:")
        src.emit(4, f"shown, tail = get(id({given})) or value({given}, memo)")
        result = f"AR[record[{offset + 2 + 3 * i}]]"
        static = src.bind("A", comma + atom_head)
        src.emit(4, f"parts += ({static}, shown, m[{atom + i}], {result}, tail)")
    src.emit(3, "parts.append(b']}')")


def _failing(src: Source, shape: Layout) -> None:
    """`evaluate.settled_by` for an `ineligible`: the inclusions not met, exclusions met."""
    src.emit(1, "def failing(record):")
    src.emit(2, "out = []")
    for criterion, offset, _ in shape:
        fails = criterion.kind is CriterionKind.EXCLUSION
        src.emit(2, f"if record[{offset}] is {fails}:")
        src.emit(3, f"out.append({criterion.id!r})")
    src.emit(2, "return out")
