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

from app.engine.evaluate import (
    AtomTrace,
    CriterionResult,
    Decision,
    Result,
    decisive,
)
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


def _atom(trace: AtomTrace, static: _Static, unknown: dict[str, Any]) -> dict[str, Any]:
    given = trace.value
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
        "margin": trace.margin,
        "result": _RESULTS[trace.result],
        "given": {"value": given.given_value, "unit": given.given_unit},
        "provenance": _INPUT if given.provenance is INPUT else _provenance(given.provenance),
    }


@lru_cache(maxsize=1024)
def _provenance(provenance: Provenance) -> dict[str, Any]:
    return {k: v for k, v in asdict(provenance).items() if v is not None}


_INPUT = _provenance(INPUT)


def criterion_result(result: CriterionResult, features: dict[str, Feature]) -> dict[str, Any]:
    spec, statics = _shown(result.criterion, features)
    trace = result.trace
    entry = spec.copy()
    entry["result"] = result.result
    if len(trace) == 1:  # most criteria: one comparison
        static, unknown = statics[0]
        entry["features"] = [_atom(trace[0], static, unknown)]
    else:
        entry["features"] = [_atom(t, s, u) for t, (s, u) in zip(trace, statics, strict=True)]
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


@lru_cache(maxsize=256)
def _static(ruleset: RuleSet, rules: RuleBase) -> dict[str, Any]:
    return {
        "ruleset": ruleset_ref(ruleset),
        "risks": [fact(r) for r in ruleset.risks],
        "outcomes": [fact(o) for o in ruleset.outcomes],
        "citations": [citation(rules.evidence[c]) for c in ruleset.citations],
        "notes": list(ruleset.notes),
    }


def clear_caches() -> None:
    """Forget cached JSON of replaced rule objects (called after a rules reload)."""
    criterion_spec.cache_clear()
    _static.cache_clear()


def decision(result: Decision, rules: RuleBase) -> dict[str, Any]:
    static = _static(result.ruleset, rules)
    return {
        "ruleset": static["ruleset"],
        "status": result.status,
        "reasons": [r.criterion.id for r in decisive(result)],
        "criteria": [criterion_result(r, rules.features) for r in result.criteria],
        "cautions": [criterion_result(r, rules.features) for r in result.cautions],
        "risks": static["risks"],
        "outcomes": static["outcomes"],
        "missing": list(result.missing),
        "to_confirm": to_confirm(result, rules.features) if result.to_confirm else [],
        "citations": static["citations"],
        "notes": static["notes"],
    }


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
