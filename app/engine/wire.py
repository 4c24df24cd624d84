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

from typing import Any

import orjson

from app.engine import present
from app.engine.evaluate import Decision, Layout, layout, settled_by
from app.engine.inputs import INPUT, FeatureValue
from app.engine.model import Criterion, Feature, RuleBase

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


def _entries(
    layout: Layout, record: tuple[Any, ...], features: dict[str, Feature], memo: _Memo
) -> orjson.Fragment:
    """`present._entry` of each criterion, as one JSON array: each criterion's result and
    each atom's value, margin and result, read from the record at the criterion's offset.
    One loop and one join per array: this runs for every criterion of every answer."""
    parts = [b"["]
    dumps = orjson.dumps  # a margin: a float or None
    for criterion, offset, _ in layout:
        heads, unknown, atoms = criterion.wire or _wire(criterion, features)
        if len(parts) > 1:
            parts.append(b",")
        at = offset + 1
        if len(atoms) == 1:  # most criteria: one comparison
            given = record[at]
            if given is None:
                parts.append(unknown)
                continue
            value, tail = memo.get(id(given)) or _value(given, memo)
            parts += (heads[record[offset]], atoms[0][0], value, dumps(record[at + 2]))
            parts += (_ATOM_RESULT[record[at + 1]], tail, b"]}")
            continue
        if record[at : at + 3 * len(atoms) : 3].count(None) == len(atoms):
            parts.append(unknown)
            continue
        parts.append(heads[record[offset]])
        for i, (atom_head, atom_unknown) in enumerate(atoms):
            given = record[at]
            if i:
                parts.append(b",")
            if given is None:
                parts.append(atom_unknown)
            else:
                value, tail = memo.get(id(given)) or _value(given, memo)
                parts += (atom_head, value, dumps(record[at + 2]))
                parts += (_ATOM_RESULT[record[at + 1]], tail)
            at += 3
        parts.append(b"]}")
    parts.append(b"]")
    return orjson.Fragment(b"".join(parts))


def decision(
    result: Decision, rules: RuleBase, reason: present.NotAssessedOut | None, memo: _Memo
) -> dict[str, Any]:
    """`present.marked(present.decision(result, rules), reason)` as `render` writes it: the
    same keys in the same order, its criteria and cautions as bytes. `memo` is the request's
    (its values' bytes, shared by every rule set of the answer)."""
    static = present._static(result.ruleset, rules)
    record, features = result.record, rules.features
    shape = layout(result.ruleset)
    deciding = len(result.ruleset.deciding)
    out: dict[str, Any] = {
        "ruleset": static["ruleset"],
        "status": result.status.value,
        "reasons": [c.id for c in settled_by(result)],
        "criteria": _entries(shape[:deciding], record, features, memo),
        "cautions": _entries(shape[deciding:], record, features, memo),
        "risks": static["risks"],
        "outcomes": static["outcomes"],
        "missing": list(result.missing),
        "to_confirm": present.to_confirm(result, features) if result.to_confirm else [],
        "citations": static["citations"],
        "notes": static["notes"],
        "assessed": reason is None,
    }
    if reason is not None:
        out["not_assessed"] = reason
    return out
