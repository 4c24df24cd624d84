"""A decision's full view written as JSON bytes straight from its record: `present.decision`'s
twin for the API's hot path, byte for byte the same as `present.render` of what it builds.

An answer for every shipped rule set is ~340 kB, and building its ~200 criterion entries as
dicts and then serialising them was a third of a recorded evaluation's Python time (py-spy
on the worker under wrk; README "Performance"). A criterion entry is mostly its text (id,
title, expression, citations, source, note, origin): here that part is serialised once per
loaded criterion, and per request only the patient's part is written (each value once,
however many criteria compare it) and joined to it. The answer keeps its dict envelope, so
`render` still writes it in one call, splicing these bytes in as orjson Fragments.
`present.decision` stays the reference: the dicts a channel reads (the form, the cards) and
the re-rendering that proves a record's digest come from it, and tests/engine/test_wire.py
holds the two to the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from app.engine import present
from app.engine.codegen import Source
from app.engine.evaluate import Decision, Layout, Status, layout
from app.engine.inputs import INPUT, FeatureValue
from app.engine.model import Criterion, CriterionKind, Feature, RuleBase, RuleSet

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


# A rule set's writer: its criteria and cautions as two JSON arrays, from a record and the
# request's memo; and the ids of the criteria that make an `ineligible` (evaluate.settled_by).
Writer = Callable[[tuple[Any, ...], _Memo], tuple[orjson.Fragment, orjson.Fragment]]
Failing = Callable[[tuple[Any, ...]], list[str]]


def _writer(ruleset: RuleSet, features: dict[str, Feature]) -> tuple[Writer, Failing]:
    known: tuple[Writer, Failing] | None = ruleset.writer
    if known is None:
        known = _compile(ruleset, features)
        object.__setattr__(ruleset, "writer", known)  # a cache on an immutable object
    return known


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
    src.emit(1, "def write(record, memo):")
    src.emit(2, f"m = dumps(({''.join(f'record[{at}], ' for at in margins)}))[1:-1].split(b',')")
    src.emit(2, "get = memo.get")
    atom = 0  # the index of the criterion's first atom among all the rule set's atoms
    for name, part in (("criteria", shape[:deciding]), ("cautions", shape[deciding:])):
        src.emit(2, "parts = []" if part else "parts = [b'[]']")
        for i, (criterion, offset, below) in enumerate(part):
            separator = b"," if i else b"["
            _criterion(src, _wire(criterion, features), offset, atom, separator)
            atom += len(below)
        if part:
            src.emit(2, "parts.append(b']')")
        src.emit(2, f"{name} = Fragment(b''.join(parts))")
    src.emit(2, "return criteria, cautions")
    _failing(src, shape[1:deciding])
    body = "\n".join(src.lines)
    bound = {**src.names, "dumps": orjson.dumps, "Fragment": orjson.Fragment, "value": _value}
    bound["AR"] = _ATOM_RESULT
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


def decision(
    result: Decision, rules: RuleBase, reason: present.NotAssessedOut | None, memo: _Memo
) -> dict[str, Any]:
    """`present.marked(present.decision(result, rules), reason)` as `render` writes it: the
    same keys in the same order, its criteria and cautions as bytes. `memo` is the request's
    (its values' bytes, shared by every rule set of the answer)."""
    ruleset, status = result.ruleset, result.status
    static = present._static(ruleset, rules)
    write, failing = ruleset.writer or _writer(ruleset, rules.features)
    criteria, cautions = write(result.record, memo)
    if status is Status.INELIGIBLE:
        reasons = failing(result.record)
    elif status is Status.NOT_INDICATED:
        reasons = [ruleset.indication_criterion.id]
    else:
        reasons = []
    out: dict[str, Any] = {
        "ruleset": static["ruleset"],
        "status": status.value,
        "reasons": reasons,
        "criteria": criteria,
        "cautions": cautions,
        "risks": static["risks"],
        "outcomes": static["outcomes"],
        "missing": list(result.missing),
        "to_confirm": present.to_confirm(result, rules.features) if result.to_confirm else [],
        "citations": static["citations"],
        "notes": static["notes"],
        "assessed": reason is None,
    }
    if reason is not None:
        out["not_assessed"] = reason
    return out
