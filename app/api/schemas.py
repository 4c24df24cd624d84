"""Request and response models: the OpenAPI contract at /docs.

Responses are built as dicts by `app.engine.present`, `app.services.evaluations`,
`app.services.screenings` and `app.batch.report` (the CLI prints and writes the same JSON),
typed there as TypedDicts these models and the routes use as they are; a test validates real
responses against them so the two cannot drift. The screening job view and report have no
model here: the routes name those TypedDicts directly.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from app.engine.present import (
    CitationOut,
    CorrectionOut,
    CriterionSpecOut,
    DecisionOut,
    DecisionSummaryOut,
    FactOut,
    NotAssessedOut,
    OmittedOut,
    WarningOut,
)
from app.engine.schema import EvidenceSpec, FeatureSpec
from app.services import evaluations
from app.services.evaluations import EvaluationSummary

_FEATURE_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "description": "in the feature's canonical unit"},
        {"type": "boolean"},
        {"type": "string", "description": "an enum feature's value"},
        {
            "type": "object",
            "properties": {"value": {"type": "number"}, "unit": {"type": "string"}},
            "required": ["value", "unit"],
            "additionalProperties": False,
            "description": "a quantity in any UCUM unit convertible to the canonical one",
        },
        {"type": "null", "description": "unknown (same as leaving the feature out)"},
    ]
}

FeatureInput = Annotated[Any, WithJsonSchema(_FEATURE_VALUE_SCHEMA)]
Result = Literal["met", "not_met", "unknown"]
Status = Literal["not_indicated", "ineligible", "indeterminate", "eligible"]

# An RFC 3339 date-time, its UTC offset included. Pydantic alone would also read a bare number
# as seconds since 1970 (`until=0.5`) and a time without an offset as local to nobody knows.
_DATE_TIME = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"
_WITH_OFFSET = re.compile(_DATE_TIME + r"(?:[Zz]|[+-]\d{2}:\d{2})")
_WITHOUT_OFFSET = re.compile(_DATE_TIME)


def _with_offset(value: object) -> object:
    if isinstance(value, str) and _WITH_OFFSET.fullmatch(value):
        return value
    if isinstance(value, str) and _WITHOUT_OFFSET.fullmatch(value):
        raise PydanticCustomError("naive_datetime", "give an offset, e.g. 2026-11-22T08:00Z")
    raise PydanticCustomError(
        "datetime_format", "expected a date-time with a UTC offset, e.g. 2026-11-22T08:00Z"
    )


UtcTime = Annotated[
    datetime,
    BeforeValidator(_with_offset),
    # RFC 3339's date-time, which OpenAPI's format names, always has its offset.
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class EvaluationRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "features": {
                        "ssc_diagnosis": True,
                        "age_years": 45,
                        "lvef_percent": 60,
                        "serum_creatinine": {"value": 80, "unit": "umol/L"},
                        "pao2_mmhg": {"value": 11.2, "unit": "kPa"},
                    },
                    "rulesets": ["hsct-ssc-astis"],
                }
            ]
        },
    )

    features: dict[str, FeatureInput] = Field(
        default_factory=dict,
        description="Feature id -> value; see GET /v1/features. Missing means unknown. "
        "Given alongside `fhir`, these override the values derived from it. At most as many "
        "as the catalogue has (422 `too_long`).",
    )
    fhir: dict[str, Any] | None = Field(
        default=None,
        description="A FHIR R4 Bundle (Patient, Condition, Observation) to derive features "
        "from, by the codes in the catalogue",
    )
    rulesets: list[str] | None = Field(
        default=None,
        description="Rule set ids to evaluate; all shipped ones when omitted. At most as many "
        "as are loaded (422 `too_long`).",
    )
    patient_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Your identifier for the patient (e.g. system|MRN). Stored only as a keyed "
        "pseudonym, which links this patient's evaluations; never stored or logged as given.",
    )


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _RulesetFields(_Out):
    id: str
    version: str
    hash: str
    title: str
    therapy: Literal["hsct", "msc", "car_t"]
    indication: Literal["ssc", "sle"]
    protocol: str
    source: str
    review_status: Literal["draft", "in_review", "approved"]
    review_note: str


class FhirValue(_Out):
    """One feature's value as the bundle gave it (the key is the feature id)."""

    value: float | bool | str = Field(
        description="The value used: a number in `unit`, a boolean, or an enum value"
    )
    unit: str | None = Field(description="The number's UCUM unit; null for other values")
    resource: str | None = Field(
        description="Where it was read: the resource's reference (`Observation/<id>`, "
        "`Condition/<id>`), `Patient`, or why it holds without one (a diagnosis false for "
        '"no active, confirmed Condition in the record")'
    )
    date: str | None = Field(
        description="The date of the resource it was read from (an Observation's effective "
        "time); null when it has none, as the Patient"
    )


class FhirSkipped(_Out):
    """A resource that matched a feature's codes but was not used."""

    resource: str = Field(description="The resource's reference, e.g. `Observation/<id>`")
    feature: str = Field(description="The feature id its codes matched")
    reason: str = Field(
        description="Why it was not used: older than the feature's freshness window (\"2363 "
        'days old; lvef_percent counts for 365 days"), not final, dated after the evaluation '
        "date, contradicted by a refuted Condition, ..."
    )


