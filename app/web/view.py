"""What the clinician form shows, built from the catalogue and the decision JSON: pure, so the
templates stay dumb and every rule about wording, grouping and pictures is tested here.

The form is generated from `rules/features.yaml` (a new feature appears without a template
change); the results are the same decision JSON the API returns, so the page can never say
something the record does not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.cds.cards import INDICATIONS, THERAPIES, short_name
from app.engine import words
from app.engine.model import Feature, RuleSet
from app.engine.present import (
    CitationOut,
    CriterionOut,
    DecisionOut,
    FactOut,
    FeatureUse,
    OriginOut,
    Provenance,
    RulesetRef,
)
from app.engine.words import derivation_words, number, unit_words

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
# The vocabulary's tables: one set of words for the form, its report and the CDS cards
# (app/engine/words.py), under the names this module has always exported.
STATUS, UNDECIDED, RESULT = words.STATUS, words.UNDECIDED, words.RESULT
COMPARISON = words.COMPARISON


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
    # A disease's work-up: the values only one of its protocols asks, folded under the section
    # so the common work-up stays short; `more_for` names those protocols, `more_open` unfolds
    # it when one of them holds a value, an error or a result's "to measure" link.
    more: tuple[Field, ...] = ()
    more_for: tuple[str, ...] = ()
    more_open: bool = False


# FHIR element paths in the catalogue's descriptions (written for integrators too) with the
# words that lead to them: "(derived from Patient.birthDate)", "as recorded in Patient.gender".
_FHIR_PATH = re.compile(
    r"\s*\((?:derived )?from [A-Z][a-z]+\.[a-z][A-Za-z.]*\)|\s+(?:in|from) "
    r"[A-Z][a-z]+\.[a-z][A-Za-z]*"
)


def plain(text: str) -> str:
    """A description in the clinician's words: the FHIR element it is read from is the
    integrator's business (and the form says which resource a loaded value came from)."""
    return _FHIR_PATH.sub("", text)


def _field(feature: Feature) -> Field:
    spec = feature.spec
    # Words only: a count or a class has none ('' shows no unit), never `{count}`.
    units = tuple((u, unit_words(u)) for u in ([spec.unit] if spec.unit else []))
    units += tuple((u, unit_words(u)) for u in spec.other_units)
    low_high = (number(spec.range[0]), number(spec.range[1])) if spec.range else None
    return Field(
        spec.id,
        spec.label,
        plain(spec.description),
        spec.type.value,
        spec.unit,
        units,
        low_high,
        tuple(spec.values or ()),
    )


def sections(features: Mapping[str, Feature]) -> list[Section]:
    """Every catalogue feature that is a value (not a clinician confirmation, which the form
    asks apart) in a section; a group no section names gets its own, last."""
    by_group: dict[str, list[Feature]] = {}
    for feature in features.values():
        if feature.spec.confirmation is None:
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


@dataclass(frozen=True, slots=True)
class Disease:
    """A disease the form can be started with: choosing it records its diagnosis (the features
    its protocols' indication criteria read) and shows the values its protocols decide on."""

    id: str  # the rule sets' indication: "ssc"
    name: str  # "Systemic sclerosis (SSc)"
    diagnosis: tuple[str, ...]  # features set to yes by the choice
    rulesets: tuple[RuleSet, ...]


DISEASE_NAMES = {"ssc": "Systemic sclerosis (SSc)", "sle": "Systemic lupus erythematosus (SLE)"}


