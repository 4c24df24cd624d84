"""Decisions and rule sets as the API's JSON, shared by the API, the form, the cards and the CLI.

Each payload has one typed definition here, beside its builder: a TypedDict that mypy holds
the builder and every reader to, and that the OpenAPI schema is generated from (schemas.py
uses these, it does not mirror them). They are plain dicts at run time, so `eligo evaluate
--json` prints byte-for-byte what the API returns and the hot path builds no models. What does
not depend on the patient (a criterion's text and citations, a rule set's risks and references)
is built once per loaded object and cached: rule objects hash by identity, so a reload simply
starts new cache entries. Enum members are emitted as-is: they are `str`, and JSON writes them
as their value.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache
from typing import Annotated, Any, Literal, NotRequired, TypeVar, cast

import orjson
from pydantic import ConfigDict, Field, with_config

# typing_extensions': pydantic reads field descriptions from it on Python 3.11.
from typing_extensions import TypedDict

from app.engine import words
from app.engine.evaluate import Decision, Result, layout, settled_by
from app.engine.inputs import INPUT, FeatureValue
from app.engine.inputs import Provenance as ValueProvenance
from app.engine.model import (
    Atom,
    Between,
    Compare,
    Criterion,
    Feature,
    RuleBase,
    RuleSet,
    atoms,
)
from app.engine.schema import (
    EvidenceKind,
    EvidenceSpec,
    FactSpec,
    Indication,
    ReviewStatus,
    Therapy,
)

# --- the payloads ---------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid")  # a key no builder writes is a contract test failure
# Enum values as plain strings: orjson writes a str faster than an Enum member, and answers
# hold hundreds of them.
ResultText = Literal["met", "not_met", "unknown"]
StatusText = Literal["not_indicated", "ineligible", "indeterminate", "eligible"]
KindText = Literal["indication", "inclusion", "exclusion", "caution"]
EvidenceText = Literal["verified", "partial"]
Scalar = float | bool | str


@with_config(_STRICT)
class RulesetRef(TypedDict):
    id: str
    version: str
    hash: str
    title: str
    therapy: Therapy
    indication: Indication
    protocol: str
    source: str
    review_status: ReviewStatus
    review_note: str


@with_config(_STRICT)
class Given(TypedDict):
    value: Scalar
    unit: str | None


@with_config(_STRICT)
class Provenance(TypedDict):
    source: Annotated[str, Field(description="input, fhir, or derived (implied by other values)")]
    resource: NotRequired[str]
    date: NotRequired[str]
    derivation: NotRequired[
        Annotated[
            str,
            Field(
                description="A derived value's implication and why it holds; for a fraction "
                "of a value counted in completed units, the rounding down"
            ),
        ]
    ]
    replaced: NotRequired[
        Annotated[
            str,
            Field(
                description="The value given, where the value used differs: against an "
                "implication, or a fraction of completed units (see the answer's corrections)"
            ),
        ]
    ]


@with_config(_STRICT)
class FeatureUse(TypedDict):
    """One comparison of a criterion, with the patient's value and its margin."""

    feature: str
    expression: str
    comparison: Literal["<", "<=", ">", ">=", "==", "!=", "between", "in"]
    threshold: Scalar | dict[str, float] | list[str]
    unit: str | None
    value: Annotated[Scalar | None, Field(description="In the canonical unit; null: unknown")]
    margin: Annotated[
        float | None,
        Field(
            description="value − threshold (between: distance to the nearer bound, negative "
            "outside); null when unknown or not numeric"
        ),
    ]
    result: ResultText
    given: NotRequired[Given]
    provenance: NotRequired[Provenance]


@with_config(_STRICT)
class OriginOut(TypedDict):
    """Set on a criterion included from a shared fragment (rules/fragments/)."""

    fragment: str
    title: str
    applies_to: Annotated[str, Field(description="e.g. 'all cellular therapies'")]
    label: Annotated[
        str, Field(description="e.g. 'applies to all cellular therapies: Greco 2024 Table 1'")
    ]


