"""The rule file formats, as pydantic models.

These models are the single definition of what a rule file may contain: the loader validates
against them (stage 2) and `eligo rules schema` publishes their JSON Schema for editors.
Expressions are typed loosely here and checked by the expression compiler (stage 3), which can
point at the offending token instead of reporting one error per union branch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

ID_PATTERN = r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$"
FEATURE_ID_PATTERN = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"

_EXPR_SCHEMA: dict[str, Any] = {
    "$comment": "A criterion: a text expression or an all/any/not tree of them.",
    "anyOf": [
        {
            "type": "string",
            "description": (
                "e.g. `age_years between 18 and 65`, `dlco_percent_predicted < 40 %`, "
                "`pao2_mmhg < 8 kPa`, `ssc_subtype in [diffuse_cutaneous]`, `ild_present`, "
                "`mrss > 14 and (ild_present or internal_organ_involvement)`"
            ),
        },
        {
            "type": "object",
            "properties": {"all": {"type": "array", "items": {"$ref": "#/$defs/Expression"}}},
            "required": ["all"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"any": {"type": "array", "items": {"$ref": "#/$defs/Expression"}}},
            "required": ["any"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"not": {"$ref": "#/$defs/Expression"}},
            "required": ["not"],
            "additionalProperties": False,
        },
    ],
}

_EXPR_PLACEHOLDER = "eligo:expression"
Expression = Annotated[Any, WithJsonSchema({"$comment": _EXPR_PLACEHOLDER})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureType(StrEnum):
    NUMBER = "number"
    BOOLEAN = "boolean"
    ENUM = "enum"


class Therapy(StrEnum):
    HSCT = "hsct"
    MSC = "msc"
    CAR_T = "car_t"


class Indication(StrEnum):
    SSC = "ssc"
    SLE = "sle"


class Coding(_Strict):
    system: str = Field(description="Code system URI, e.g. http://loinc.org")
    code: str
    display: str | None = None


class ConfirmationSpec(_Strict):
    """A clinician-judged value the rules cannot compute (a fitness assessment, a clause whose
    numbers could not be read). Unknown until a clinician answers, it keeps a patient
    `indeterminate`; answers list it as "to confirm", apart from values to measure."""

    question: str = Field(description="What the clinician is asked, in a clinician's words")
    proceeds_when: bool = Field(
        description="The answer under which the patient can go on (false for a "
        "contraindication such as severe comorbidity, true for a fitness assessment)"
    )


class DerivationSpec(_Strict):
    """One implication: when `when` holds, the feature has `value` (3 g of IV cyclophosphamide
    given means a prior alkylating agent). Applied to unknown values only; a value given that
    contradicts it is an input error."""

    when: Expression
    value: bool | str | float
    because: str = Field(description="Why the implication holds, shown in the trace")


class FeatureSpec(_Strict):
    id: str = Field(pattern=FEATURE_ID_PATTERN)
    type: FeatureType
    label: str
    description: str
    group: str = Field(description="Form section: demographics, skin, lung, heart, kidney, …")
    unit: str | None = Field(default=None, description="Canonical UCUM unit (numbers only)")
    range: tuple[float, float] | None = Field(
        default=None, description="Plausible [min, max], inclusive, in the canonical unit"
    )
    values: list[str] | None = Field(default=None, description="Allowed values (enums only)")
    other_units: list[str] = Field(
        default_factory=list, description="Other UCUM units a form offers for this feature"
    )
    molar_mass: float | None = Field(
        default=None, gt=0, description="g/mol, to convert substance to mass concentration"
    )
    integer: Literal["completed", "exact"] | None = Field(
        default=None,
        description="A whole number by definition. `completed`: counted in completed units "
        "(age in completed years), so a fraction is rounded down to them and the answer says "
        "so; `exact`: a count, score or class, so a fraction is refused",
    )
    max_age_days: int | None = Field(
        default=None, gt=0, description="How old an observation may be and still count"
    )
    codes: list[Coding] = Field(default_factory=list)
    absent_in_record: Literal["unknown", "false"] = Field(
        default="unknown",
        description="What a FHIR record without an active, confirmed Condition coded for this "
        "feature means: unknown, or false for a diagnosis the problem list would carry",
    )
    confirmation: ConfirmationSpec | None = Field(
        default=None, description="Set for a clinician-judged confirmation (boolean features)"
    )
    derive: list[DerivationSpec] = Field(
        default_factory=list, description="Values implied by other features"
    )


class FloorSpec(_Strict):
    """A general contraindication every rule set of the named therapies must exclude on."""

    id: str = Field(pattern=ID_PATTERN)
    title: str
    when: Expression = Field(
        description="The contraindication: a yes/no feature, `feature >= x`, `feature <= x`, "
        "`feature between a and b` or `feature in [...]`"
    )
    therapies: list[Therapy] = Field(min_length=1)
    policy: str = Field(description="Where the policy is stated, e.g. 'EVIDENCE.md §8.1'")
    note: str | None = Field(default=None, description="Why: the sources that state it")
    fragment: str | None = Field(default=None, description="The fragment that provides it")


class FeatureFile(_Strict):
    features: list[FeatureSpec]
    safety_floor: list[FloorSpec] = Field(default_factory=list)


class EvidenceKind(StrEnum):
    TRIAL = "trial"
    GUIDELINE = "guideline"
    REVIEW = "review"
    REGISTRY = "registry"
    PROTOCOL = "protocol"
    EDUCATION = "education"


class EvidenceSpec(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    kind: EvidenceKind
    authors: str
    title: str
    journal: str | None = None
    year: int = Field(ge=1900, le=2100)
    citation: str | None = Field(default=None, description="Volume(issue):pages")
    doi: str | None = Field(default=None, pattern=r"^10\.\d{4,9}/\S+$")
    pmid: str | None = Field(default=None, pattern=r"^\d{1,9}$")
    url: str | None = None
    registry: list[str] = Field(default_factory=list, description="Trial registry ids (NCT…)")
    note: str | None = None


class EvidenceFile(_Strict):
    evidence: list[EvidenceSpec]


class ReviewStatus(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"


class EvidenceStatus(StrEnum):
    """Mirrors EVIDENCE.md. `unverified` may be recorded but never used as a threshold."""

    VERIFIED = "verified"
    PARTIAL = "partial"
    UNVERIFIED = "unverified"


class Review(_Strict):
    status: ReviewStatus
    note: str = Field(min_length=20, description="What the rule set still needs before use")
    reviewed_by: list[str] = Field(default_factory=list)
    reviewed_on: str | None = None


class CriterionSpec(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str
    when: Expression
    cite: list[str] = Field(min_length=1)
    source: str = Field(description="Document and table the threshold was taken from")
    evidence: EvidenceStatus
    note: str | None = None


class FactSpec(_Strict):
    """A documented risk or outcome: a figure with its population and citation."""

    id: str = Field(pattern=ID_PATTERN)
    title: str
    figure: str
    population: str | None = None
    cite: list[str] = Field(min_length=1)
    source: str
    evidence: EvidenceStatus
    note: str | None = None


class FragmentSpec(_Strict):
    """Criteria shared by several rule sets (rules/fragments/*.yaml), included by name.

    Contraindications that hold for a whole therapy are written once; each including rule
    set shows them with where they come from ("applies to all cellular therapies")."""

    id: str = Field(pattern=ID_PATTERN)
    title: str
    applies_to: str = Field(
        description="Whom it applies to, as shown beside each criterion: "
        "'all cellular therapies', 'autologous HSCT', ..."
    )
    therapies: list[Therapy] = Field(min_length=1, description="Who may include it")
    indications: list[Indication] = Field(
        default_factory=lambda: list(Indication),
        min_length=1,
        description="Rule sets of which indications may include it (default: all)",
    )
    source: str = Field(description="The documents and the policy it encodes")
    include: list[str] = Field(default_factory=list, description="Other fragments, by id")
    inclusions: list[CriterionSpec] = Field(default_factory=list)
    exclusions: list[CriterionSpec] = Field(default_factory=list)
    cautions: list[CriterionSpec] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class RuleSetSpec(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$", description="Semantic version")
    title: str
    therapy: Therapy
    indication: Indication
    protocol: str
    source: str = Field(description="The documents this rule set encodes")
    review: Review
    include: list[str] = Field(
        default_factory=list,
        description="Fragments (rules/fragments/*.yaml) whose criteria this rule set applies",
    )
    indication_criterion: CriterionSpec
    inclusions: list[CriterionSpec] = Field(default_factory=list)
    exclusions: list[CriterionSpec] = Field(default_factory=list)
    cautions: list[CriterionSpec] = Field(default_factory=list)
    risks: list[FactSpec] = Field(min_length=1)
    outcomes: list[FactSpec] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def ruleset_json_schema(kind: Literal["ruleset", "fragment"] = "ruleset") -> dict[str, Any]:
    """JSON Schema (2020-12) for rules/therapies/*.yaml (or rules/fragments/*.yaml), for
    editors' YAML language servers."""
    model = RuleSetSpec if kind == "ruleset" else FragmentSpec
    schema: dict[str, Any] = _link_expressions(model.model_json_schema(mode="validation"))
    schema.setdefault("$defs", {})["Expression"] = _EXPR_SCHEMA
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://eligo.example/schemas/{kind}.schema.json"
    return schema


def _link_expressions(node: Any) -> Any:
    """Point every expression field at the recursive `Expression` definition.

    pydantic cannot emit a reference to a definition it did not generate, so expression
    fields carry a placeholder that is swapped for the `$ref` here.
    """
    if isinstance(node, dict):
        if node.get("$comment") == _EXPR_PLACEHOLDER:
            return {"$ref": "#/$defs/Expression"}
        return {key: _link_expressions(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_link_expressions(item) for item in node]
    return node


def file_json_schema(kind: Literal["features", "evidence"]) -> dict[str, Any]:
    model = FeatureFile if kind == "features" else EvidenceFile
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
