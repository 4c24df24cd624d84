"""What the clinician form shows, built from the catalogue and the decision JSON: pure, so the
templates stay dumb and every rule about wording, grouping and pictures is tested here.

The form is generated from `rules/features.yaml` (a new feature appears without a template
change); the results are the same decision JSON the API returns, so the page can never say
something the record does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.cds.cards import INDICATIONS, THERAPIES, short_name
from app.engine.model import Feature

# Catalogue groups in the order a clinician works through a patient, folded into sections.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Demographics and diagnosis", ("demographics", "diagnosis")),
    ("Skin", ("skin",)),
    ("Lung", ("lung",)),
    ("Heart", ("heart",)),
    ("Kidney", ("kidney",)),
    ("Laboratory values", ("labs",)),
    ("Prior treatment", ("prior_treatment",)),
    ("Comorbidities and safety", ("comorbidities", "safety")),
)
# UCUM codes as clinicians write them; the select still submits the UCUM code.
UNIT_WORDS = {
    "a": "years",
    "mo": "months",
    "wk": "weeks",
    "d": "days",
    "%": "%",
    "mm[Hg]": "mmHg",
    "kPa": "kPa",
    "mL/min": "mL/min",
    "mL/s": "mL/s",
    "mL/min/{1.73_m2}": "mL/min/1.73 m²",
    "mg/dL": "mg/dL",
    "umol/L": "µmol/L",
    "g/(24.h)": "g/24 h",
    "mg/d": "mg/day",
    "mg/(24.h)": "mg/24 h",
    "g/m2": "g/m²",
    "mg/m2": "mg/m²",
    "g": "g",
    "mg": "mg",
    "{ratio}": "× ULN",
    "{score}": "points",
    "{count}": "",
    "{class}": "",
    "dyn.s/cm5": "dyn·s/cm⁵",
}
STATUS = {
    "eligible": ("Candidate", "✓"),
    "indeterminate": ("Undecided: values missing", "?"),
    "ineligible": ("Ruled out", "✕"),
    "not_indicated": ("Not indicated", "–"),
}
RESULT = {"met": "met", "not_met": "not met", "unknown": "unknown"}
COMPARISON = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}


def unit_words(unit: str | None) -> str:
    return "" if unit is None else UNIT_WORDS.get(unit, unit)


def number(value: float) -> str:
    """Numbers as a clinician writes them: no trailing `.0`, at most four significant digits
    beyond the integer part (a converted 11.5 kPa is 86.26 mmHg, not 86.25604…)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


# --- the form ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    id: str
    label: str
    description: str
    type: str  # number | boolean | enum
    unit: str | None
    units: tuple[tuple[str, str], ...]  # (UCUM, words), the canonical unit first
    range: tuple[str, str] | None  # the plausible range in the canonical unit, as text
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Section:
    id: str
    title: str
    fields: tuple[Field, ...]


def _field(feature: Feature) -> Field:
    spec = feature.spec
    units = tuple((u, unit_words(u) or u) for u in ([spec.unit] if spec.unit else []))
    units += tuple((u, unit_words(u)) for u in spec.other_units)
    low_high = (number(spec.range[0]), number(spec.range[1])) if spec.range else None
    return Field(
        spec.id,
        spec.label,
        spec.description,
        spec.type.value,
        spec.unit,
        units,
        low_high,
        tuple(spec.values or ()),
    )


def sections(features: Mapping[str, Feature]) -> list[Section]:
    """Every catalogue feature in a section; a group no section names gets its own, last."""
    by_group: dict[str, list[Feature]] = {}
    for feature in features.values():
        by_group.setdefault(feature.spec.group, []).append(feature)
    known = {g for _, groups in SECTIONS for g in groups}
    layout = [
        *SECTIONS,
        *((g.replace("_", " ").capitalize(), (g,)) for g in by_group if g not in known),
    ]
    out = []
    for title, groups in layout:
        members = [_field(f) for g in groups for f in by_group.get(g, [])]
        if members:
            out.append(Section(groups[0], title, tuple(members)))
    return out