@with_config(_STRICT)
class CriterionSpecOut(TypedDict):
    id: str
    kind: KindText
    title: str
    expression: str
    citations: list[str]
    source: str
    evidence: EvidenceText
    note: str | None
    origin: OriginOut | None


@with_config(_STRICT)
class CriterionOut(CriterionSpecOut):
    result: ResultText
    features: list[FeatureUse]


@with_config(_STRICT)
class FactOut(TypedDict):
    id: str
    title: str
    figure: str
    population: str | None
    citations: list[str]
    source: str
    evidence: EvidenceText
    note: str | None


@with_config(_STRICT)
class CitationOut(TypedDict):
    id: str
    kind: EvidenceKind
    authors: str
    title: str
    journal: str | None
    year: int
    citation: str | None
    doi: str | None
    pmid: str | None
    url: str | None
    registry: list[str]
    note: str | None


@with_config(_STRICT)
class ConfirmationOut(TypedDict):
    """A clinician-judged value the rules cannot compute, still unanswered."""

    feature: Annotated[str, Field(description="The feature id to send once confirmed")]
    label: str
    question: str
    description: Annotated[
        str, Field(description="The source's words the judgement is made against")
    ]
    proceeds_when: Annotated[
        bool, Field(description="The answer under which the patient can go on")
    ]
    criteria: Annotated[list[str], Field(description="The criteria waiting for this answer")]


NOT_ASSESSED: Literal["no_diagnosis_recorded"] = "no_diagnosis_recorded"


@with_config(_STRICT)
class NotAssessedOut(TypedDict):
    """Why a decision is set apart from the assessed ones (its status stays indeterminate)."""

    code: Annotated[
        Literal["no_diagnosis_recorded"],
        Field(
            description="no_diagnosis_recorded: nothing of this protocol's indication is "
            "recorded (its diagnosis is unknown) while another indication is met"
        ),
    ]
    message: str
    recorded: Annotated[
        list[str], Field(description="The indications the patient has recorded, e.g. ['ssc']")
    ]


_ASSESSED = (
    "false: not assessed (`not_assessed` says why): the patient has another disease recorded "
    "and this protocol's diagnosis is unknown, so its `indeterminate` is about the diagnosis, "
    "not an open question of this protocol; show it apart. Absent from answers recorded "
    "before this field."
)


@with_config(_STRICT)
class DecisionOut(TypedDict):
    """One rule set's decision in full: every criterion with its trace, and the evidence."""

    ruleset: RulesetRef
    status: StatusText
    reasons: Annotated[
        list[str], Field(description="Criteria that settled an ineligible/not_indicated")
    ]
    criteria: list[CriterionOut]
    cautions: list[CriterionOut]
    risks: list[FactOut]
    outcomes: list[FactOut]
    missing: Annotated[
        list[str],
        Field(description="Values to measure (feature ids) that would decide an indeterminate"),
    ]
    to_confirm: Annotated[
        list[ConfirmationOut],
        Field(
            description="Clinician confirmations that would decide an indeterminate; apart "
            "from `missing`: answer them with the feature id as true or false"
        ),
    ]
    citations: list[CitationOut]
    notes: list[str]
    assessed: NotRequired[Annotated[bool, Field(description=_ASSESSED)]]
    not_assessed: NotRequired[NotAssessedOut]


@with_config(_STRICT)
class SummaryRef(TypedDict):
    id: str
    version: str
    hash: str
    title: str
    review_status: ReviewStatus


@with_config(_STRICT)
class ReasonOut(TypedDict):
    id: str
    kind: Literal["indication", "inclusion", "exclusion"]
    title: str
    source: str


@with_config(_STRICT)
class MissingOut(TypedDict):
    feature: str
    label: str
    unit: str | None


@with_config(_STRICT)
class QuestionOut(TypedDict):
    feature: str
    question: str