def diseases(rulesets: Iterable[RuleSet]) -> dict[str, Disease]:
    """The diseases the loaded rule sets treat, from their indications (a rule set for a new
    disease adds a choice without a template change)."""
    by_indication: dict[str, list[RuleSet]] = {}
    for ruleset in rulesets:
        by_indication.setdefault(str(ruleset.indication), []).append(ruleset)
    out = {}
    order = list(DISEASE_NAMES)  # SSc, SLE; a disease the names do not know, after them
    known_first = sorted(by_indication, key=lambda i: (order.index(i) if i in order else 99, i))
    for ident in known_first:
        members = by_indication[ident]
        diagnosis = dict.fromkeys(f for r in members for f in r.indication_criterion.features)
        name = DISEASE_NAMES.get(ident, INDICATIONS.get(ident, ident))
        out[ident] = Disease(ident, name, tuple(diagnosis), tuple(members))
    return out


def disease_of(entries: Mapping[str, object], known: Mapping[str, Disease]) -> str | None:
    """The one disease whose diagnosis the recorded values say yes to, else None (none, or
    both: the form then shows every field)."""
    recorded = [
        d.id
        for d in known.values()
        if all(getattr(entries.get(f), "value", None) == "yes" for f in d.diagnosis)
    ]
    return recorded[0] if len(recorded) == 1 else None