# --- the results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scale:
    """A numeric criterion drawn on a line: the patient's value against the threshold, with
    the side that satisfies the comparison shaded. Coordinates are 0-100 (percent of width)."""

    shaded: tuple[float, float]
    ticks: tuple[tuple[float, str], ...]  # threshold positions and labels
    marker: float
    low: str
    high: str
    text: str  # the same picture in words, for screen readers and print


@dataclass(frozen=True, slots=True)
class Atom:
    feature: str
    label: str
    result: str
    value: str  # the patient's value in words, "unknown" if none
    threshold: str
    source: str | None  # where the value came from, if not typed into the form
    scale: Scale | None


@dataclass(frozen=True, slots=True)
class Criterion:
    id: str
    kind: str
    title: str
    result: str
    expression: str
    atoms: tuple[Atom, ...]
    citations: tuple[str, ...]
    note: str | None


@dataclass(frozen=True, slots=True)
class Panel:
    ruleset: Mapping[str, Any]
    name: str
    status: str
    status_words: str
    symbol: str
    deciding: tuple[Criterion, ...]  # what rules the patient out
    missing: tuple[tuple[str, str], ...]  # (feature id, label): what to measure next
    criteria: tuple[Criterion, ...]
    cautions: tuple[Criterion, ...]  # those that apply (met) or may (unknown)
    risks: tuple[Mapping[str, Any], ...]
    citations: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Therapy:
    id: str
    title: str
    panels: tuple[Panel, ...]


@dataclass(slots=True)
class Results:
    therapies: list[Therapy] = field(default_factory=list)
    not_indicated: list[Panel] = field(default_factory=list)


def _threshold(atom: Mapping[str, Any], unit: str) -> str:
    threshold, comparison = atom["threshold"], atom["comparison"]
    suffix = f" {unit}" if unit else ""
    if comparison == "between":
        return f"{number(threshold['low'])}–{number(threshold['high'])}{suffix}"
    if comparison in ("in", "not in"):
        words = ", ".join(str(t).replace("_", " ") for t in threshold)
        return f"{'one of' if comparison == 'in' else 'none of'} {words}"
    if isinstance(threshold, bool):
        return "yes" if threshold else "no"
    if isinstance(threshold, int | float):
        return f"{COMPARISON.get(comparison, comparison)} {number(threshold)}{suffix}"
    return f"{COMPARISON.get(comparison, comparison)} {threshold}"


def _value(atom: Mapping[str, Any], unit: str) -> str:
    value = atom["value"]
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        text = f"{number(value)}{f' {unit}' if unit else ''}"
        given = atom.get("given") or {}
        if given.get("unit") and given["unit"] != atom["unit"]:
            text += f" (given as {number(given['value'])} {unit_words(given['unit'])})"
        return text
    return str(value).replace("_", " ")


def source(provenance: Mapping[str, Any] | None) -> str | None:
    """Where a value came from, in words ("Observation/x, 2026-10-01"); None if typed in."""
    provenance = provenance or {}
    if provenance.get("source", "input") == "input":
        return None
    where = provenance.get("resource") or provenance["source"]
    return f"{where}, {provenance['date']}" if provenance.get("date") else str(where)