@with_config(_STRICT)
class DecisionSummaryOut(TypedDict):
    """`?view=summary`: the verdict and what would decide it, without the trace."""

    ruleset: SummaryRef
    status: StatusText
    reasons: Annotated[
        list[ReasonOut], Field(description="Criteria that settled it, with their titles")
    ]
    missing: list[MissingOut]
    to_confirm: list[QuestionOut]
    assessed: NotRequired[Annotated[bool, Field(description=_ASSESSED)]]
    not_assessed: NotRequired[NotAssessedOut]


@with_config(_STRICT)
class CorrectionOut(TypedDict):
    """A value given against an implication of the catalogue (3 g of IV cyclophosphamide
    means a prior alkylating agent): the implied value was used; correct the record. Or a
    fraction of a value counted in completed units (an age of 65.5 years): the completed
    units (65) were used."""

    feature: str
    given: Given
    used: Scalar
    because: Annotated[
        str | None,
        Field(description="The implication and why it holds, or the rounding to completed units"),
    ]


@with_config(_STRICT)
class WarningOut(TypedDict):
    """Something about the request as a whole that the caller should know: the answer stands,
    but probably not as the caller meant it."""

    code: Annotated[
        Literal["no_features"],
        Field(description="no_features: no feature value was given or found in the FHIR bundle"),
    ]
    message: str


NO_FEATURES: WarningOut = {
    "code": "no_features",
    "message": "No feature value was given (nor found in a FHIR bundle): nothing is known about "
    "the patient, so every verdict is undecided. Send `features`, an object of feature id -> "
    "value (GET /v1/features), or a FHIR R4 Bundle as `fhir`.",
}


@with_config(_STRICT)
class OmittedOut(TypedDict):
    """`indications=present`: the decisions left out of `results`, set apart as not assessed."""

    code: Literal["no_diagnosis_recorded"]
    count: int
    rulesets: Annotated[list[str], Field(description="Their rule set ids, in request order")]


# --- the builders ---------------------------------------------------------------------------


def ruleset_ref(ruleset: RuleSet) -> RulesetRef:
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


Comparison = Literal["<", "<=", ">", ">=", "==", "!=", "between", "in"]


def _comparison(atom: Atom) -> Comparison:
    if isinstance(atom, Compare):
        return atom.op.value
    return "between" if isinstance(atom, Between) else "in"


# What a criterion's entry says whatever the patient (criterion_spec), and per atom the
# same (feature, expression, comparison, threshold, unit) and its whole entry when the value
# is unknown, in the order the evaluator traces the atoms (reading order, every atom, no
# short-circuit). Built once per criterion and kept on it (`Criterion.shown`: a reload builds
# new criteria). Answers share these objects: nothing mutates an answer once built.
_Static = tuple[str, str, Comparison, Any, str | None]
# The criterion's spec, its atoms' statics, and its whole entry when every value is unknown
# (most criteria of a request that gives a dozen values; the answer shares that entry).
_Shown = tuple[CriterionSpecOut, tuple[tuple[_Static, FeatureUse], ...], CriterionOut]
_RESULTS: dict[bool | None, ResultText] = {True: "met", False: "not_met", None: "unknown"}


def _shown(criterion: Criterion, features: dict[str, Feature]) -> _Shown:
    shown: _Shown | None = criterion.shown
    if shown is None:
        statics = tuple(
            _atom_static(atom, features[atom.feature].unit) for atom in atoms(criterion.when)
        )
        spec = criterion_spec(criterion)
        unknown: CriterionOut = {
            **spec,
            "result": "unknown",
            "features": [entry for _, entry in statics],
        }
        shown = (spec, statics, unknown)
        object.__setattr__(criterion, "shown", shown)  # a cache on an immutable object
    return shown