def workup(
    features: Mapping[str, Feature],
    disease: Disease | None,
    shown: Collection[str] = (),
) -> list[Section]:
    """The form's sections for one disease: only the values its protocols decide on or caution
    about (its diagnosis is the choice itself), those two or more protocols ask in view and
    those only one asks folded; a value in `shown` (entered, in error, to measure) is never
    left out, and unfolds its group. Without a disease, every value, as `sections` does."""
    if disease is None:
        return sections(features)
    asking: dict[str, list[str]] = {}
    for ruleset in disease.rulesets:
        # A caution's values too: unknown, it is shown as "not known" on every verdict.
        used = {f for c in (*ruleset.deciding, *ruleset.cautions) for f in c.features}
        name = short_name({"id": ruleset.id, "title": ruleset.title})
        for feature in used - set(disease.diagnosis):
            asking.setdefault(feature, []).append(name)
    kept = {k: f for k, f in features.items() if k in asking or k in shown}
    out = []
    for section in sections({k: f for k, f in kept.items() if k not in disease.diagnosis}):
        main = tuple(f for f in section.fields if len(asking.get(f.id, ())) >= 2)
        more = tuple(f for f in section.fields if f not in main)
        names = dict.fromkeys(n for f in more for n in asking.get(f.id, ()))
        opened = any(f.id in shown for f in more)
        out.append(Section(section.id, section.title, main, more, tuple(names), opened))
    return out


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A clinician-judged feature as one control: not yet assessed, or either answer."""

    id: str
    label: str
    question: str
    description: str  # the sources' words the judgement is made against
    options: tuple[tuple[str, str, bool], ...]  # (posted value, words, lets the patient go on)
    asked_by: tuple[str, ...]  # "Autologous HSCT for SSc: ASTIS, SCOT": who waits for it


def confirmations(
    features: Mapping[str, Feature],
    rulesets: Iterable[RuleSet],
    shown: Collection[str] | None = None,
) -> list[Confirmation]:
    """The catalogue's confirmations, each offering the answer that lets the patient go on
    first, so the usual case is one click and the other answer is never the default. Given
    `shown` (a disease's work-up), only those its protocols ask or that are in `shown`."""
    asking = list(rulesets)
    out = []
    for feature in features.values():
        spec = feature.spec
        if spec.confirmation is None:
            continue
        if shown is not None and spec.id not in shown and not _asked_by(spec.id, asking):
            continue
        go = "yes" if spec.confirmation.proceeds_when else "no"
        stop = "no" if go == "yes" else "yes"
        out.append(
            Confirmation(
                spec.id,
                spec.label,
                spec.confirmation.question,
                plain(spec.description),
                (
                    ("", "Not yet assessed", False),
                    (go, go.capitalize(), True),
                    (stop, stop.capitalize(), False),
                ),
                _asked_by(spec.id, asking),
            )
        )
    return out


def _asked_by(feature: str, rulesets: Sequence[RuleSet]) -> tuple[str, ...]:
    """The protocols that ask, by therapy and indication: "ASTIS" alone does not say that
    this question matters for HSCT in SSc."""
    by_therapy: dict[str, list[str]] = {}
    for ruleset in rulesets:
        if feature in ruleset.confirmations:
            therapy = THERAPIES.get(ruleset.therapy, ruleset.therapy)
            title = f"{therapy} for {INDICATIONS.get(ruleset.indication, ruleset.indication)}"
            name = short_name({"id": ruleset.id, "title": ruleset.title})
            by_therapy.setdefault(title, []).append(name)
    return tuple(f"{title}: {', '.join(names)}" for title, names in by_therapy.items())


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
    derived: str | None  # why a value nobody entered was implied by others
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
    # A criterion included from a shared fragment: ("applies to all cellular therapies",
    # its source), the API's `origin.label` in two parts so the scope can stand out.
    origin: tuple[str, str] | None

    @property
    def passed(self) -> bool:
        """Settled in the patient's favour: an inclusion met, an exclusion not met."""
        return self.result == ("not_met" if self.kind == "exclusion" else "met")


@dataclass(frozen=True, slots=True)
class ToConfirm:
    """A clinician confirmation an undecided verdict waits for."""

    feature: str
    question: str
    answer: str  # the answer that lets the patient go on, in words
    criteria: tuple[str, ...]  # the titles of the criteria waiting for it


@dataclass(frozen=True, slots=True)
class Panel:
    ruleset: RulesetRef
    name: str
    status: str
    status_words: str
    symbol: str
    deciding: tuple[Criterion, ...]  # what rules the patient out
    missing: tuple[tuple[str, str], ...]  # (feature id, label): what to measure next
    to_confirm: tuple[ToConfirm, ...]  # what a clinician judges, apart from what to measure
    still_open: str  # "2 values to measure, 1 to confirm" for an undecided verdict, else ""
    criteria: tuple[Criterion, ...]
    cautions: tuple[Criterion, ...]  # those that apply (met) or may (unknown)
    risks: tuple[FactOut, ...]
    citations: tuple[CitationOut, ...]
    not_assessed: str = ""  # why it is set apart, in words ("": assessed)

    @property
    def first_reason(self) -> str:
        """What rules the patient out first, in words with the patient's value and the limit
        ("DLCO below 40 %: DLCO 35 % (limit < 40 %)"); "" when nothing does."""
        return reason(self.deciding[0]) if self.deciding else ""


def reason(criterion: Criterion) -> str:
    """A deciding criterion in words: its title, then each known value against its limit."""
    known = [a for a in criterion.atoms if a.result != "unknown"]
    limit = "needs" if criterion.kind == "inclusion" else "excluded when"
    values = "; ".join(f"{a.label} {a.value} ({limit} {a.threshold})" for a in known)
    return f"{criterion.title}: {values}" if values else criterion.title


@dataclass(frozen=True, slots=True)
class Therapy:
    id: str
    title: str
    panels: tuple[Panel, ...]


@dataclass(slots=True)
class Results:
    therapies: list[Therapy] = field(default_factory=list)
    # Set apart (`assessed: false`): another disease is recorded and theirs is not.
    not_assessed: list[Panel] = field(default_factory=list)
    not_indicated: list[Panel] = field(default_factory=list)
    # No rule set's indication is known: every verdict waits for the diagnosis first.
    no_diagnosis: bool = False


def _threshold(atom: FeatureUse, unit: str) -> str:
    threshold, comparison = atom["threshold"], atom["comparison"]
    suffix = f" {unit}" if unit else ""
    if isinstance(threshold, dict):  # between
        return f"{number(threshold['low'])}–{number(threshold['high'])}{suffix}"
    if isinstance(threshold, list):  # in
        return "one of " + ", ".join(t.replace("_", " ") for t in threshold)
    if isinstance(threshold, bool):
        return "yes" if threshold else "no"
    if isinstance(threshold, int | float):
        return f"{COMPARISON.get(comparison, comparison)} {number(threshold)}{suffix}"
    return f"{COMPARISON.get(comparison, comparison)} {threshold}"


def _value(atom: FeatureUse, unit: str) -> str:
    value = atom["value"]
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        text = f"{number(value)}{f' {unit}' if unit else ''}"
        given = atom.get("given")
        if given is not None and given["unit"]:
            shown = given["value"]
            shown = number(shown) if isinstance(shown, int | float) else str(shown)
            # In another unit, or a fraction of completed units (65.5 years, taken as 65).
            if given["unit"] != atom["unit"] or shown != number(value):
                given_unit = unit_words(given["unit"])
                text += f" (given as {shown}{f' {given_unit}' if given_unit else ''}"
                text += f"{_completed(atom, unit)})"
        return text
    return str(value).replace("_", " ")


def _completed(atom: FeatureUse, unit: str) -> str:
    """Why a value typed in or from FHIR was replaced: it is counted in completed units
    (inputs.py rounds 65.5 years down to 65); an implication says so as `derived` instead."""
    provenance = atom.get("provenance")
    if provenance is None or provenance["source"] == DERIVED or "replaced" not in provenance:
        return ""
    return f", counted in completed {unit}"


def source(provenance: Provenance | None) -> str | None:
    """Where a value came from, in words ("Observation/x, 2026-10-01"); None if typed in or
    derived (`derivation` says why)."""
    if provenance is None or provenance["source"] in ("input", DERIVED):
        return None
    where = provenance.get("resource") or provenance["source"]
    return f"{where}, {provenance['date']}" if provenance.get("date") else str(where)


DERIVED = "derived"


def derivation(provenance: Provenance | None, features: Mapping[str, Feature]) -> str | None:
    """Why a derived value holds, with labels for feature ids ("Prior IV cyclophosphamide > 0 g
    (cyclophosphamide is an alkylating agent)"); None for a value entered or from FHIR."""
    if provenance is None or provenance["source"] != DERIVED:
        return None
    return derivation_words(
        str(provenance.get("derivation") or ""), {k: f.spec.label for k, f in features.items()}
    )


def _label(ident: str, features: Mapping[str, Feature]) -> str:
    feature = features.get(ident)
    return feature.spec.label if feature else ident


def scale(atom: FeatureUse, feature: Feature | None, unit: str) -> Scale | None:
    """The picture for a numeric comparison with a known value, else None."""
    value, threshold, comparison = atom["value"], atom["threshold"], atom["comparison"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(threshold, dict):  # between
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


def _atom(atom: FeatureUse, features: Mapping[str, Feature]) -> Atom:
    feature = features.get(atom["feature"])
    unit = unit_words(atom.get("unit"))
    return Atom(
        atom["feature"],
        feature.spec.label if feature else atom["feature"],
        atom["result"],
        _value(atom, unit),
        _threshold(atom, unit),
        source(atom.get("provenance")),
        derivation(atom.get("provenance"), features),
        scale(atom, feature, unit),
    )


def _criterion(criterion: CriterionOut, features: Mapping[str, Feature]) -> Criterion:
    return Criterion(
        criterion["id"],
        criterion["kind"],
        criterion["title"],
        criterion["result"],
        criterion["expression"],
        tuple(_atom(a, features) for a in criterion["features"]),
        tuple(criterion["citations"]),
        criterion.get("note"),
        _origin(criterion.get("origin")),
    )


def _origin(origin: OriginOut | None) -> tuple[str, str] | None:
    if not origin:
        return None
    scope = f"applies to {origin['applies_to']}"
    label = str(origin["label"])
    return scope, label.removeprefix(f"{scope}: ")


def _deciding(criterion: CriterionOut) -> bool:
    kind, result = criterion["kind"], criterion["result"]
    return (kind, result) in {("inclusion", "not_met"), ("exclusion", "met")}


def _to_confirm(result: DecisionOut) -> tuple[ToConfirm, ...]:
    titles = {c["id"]: c["title"] for c in result["criteria"]}
    return tuple(
        ToConfirm(
            item["feature"],
            item["question"],
            "yes" if item["proceeds_when"] else "no",
            tuple(titles.get(c, c) for c in item["criteria"]),
        )
        for item in result.get("to_confirm") or ()  # absent from answers recorded before it
    )


def still_open(result: DecisionOut) -> str:
    if result["status"] != "indeterminate":
        return ""
    return words.still_open(len(result["missing"]), len(result.get("to_confirm") or ()))


def status_words(result: DecisionOut) -> str:
    if result["status"] != "indeterminate":
        return STATUS[result["status"]][0]
    open_ = (bool(result["missing"]), bool(result.get("to_confirm")))
    return UNDECIDED.get(open_, STATUS["indeterminate"][0])


def panel(result: DecisionOut, features: Mapping[str, Feature]) -> Panel:
    criteria = [c for c in result["criteria"] if c["kind"] != "caution"]
    return Panel(
        result["ruleset"],
        short_name(result["ruleset"]),
        result["status"],
        status_words(result),
        STATUS[result["status"]][1],
        tuple(_criterion(c, features) for c in criteria if _deciding(c)),
        tuple((f, _label(f, features)) for f in result["missing"]),
        _to_confirm(result),
        still_open(result),
        tuple(_criterion(c, features) for c in criteria),
        tuple(_criterion(c, features) for c in result["cautions"] if c["result"] != "not_met"),
        tuple(result["risks"]),
        tuple(result["citations"]),
        result["not_assessed"]["message"] if "not_assessed" in result else "",
    )


def results(decisions: Sequence[DecisionOut], features: Mapping[str, Feature]) -> Results:
    """Panels grouped by therapy and indication; rule sets whose indication the patient does
    not have, and those not assessed for want of a diagnosis while another is recorded, are
    listed apart, so the page leads with what applies."""
    out = Results(no_diagnosis=bool(decisions) and not any(map(_indication_known, decisions)))
    grouped: dict[tuple[str, str], list[Panel]] = {}
    for decision in decisions:
        made = panel(decision, features)
        if decision["status"] == "not_indicated":
            out.not_indicated.append(made)
            continue
        if decision.get("assessed") is False:  # absent from answers recorded before it
            out.not_assessed.append(made)
            continue
        ruleset = decision["ruleset"]
        grouped.setdefault((ruleset["therapy"], ruleset["indication"]), []).append(made)
    for (therapy, indication), panels in grouped.items():
        title = f"{THERAPIES.get(therapy, therapy)} for {INDICATIONS.get(indication, indication)}"
        out.therapies.append(Therapy(f"{therapy}-{indication}", title, tuple(panels)))
    return out


def _indication_known(decision: DecisionOut) -> bool:
    """Whether the decision's indication criterion (the first) is met or not met."""
    return any(c["kind"] == "indication" and c["result"] != "unknown" for c in decision["criteria"])


def references(shown: Results) -> list[CitationOut]:
    """The citations of the assessed protocols, each once, in the order first cited (the
    printed report lists them after the evidence rather than under every protocol)."""
    seen: dict[str, CitationOut] = {}
    for therapy in shown.therapies:
        for made in therapy.panels:
            for citation in made.citations:
                seen.setdefault(citation["id"], citation)
    return list(seen.values())


def link(citation: CitationOut) -> str | None:
    """DOI first (the version of record), then PubMed, then whatever URL the entry has."""
    if citation.get("doi"):
        return f"https://doi.org/{citation['doi']}"
    if citation.get("pmid"):
        return f"https://pubmed.ncbi.nlm.nih.gov/{citation['pmid']}/"
    url = citation.get("url")
    return str(url) if url else None
