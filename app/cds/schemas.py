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
    access_token: str = Field(min_length=1)
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=0)
    scope: str
    subject: str
    patient: str | None = None


class HookContext(_Open):
    userId: str | None = None  # noqa: N815 - the spec's field names
    patientId: str = Field(pattern=FHIR_ID)  # noqa: N815
    encounterId: str | None = None  # noqa: N815
    selections: list[str] | None = None
    draftOrders: dict[str, Any] | None = None  # noqa: N815 - a FHIR Bundle


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    hook: str = Field(min_length=1, max_length=100)
    hookInstance: str = Field(min_length=1, max_length=64)  # noqa: N815
    context: HookContext
    fhirServer: str | None = Field(default=None, pattern=r"^https?://")  # noqa: N815
    fhirAuthorization: FhirAuthorization | None = None  # noqa: N815
    prefetch: dict[str, Any] | None = None


class OverrideReason(_Open):
    reason: dict[str, Any] | None = None
    userComment: str | None = Field(default=None, max_length=4000)  # noqa: N815


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    card: str = Field(min_length=1, max_length=36)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[dict[str, Any]] = Field(default_factory=list)  # noqa: N815
    overrideReason: OverrideReason | None = None  # noqa: N815
    outcomeTimestamp: AwareDatetime  # noqa: N815


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100)


class Service(BaseModel):
    """One entry of the discovery response."""

    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]
    usageRequirements: str | None = None  # noqa: N815


class Discovery(BaseModel):
    services: list[Service]