def _atom_static(atom: Atom, unit: str | None) -> tuple[_Static, FeatureUse]:
    comparison = _comparison(atom)
    static = (atom.feature, atom.text, comparison, _threshold(atom), unit)
    unknown: FeatureUse = {
        "feature": atom.feature,
        "expression": atom.text,
        "comparison": comparison,
        "threshold": static[3],
        "unit": unit,
        "value": None,
        "margin": None,
        "result": "unknown",
    }
    return static, unknown


def _atom(
    given: FeatureValue | None,
    result: bool | None,
    margin: float | None,
    static: _Static,
    unknown: FeatureUse,
) -> FeatureUse:
    if given is None:
        return unknown
    feature, expression, comparison, threshold, unit = static
    # One literal (the static keys, then the patient's): about twice as fast as merging a
    # shared dict, and this runs for every known value of every answer.
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
def _provenance(provenance: ValueProvenance) -> Provenance:
    # Provenance's fields are Provenance's keys; only those set are shown.
    return {k: v for k, v in asdict(provenance).items() if v is not None}  # type: ignore[return-value]


_INPUT = _provenance(INPUT)


def _entry(
    criterion: Criterion, record: tuple[Any, ...], offset: int, features: dict[str, Feature]
) -> CriterionOut:
    """A criterion's entry, read from a Decision's record at the criterion's offset."""
    spec, statics, unknown = _shown(criterion, features)
    if len(statics) == 1:  # most criteria: one comparison
        given, result, margin = record[offset + 1 : offset + 4]
        if given is None:
            return unknown
        static, atom_unknown = statics[0]
        shown = [_atom(given, result, margin, static, atom_unknown)]
    else:
        end = offset + 1 + 3 * len(statics)
        if record[offset + 1 : end : 3].count(None) == len(statics):
            return unknown
        at = offset + 1
        shown = []
        for static, atom_unknown in statics:
            shown.append(_atom(record[at], record[at + 1], record[at + 2], static, atom_unknown))
            at += 3
    # A copy and two keys: ~40% faster than {**spec, ...}, the same keys in the same order.
    entry = cast(CriterionOut, spec.copy())
    entry["result"] = _RESULTS[record[offset]]
    entry["features"] = shown
    return entry


@lru_cache(maxsize=4096)
def criterion_spec(criterion: Criterion) -> CriterionSpecOut:
    return {
        "id": criterion.id,
        "kind": criterion.kind.value,
        "title": criterion.title,
        "expression": criterion.text,
        "citations": list(criterion.citations),
        "source": criterion.source,
        "evidence": criterion.evidence.value,  # type: ignore[typeddict-item]  # never unverified
        "note": criterion.note,
        "origin": _origin(criterion),
    }


def _origin(criterion: Criterion) -> OriginOut | None:
    origin = criterion.origin
    if origin is None:
        return None
    return {
        "fragment": origin.fragment,
        "title": origin.title,
        "applies_to": origin.applies_to,
        "label": origin.label(criterion.source),
    }


def to_confirm(result: Decision, features: dict[str, Feature]) -> list[ConfirmationOut]:
    """The clinician confirmations that would decide an indeterminate status, each with the
    question, the answer that lets the patient go on and the criteria waiting for it."""
    out: list[ConfirmationOut] = []
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


def correction(ident: str, value: FeatureValue) -> CorrectionOut:
    """A value given against a catalogue implication, and what was used instead (derive.py)."""
    return {
        "feature": ident,
        "given": {"value": value.given_value, "unit": value.given_unit},
        "used": value.value,
        "because": value.provenance.derivation,
    }


def fact(spec: FactSpec) -> FactOut:
    return {
        "id": spec.id,
        "title": spec.title,
        "figure": spec.figure,
        "population": spec.population,
        "citations": list(spec.cite),
        "source": spec.source,
        "evidence": spec.evidence.value,  # type: ignore[typeddict-item]  # never unverified
        "note": spec.note,
    }