class FhirUse(_Out):
    used: dict[str, FhirValue] = Field(description="Values taken from the bundle")
    overridden_by_features: list[str] = Field(
        description="Derived from the bundle but overridden by an explicit feature"
    )
    skipped: list[FhirSkipped] = Field(description="Matching resources not used, and why")


# The decision payloads (DecisionOut, DecisionSummaryOut, CorrectionOut, ...) are typed once,
# beside their builder in present.py, and used here as they are.


_WARNINGS = (
    "About the request as a whole (absent when there are none): `no_features` when no feature "
    "value was given or found in the FHIR bundle, so that every verdict is undecided"
)


_INDICATIONS = (
    "Echoes the `indications` query parameter when it was `present` (absent: all); "
    "`omitted` then says which decisions were left out"
)
_OMITTED = (
    "`indications=present` only: the decisions set apart as not assessed (the patient has "
    "another disease recorded and their diagnosis is unknown), left out of `results`"
)


class EvaluationResponse(_Out):
    id: str
    evaluated_at: datetime
    rules_hash: str
    results: list[DecisionOut]
    indications: Literal["all", "present"] = Field(default="all", description=_INDICATIONS)
    omitted: OmittedOut | None = Field(default=None, description=_OMITTED)
    warnings: list[WarningOut] = Field(default_factory=list, description=_WARNINGS)
    corrections: list[CorrectionOut] = Field(
        default_factory=list,
        description="Values given against an implication of the catalogue, replaced by it, "
        "and fractions of a value counted in completed units (age in completed years), "
        "rounded down to them (absent when there are none)",
    )
    fhir: FhirUse | None = None


class EvaluationSummaryResponse(_Out):
    id: str
    evaluated_at: datetime
    rules_hash: str
    results: list[DecisionSummaryOut]
    warnings: list[WarningOut] = Field(default_factory=list, description=_WARNINGS)
    corrections: list[CorrectionOut] = []
    fhir: FhirUse | None = None
    view: Literal["summary"]
    indications: Literal["all", "present"] = Field(default="all", description=_INDICATIONS)
    omitted: OmittedOut | None = Field(default=None, description=_OMITTED)


class EvaluationPage(_Out):
    items: list[EvaluationSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


class RecordedResult(EvaluationResponse):
    cards: list[dict[str, Any]] | None = Field(
        default=None, description="CDS Hooks only: the cards sent, as sent"
    )


class RecordedVerdict(_Out):
    """What a record holds of one decision whatever happens to the presentation."""

    ruleset: dict[str, str]
    status: Status
    reasons: list[str]
    missing: list[str]
    to_confirm: list[str]
    criteria: str = Field(
        description="Each criterion's result in the version's reading order (deciding "
        "criteria, then cautions): M met, N not met, U unknown"
    )
    assessed: bool | None = Field(
        default=None, description="As in the answer; absent from records made before it"
    )
    not_assessed: NotAssessedOut | None = None


class UnprovenResult(_Out):
    """A record whose answer could not be re-rendered and proven: its verdicts only."""

    id: str
    evaluated_at: datetime
    rules_hash: str
    results: list[RecordedVerdict]
    warnings: list[WarningOut] = []
    corrections: list[CorrectionOut] = []
    fhir: FhirUse | None = None
    cards: list[dict[str, Any]] | None = None


# The audit payloads (summaries, records, replays) are typed beside their builders in
# app/services/evaluations.py; a record's `result` is the answer, typed by the models above.
# The alias names the record's schema (else "EvaluationRecord_RecordedResult__...").
EvaluationRecord = TypeAliasType(
    "EvaluationRecord",
    evaluations.EvaluationRecord[RecordedResult | EvaluationSummaryResponse | UnprovenResult],
)


class RulesetSummary(_RulesetFields):
    criteria: int
    cautions: int
    risks: int


class DiagnosticOut(_Out):
    code: str
    name: str
    message: str
    file: str
    line: int
    col: int


class ReloadErrorOut(_Out):
    """A refused reload: the rules listed are still the old ones."""

    at: datetime
    message: str
    diagnostics: list[DiagnosticOut]


class RulesetList(_Out):
    rules_hash: str
    loaded_at: datetime
    reload_error: ReloadErrorOut | None = Field(
        description="Set while the rules directory holds an invalid change that was refused"
    )
    rulesets: list[RulesetSummary]


class RulesetDetail(_RulesetFields):
    file: str
    includes: list[str] = Field(description="Shared fragments applied (rules/fragments/)")
    criteria: list[CriterionSpecOut]
    cautions: list[CriterionSpecOut]
    risks: list[FactOut]
    outcomes: list[FactOut]
    notes: list[str]
    citations: list[CitationOut]


class FeatureList(_Out):
    features: list[FeatureSpec]


class EvidenceList(_Out):
    evidence: list[EvidenceSpec]


class ProblemField(_Out):
    field: str
    code: str
    message: str


class Problem(_Out):
    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemField] | None = Field(
        default=None,
        description="Each field at fault; the first ELIGO_MAX_PROBLEM_ERRORS (50) of them",
    )
    errors_omitted: int | None = Field(
        default=None, description="How many more errors there were than `errors` lists"
    )
