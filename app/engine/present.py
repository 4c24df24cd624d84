"""Decisions and rule sets as the API's JSON (plain dicts), shared by the API and the CLI.

Kept pure and dict-based so `eligo evaluate --json` prints byte-for-byte what the API returns,
and so the hot path does not pay for building and re-validating response models. What does
not depend on the patient (a criterion's text and citations, a rule set's risks and references)
is built once per loaded object and cached: rule objects hash by identity, so a reload simply
starts new cache entries. Enum members are emitted as-is: they are `str`, and JSON writes them
as their value.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache
from typing import Any

import orjson

from app.engine.evaluate import Decision, Result, layout, settled_by
from app.engine.inputs import INPUT, FeatureValue, Provenance
from app.engine.model import Atom, Between, Compare, Criterion, Feature, RuleBase, RuleSet, atoms
from app.engine.schema import EvidenceSpec, FactSpec


def ruleset_ref(ruleset: RuleSet) -> dict[str, Any]:
    return {
        "id": ruleset.id,
        "version": ruleset.version,
        "hash": ruleset.hash,
        "title": ruleset.title,
        "therapy": ruleset.therapy,
        "indication": ruleset.indication,
        "protocol": ruleset.protocol,
        "source": ruleset.source,
        "review_status": ruleset.review_status,
        "review_note": ruleset.review_note,
    }


def _threshold(atom: Atom) -> Any:
    if isinstance(atom, Between):
        return {"low": atom.low, "high": atom.high}
    if isinstance(atom, Compare):
        return atom.value
    return list(atom.values)


def _comparison(atom: Atom) -> str:
    if isinstance(atom, Compare):
        return atom.op
    return "between" if isinstance(atom, Between) else "in"


# What a criterion's entry says whatever the patient (criterion_spec), and per atom the
# same (feature, expression, comparison, threshold, unit) and its whole entry when the value
# is unknown, in the order the evaluator traces the atoms (reading order, every atom, no
# short-circuit). Built once per criterion and kept on it (`Criterion.shown`: a reload builds
# new criteria). Answers share these objects: nothing mutates an answer once built.
_Static = tuple[str, str, str, Any, str | None]
_Shown = tuple[dict[str, Any], tuple[tuple[_Static, dict[str, Any]], ...]]
_RESULTS = {True: Result.MET, False: Result.NOT_MET, None: Result.UNKNOWN}


def _shown(criterion: Criterion, features: dict[str, Feature]) -> _Shown:
    shown: _Shown | None = criterion.shown
    if shown is None:
        statics = tuple(
            _atom_static(atom, features[atom.feature].unit) for atom in atoms(criterion.when)
        )
        shown = (criterion_spec(criterion), statics)
        object.__setattr__(criterion, "shown", shown)  # a cache on an immutable object
    return shown


def _atom_static(atom: Atom, unit: str | None) -> tuple[_Static, dict[str, Any]]:
    static = (atom.feature, atom.text, _comparison(atom), _threshold(atom), unit)
    unknown = dict(zip(_STATIC_KEYS, static, strict=True))
    unknown.update(value=None, margin=None, result=Result.UNKNOWN)
    return static, unknown


_STATIC_KEYS = ("feature", "expression", "comparison", "threshold", "unit")


def _atom(
    given: FeatureValue | None,
    result: bool | None,
    margin: float | None,
    static: _Static,
    unknown: dict[str, Any],
) -> dict[str, Any]:
    if given is None:
        return unknown
    feature, expression, comparison, threshold, unit = static
    # One literal (the keys of _STATIC_KEYS, then the patient's): about twice as fast as
    # merging a shared dict, and this runs for every known value of every answer.
    return {
        "feature": feature,
        "expression": expression,
        "comparison": comparison,
        "threshold": threshold,
        "unit": unit,
        "value": given.value,
        "margin": margin,
        "result": _RESULTS[result],
        "given": {"value": given.given_value, "unit": given.given_unit},
        "provenance": _INPUT if given.provenance is INPUT else _provenance(given.provenance),
    }


@lru_cache(maxsize=1024)
def _provenance(provenance: Provenance) -> dict[str, Any]:
    return {k: v for k, v in asdict(provenance).items() if v is not None}


_INPUT = _provenance(INPUT)


def _entry(
    criterion: Criterion, record: tuple[Any, ...], offset: int, features: dict[str, Feature]
) -> dict[str, Any]:
    """A criterion's entry, read from a Decision's record at the criterion's offset."""
    spec, statics = _shown(criterion, features)
    entry = spec.copy()
    entry["result"] = _RESULTS[record[offset]]
    if len(statics) == 1:  # most criteria: one comparison
        static, unknown = statics[0]
        given, result, margin = record[offset + 1 : offset + 4]
        entry["features"] = [_atom(given, result, margin, static, unknown)]
    else:
        at = offset + 1
        shown = []
        for static, unknown in statics:
            shown.append(_atom(record[at], record[at + 1], record[at + 2], static, unknown))
            at += 3
        entry["features"] = shown
    return entry