def citation(spec: EvidenceSpec) -> CitationOut:
    return {
        "id": spec.id,
        "kind": spec.kind,
        "authors": spec.authors,
        "title": spec.title,
        "journal": spec.journal,
        "year": spec.year,
        "citation": spec.citation,
        "doi": spec.doi,
        "pmid": spec.pmid,
        "url": spec.url,
        "registry": list(spec.registry),
        "note": spec.note,
    }


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


class _StaticParts(TypedDict):
    ruleset: RulesetRef
    risks: list[FactOut]
    outcomes: list[FactOut]
    citations: list[CitationOut]
    notes: list[str]


_T = TypeVar("_T")


def _spliced(value: _T) -> _T:
    """The same value, as a Spliced* that `render` writes from bytes serialised now."""
    return cast(_T, SplicedDict(value) if isinstance(value, dict) else SplicedList(value))  # type: ignore[arg-type]


@lru_cache(maxsize=256)
def _static(ruleset: RuleSet, rules: RuleBase) -> _StaticParts:
    return {
        "ruleset": _spliced(ruleset_ref(ruleset)),
        "risks": _spliced([fact(r) for r in ruleset.risks]),
        "outcomes": _spliced([fact(o) for o in ruleset.outcomes]),
        "citations": _spliced([citation(rules.evidence[c]) for c in ruleset.citations]),
        "notes": _spliced(list(ruleset.notes)),
    }


def clear_caches() -> None:
    """Forget cached JSON of replaced rule objects (called after a rules reload)."""
    criterion_spec.cache_clear()
    _static.cache_clear()
    _summary_ref.cache_clear()


def decision(result: Decision, rules: RuleBase) -> DecisionOut:
    static = _static(result.ruleset, rules)
    record, features = result.record, rules.features
    entries = [_entry(c, record, offset, features) for c, offset, _ in layout(result.ruleset)]
    deciding = len(result.ruleset.deciding)
    return {
        "ruleset": static["ruleset"],
        "status": result.status.value,
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


def summary(result: Decision, rules: RuleBase) -> DecisionSummaryOut:
    """The verdict without the trace: what a worklist or a registry needs of a decision,
    about a twentieth of `decision`'s bytes. The full answer stays one query away."""
    ruleset, features = result.ruleset, rules.features
    return {
        "ruleset": _summary_ref(ruleset),
        "status": result.status.value,
        "reasons": [
            {"id": c.id, "kind": c.kind.value, "title": c.title, "source": c.source}  # type: ignore[typeddict-item]  # never a caution
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
def _summary_ref(ruleset: RuleSet) -> SummaryRef:
    ref: SummaryRef = {
        "id": ruleset.id,
        "version": ruleset.version,
        "hash": ruleset.hash,
        "title": ruleset.title,
        "review_status": ruleset.review_status,
    }
    return _spliced(ref)


def ruleset_detail(ruleset: RuleSet, rules: RuleBase) -> dict[str, Any]:  # RulesetDetail
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


def not_assessed(ruleset: RuleSet, recorded: tuple[str, ...]) -> NotAssessedOut:
    """Why a decision set apart (run.set_apart) is not assessed, in words (the vocabulary's,
    with the diseases as clinicians name them) and as a code."""
    own = words.INDICATIONS.get(ruleset.indication, ruleset.indication)
    others = " and ".join(words.INDICATIONS.get(i, i) for i in recorded)
    return {
        "code": NOT_ASSESSED,
        "message": words.not_assessed(own, others),
        "recorded": list(recorded),
    }


Presented = DecisionOut | DecisionSummaryOut
_Entry = TypeVar("_Entry", bound=Presented)


def marked(entry: _Entry, reason: NotAssessedOut | None) -> _Entry:
    """A decision as presented, saying whether it was assessed (and if not, why): the same
    dict, just built (by `decision` or `summary`), so no reader has seen it yet."""
    entry["assessed"] = reason is None
    if reason is not None:
        entry["not_assessed"] = reason
    return entry