def scale(atom: Mapping[str, Any], feature: Feature | None, unit: str) -> Scale | None:
    """The picture for a numeric comparison with a known value, else None."""
    value, threshold, comparison = atom["value"], atom["threshold"], atom["comparison"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if comparison == "between":
        cuts = [float(threshold["low"]), float(threshold["high"])]
    elif comparison in ("<", "<=", ">", ">=") and isinstance(threshold, int | float):
        cuts = [float(threshold)]
    else:
        return None
    low, high = _window(float(value), cuts, feature)

    def at(x: float) -> float:
        return round(100 * (min(max(x, low), high) - low) / (high - low), 1)

    if comparison == "between":
        shaded = (at(cuts[0]), at(cuts[1]))
    elif comparison in ("<", "<="):
        shaded = (0.0, at(cuts[0]))
    else:
        shaded = (at(cuts[0]), 100.0)
    suffix = f" {unit}" if unit else ""
    words = (
        f"{atom['feature']}: patient {number(value)}{suffix}; "
        f"criterion {_threshold(atom, unit)}; {RESULT[atom['result']]}"
    )
    return Scale(
        shaded,
        tuple((at(c), number(c)) for c in cuts),
        at(float(value)),
        number(low),
        number(high),
        words,
    )


def _window(value: float, cuts: list[float], feature: Feature | None) -> tuple[float, float]:
    """The stretch of the scale worth drawing: the threshold(s) and the value with a margin,
    kept inside the feature's plausible range."""
    low, high = min([value, *cuts]), max([value, *cuts])
    margin = max((high - low) * 0.25, abs(high) * 0.1, 1.0)
    # Round the ends outwards to a readable step: "0 … 80", not "6.25 … 76.75".
    step = 10 ** math.floor(math.log10(high - low + 2 * margin)) / 2
    low, high = math.floor((low - margin) / step) * step, math.ceil((high + margin) / step) * step
    if feature is not None and feature.spec.range:
        low, high = max(low, feature.spec.range[0]), min(high, feature.spec.range[1])
    if math.isclose(low, high):
        high = low + 1
    return low, high


def _atom(atom: Mapping[str, Any], features: Mapping[str, Feature]) -> Atom:
    feature = features.get(atom["feature"])
    unit = unit_words(atom.get("unit"))
    return Atom(
        atom["feature"],
        feature.spec.label if feature else atom["feature"],
        atom["result"],
        _value(atom, unit),
        _threshold(atom, unit),
        source(atom.get("provenance")),
        scale(atom, feature, unit),
    )


def _criterion(criterion: Mapping[str, Any], features: Mapping[str, Feature]) -> Criterion:
    return Criterion(
        criterion["id"],
        criterion["kind"],
        criterion["title"],
        criterion["result"],
        criterion["expression"],
        tuple(_atom(a, features) for a in criterion["features"]),
        tuple(criterion["citations"]),
        criterion.get("note"),
    )


def _deciding(criterion: Mapping[str, Any]) -> bool:
    kind, result = criterion["kind"], criterion["result"]
    return (kind, result) in {("inclusion", "not_met"), ("exclusion", "met")}


def panel(result: Mapping[str, Any], features: Mapping[str, Feature]) -> Panel:
    criteria = [c for c in result["criteria"] if c["kind"] != "caution"]
    words, symbol = STATUS[result["status"]]
    return Panel(
        result["ruleset"],
        short_name(result["ruleset"]),
        result["status"],
        words,
        symbol,
        tuple(_criterion(c, features) for c in criteria if _deciding(c)),
        tuple((f, features[f].spec.label if f in features else f) for f in result["missing"]),
        tuple(_criterion(c, features) for c in criteria),
        tuple(_criterion(c, features) for c in result["cautions"] if c["result"] != "not_met"),
        tuple(result["risks"]),
        tuple(result["citations"]),
    )


def results(decisions: Sequence[Mapping[str, Any]], features: Mapping[str, Feature]) -> Results:
    """Panels grouped by therapy and indication; rule sets whose indication the patient does
    not have are listed apart, so the page leads with what applies."""
    out = Results()
    grouped: dict[tuple[str, str], list[Panel]] = {}
    for decision in decisions:
        made = panel(decision, features)
        if decision["status"] == "not_indicated":
            out.not_indicated.append(made)
            continue
        ruleset = decision["ruleset"]
        grouped.setdefault((ruleset["therapy"], ruleset["indication"]), []).append(made)
    for (therapy, indication), panels in grouped.items():
        title = f"{THERAPIES.get(therapy, therapy)} for {INDICATIONS.get(indication, indication)}"
        out.therapies.append(Therapy(f"{therapy}-{indication}", title, tuple(panels)))
    return out


def link(citation: Mapping[str, Any]) -> str | None:
    """DOI first (the version of record), then PubMed, then whatever URL the entry has."""
    if citation.get("doi"):
        return f"https://doi.org/{citation['doi']}"
    if citation.get("pmid"):
        return f"https://pubmed.ncbi.nlm.nih.gov/{citation['pmid']}/"
    url = citation.get("url")
    return str(url) if url else None