@lru_cache(maxsize=4096)
def criterion_spec(criterion: Criterion) -> dict[str, Any]:
    return {
        "id": criterion.id,
        "kind": criterion.kind,
        "title": criterion.title,
        "expression": criterion.text,
        "citations": list(criterion.citations),
        "source": criterion.source,
        "evidence": criterion.evidence,
        "note": criterion.note,
        "origin": _origin(criterion),
    }


def _origin(criterion: Criterion) -> dict[str, Any] | None:
    origin = criterion.origin
    if origin is None:
        return None
    return {
        "fragment": origin.fragment,
        "title": origin.title,
        "applies_to": origin.applies_to,
        "label": origin.label(criterion.source),
    }


def to_confirm(result: Decision, features: dict[str, Feature]) -> list[dict[str, Any]]:
    """The clinician confirmations that would decide an indeterminate status, each with the
    question, the answer that lets the patient go on and the criteria waiting for it."""
    out = []
    for ident in result.to_confirm:
        spec = features[ident].spec
        assert spec.confirmation is not None  # RuleSet.confirmations holds only these
        waiting = [
            r.criterion.id
            for r in result.criteria
            if r.result is Result.UNKNOWN and ident in r.criterion.features
        ]
        out.append(
            {
                "feature": ident,
                "label": spec.label,
                "question": spec.confirmation.question,
                "description": spec.description,
                "proceeds_when": spec.confirmation.proceeds_when,
                "criteria": waiting,
            }
        )
    return out


def correction(ident: str, value: FeatureValue) -> dict[str, Any]:
    """A value given against a catalogue implication, and what was used instead (derive.py)."""
    return {
        "feature": ident,
        "given": {"value": value.given_value, "unit": value.given_unit},
        "used": value.value,
        "because": value.provenance.derivation,
    }


def fact(spec: FactSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "title": spec.title,
        "figure": spec.figure,
        "population": spec.population,
        "citations": list(spec.cite),
        "source": spec.source,
        "evidence": spec.evidence,
        "note": spec.note,
    }


