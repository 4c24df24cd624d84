"""CDS Hooks 2.0 request and response shapes (cds-hooks.hl7.org/STU2), as pydantic models.

Requests are checked strictly where Eligo relies on a field (the patient id goes into FHIR
queries, so it must be a FHIR id) and loosely elsewhere: a CDS client may send context fields
of its own, which are ignored rather than refused.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FhirAuthorization(_Open):
    """The bearer token the EHR hands over for its FHIR server (CDS Hooks 2.0)."""

    access_token: str = Field(
        min_length=1, description="Sent as `Authorization: Bearer` on each search at fhirServer"
    )
    token_type: Literal["Bearer"] = Field(description="Always `Bearer`")
    expires_in: int = Field(ge=0, description="Seconds the token stays valid")
    scope: str = Field(description="The scopes granted, e.g. `patient/Observation.read ...`")
    subject: str = Field(description="The CDS service the token was issued to")
    patient: str | None = Field(default=None, description="The patient the token is limited to")


class HookContext(_Open):
    """The hook's context; other fields a client sends are ignored."""

    userId: str | None = Field(  # noqa: N815 - the spec's field names
        default=None, description="The user in the EHR, e.g. `Practitioner/123` (not used)"
    )
    patientId: str = Field(  # noqa: N815
        pattern=FHIR_ID,
        description="The FHIR id of the patient in the chart: `{{context.patientId}}` in the "
        "prefetch templates, and the only patient whose data is used (data about another is 422)",
    )
    encounterId: str | None = Field(  # noqa: N815
        default=None, description="The encounter, if any (not used)"
    )
    selections: list[str] | None = Field(
        default=None,
        description="order-select: references (`MedicationRequest/<id>`) to the orders in "
        "draftOrders the user selected; only those are considered",
    )
    draftOrders: dict[str, Any] | None = Field(  # noqa: N815
        default=None,
        description="order-select: a FHIR R4 Bundle of the draft orders. A selected "
        "MedicationRequest of cyclophosphamide is counted as one completed dose today",
    )


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    hook: str = Field(
        min_length=1,
        max_length=100,
        description="The hook of the service called: `patient-view` or `order-select`",
    )
    hookInstance: str = Field(  # noqa: N815
        min_length=1,
        max_length=64,
        description="A UUID for this call, made by the EHR; kept in the audit trail",
    )
    context: HookContext = Field(description="The hook's context (patient, orders)")
    fhirServer: str | None = Field(  # noqa: N815
        default=None,
        pattern=r"^https?://",
        description="The EHR's FHIR base URL, where a prefetch key that is absent or null is "
        "searched; must be listed in ELIGO_CDS_FHIR_SERVERS (otherwise 412)",
    )
    fhirAuthorization: FhirAuthorization | None = Field(  # noqa: N815
        default=None, description="The bearer token for fhirServer"
    )
    prefetch: dict[str, Any] | None = Field(
        default=None,
        description="Key -> what the discovery document's template of that key returned (a "
        "FHIR resource or a searchset Bundle); `null` for no data. A key left out is "
        "searched at fhirServer; with no fhirServer the answer is 412 naming the keys",
    )


class OverrideReason(_Open):
    reason: dict[str, Any] | None = Field(
        default=None, description="The reason chosen, a FHIR Coding"
    )
    userComment: str | None = Field(  # noqa: N815
        default=None, max_length=4000, description="The clinician's own words"
    )


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    card: str = Field(
        min_length=1,
        max_length=36,
        description="The `uuid` of a card this service sent (404 if it sent none such)",
    )
    outcome: Literal["accepted", "overridden"] = Field(description="What the clinician did")
    acceptedSuggestions: list[dict[str, Any]] = Field(  # noqa: N815
        default_factory=list, description="Suggestions accepted (Eligo's cards offer none)"
    )
    overrideReason: OverrideReason | None = Field(  # noqa: N815
        default=None, description="Why the card was overridden"
    )
    outcomeTimestamp: AwareDatetime = Field(  # noqa: N815
        description="When, with a UTC offset"
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    feedback: list[FeedbackItem] = Field(
        min_length=1, max_length=100, description="One item per card acted on"
    )


class Service(BaseModel):
    """One entry of the discovery response."""

    hook: str = Field(description="The hook the service answers")
    id: str = Field(description="Call it at `POST /cds-services/{id}`")
    title: str = Field(description="A name for people")
    description: str = Field(description="When it answers and what its cards say")
    prefetch: dict[str, str] = Field(
        description="Key -> FHIR query template the EHR runs before calling, its answer sent "
        "as `prefetch[key]`: the Patient, the Conditions Eligo can use, the newest final "
        "Observation of each feature, the medication records for prior cyclophosphamide"
    )
    usageRequirements: str | None = Field(  # noqa: N815
        default=None, description="What a client must do to use the service"
    )


class Discovery(BaseModel):
    services: list[Service] = Field(description="The CDS services offered")


class Coding(BaseModel):
    system: str = Field(description="Eligo's code system of therapies")
    code: str = Field(description="`hsct`, `msc` or `car_t`")
    display: str = Field(description="The therapy's name")


class CardSource(BaseModel):
    """Where the card's opinion comes from: Eligo's rule sets."""

    label: str = Field(description="The rule sets' name and review status, shown on the card")
    url: str = Field(
        description="The rule set's description (`/v1/rulesets/<id>`), or `/v1/rulesets` for "
        "a card over several protocols"
    )
    topic: Coding = Field(description="The therapy of the card")


class CardLink(BaseModel):
    """A link the EHR shows on the card."""

    label: str = Field(description="The link's text")
    url: str = Field(description="The clinician form on this evaluation (`/?evaluation=<id>`)")
    type: Literal["absolute", "smart"] = Field(
        description="`absolute`: opened as it is; `smart`: a SMART launch the EHR completes "
        "with `iss` and `launch` (only when the calling EHR's FHIR server may launch Eligo)"
    )


class Card(BaseModel):
    """One therapy (HSCT, MSC, CAR-T) under the protocols that apply to the patient."""

    uuid: str = Field(description="Name it as `card` in feedback")
    summary: str = Field(
        max_length=140,
        description="Candidate, undecided or ruled out and under which protocols; for "
        "undecided, what is still open counted",
    )
    indicator: Literal["info", "warning"] = Field(
        description="`warning` when the patient is a candidate and a caution applies (or, for "
        "order-select, when the order would rule out a candidate or undecided patient); "
        "`info` otherwise. Never `critical`"
    )
    detail: str = Field(
        description="GitHub-flavoured Markdown, at most 2 kB: per protocol its verdict and "
        "review status, the first reasons or cautions, what to measure next and what a "
        "clinician must confirm, and a link to every criterion, risk and reference"
    )
    source: CardSource = Field(description="The rule sets the card is about")
    links: list[CardLink] = Field(
        description="Open in Eligo: every criterion, the documented risks and the references"
    )


class HookResponse(BaseModel):
    cards: list[Card] = Field(
        description="One card per therapy with a protocol for the patient's disease; none "
        "when the patient has neither SSc nor SLE recorded, or (order-select) when the "
        "selection changes nothing"
    )


class FeedbackResponse(BaseModel):
    recorded: list[str] = Field(description="The ids of the feedback items stored, in order")