def citation(spec: EvidenceSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


class SplicedList(list[Any]):
    """A list that is the same in every answer, serialised once (`render` splices the bytes).

    Still a list to every reader (the form, the cards, the tests); only `render` knows."""

    __slots__ = ("fragment",)

    def __init__(self, items: list[Any]) -> None:
        super().__init__(items)
        self.fragment = orjson.Fragment(orjson.dumps(items))


class SplicedDict(dict[str, Any]):
    """A mapping that is the same in every answer, serialised once (see SplicedList)."""

    __slots__ = ("fragment",)

    def __init__(self, items: dict[str, Any]) -> None:
        super().__init__(items)
        self.fragment = orjson.Fragment(orjson.dumps(items))


def _splice(obj: Any) -> Any:
    if isinstance(obj, SplicedList | SplicedDict):
        return obj.fragment
    raise TypeError(f"{type(obj).__name__} is not JSON")


def render(content: Any) -> bytes:
    """An answer as the JSON bytes the API sends (and the audit trail's digest is taken of).

    A rule set's reference, risks, outcomes, citations and notes (over 40 % of an answer)
    are spliced in as bytes serialised when the rule set was first presented. Enums are
    written as their values and datetimes as RFC 3339, as the standard encoder writes them."""
    return orjson.dumps(content, default=_splice, option=orjson.OPT_PASSTHROUGH_SUBCLASS)


@lru_cache(maxsize=256)
def _static(ruleset: RuleSet, rules: RuleBase) -> dict[str, Any]:
    return {
        "ruleset": SplicedDict(ruleset_ref(ruleset)),
        "risks": SplicedList([fact(r) for r in ruleset.risks]),
        "outcomes": SplicedList([fact(o) for o in ruleset.outcomes]),
        "citations": SplicedList([citation(rules.evidence[c]) for c in ruleset.citations]),
        "notes": SplicedList(list(ruleset.notes)),
    }


def clear_caches() -> None:
    """Forget cached JSON of replaced rule objects (called after a rules reload)."""
    criterion_spec.cache_clear()
    _static.cache_clear()
    _summary_ref.cache_clear()


def decision(result: Decision, rules: RuleBase) -> dict[str, Any]:
    static = _static(result.ruleset, rules)
    record, features = result.record, rules.features
    entries = [_entry(c, record, offset, features) for c, offset, _ in layout(result.ruleset)]
    deciding = len(result.ruleset.deciding)
    return {
        "ruleset": static["ruleset"],
        "status": result.status,
        "reasons": [c.id for c in settled_by(result)],
        "criteria": entries[:deciding],
        "cautions": entries[deciding:],
        "risks": static["risks"],
        "outcomes": static["outcomes"],
        "missing": list(result.missing),
        "to_confirm": to_confirm(result, rules.features) if result.to_confirm else [],
        "citations": static["citations"],
        "notes": static["notes"],
    }


def summary(result: Decision, rules: RuleBase) -> dict[str, Any]:
    """The verdict without the trace: what a worklist or a registry needs of a decision,
    about a twentieth of `decision`'s bytes. The full answer stays one query away."""
    ruleset, features = result.ruleset, rules.features
    return {
        "ruleset": _summary_ref(ruleset),
        "status": result.status,
        "reasons": [
            {"id": c.id, "kind": c.kind, "title": c.title, "source": c.source}
            for c in settled_by(result)
        ],
        "missing": [
            {"feature": f, "label": features[f].spec.label, "unit": features[f].unit}
            for f in result.missing
        ],
        "to_confirm": [
            {"feature": c["feature"], "question": c["question"]}
            for c in (to_confirm(result, features) if result.to_confirm else [])
        ],
    }


@lru_cache(maxsize=256)
def _summary_ref(ruleset: RuleSet) -> dict[str, Any]:
    return SplicedDict(
        {
            "id": ruleset.id,
            "version": ruleset.version,
            "hash": ruleset.hash,
            "title": ruleset.title,
            "review_status": ruleset.review_status,
        }
    )


def ruleset_detail(ruleset: RuleSet, rules: RuleBase) -> dict[str, Any]:
    static = _static(ruleset, rules)
    return {
        **static["ruleset"],
        "file": ruleset.file,
        "includes": list(ruleset.includes),
        "criteria": [criterion_spec(c) for c in ruleset.deciding],
        "cautions": [criterion_spec(c) for c in ruleset.cautions],
        "risks": static["risks"],
        "outcomes": static["outcomes"],
        "notes": static["notes"],
        "citations": static["citations"],
    }


def feature(spec: Feature) -> dict[str, Any]:
    return spec.spec.model_dump(mode="json")
