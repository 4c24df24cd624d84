"""CDS Hooks 2.0: discovery, the hook services and their feedback, at /cds-services.

Calls are authenticated by the CDS client's signed JWT (app.cds.jwt), not by Eligo API tokens:
an EHR registers Eligo once, with its issuer and keys trusted here (ELIGO_CDS_ISSUERS).
Discovery is public, like the rule sets it describes.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Path, Request

from app.api.body import json_body, json_schema_body
from app.api.deps import DbSession, current_rules, current_settings, get_settings
from app.api.errors import invalid_input, parse_body, problem_responses
from app.api.responses import FastJSONResponse
from app.cds.jwt import ClientTokenVerifier, public_base
from app.cds.schemas import (
    Discovery,
    FeedbackRequest,
    FeedbackResponse,
    HookRequest,
    HookResponse,
)
from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.fhir.smart import launch_link
from app.services import cds_hooks as service
from app.settings import Settings

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"])

Rules = Annotated[RuleBase, Depends(current_rules)]
Config = Annotated[Settings, Depends(current_settings)]
ServiceId = Annotated[
    str,
    Path(
        description="A service of the discovery document: `eligo-patient-view` or "
        "`eligo-order-select` (any other is 404)"
    ),
]


def base_url(request: Request, settings: Settings) -> str:
    """This service's public URL: ELIGO_PUBLIC_URL, else as the request reached us if its Host
    is allow-listed (401 otherwise: app.cds.jwt.public_base says why)."""
    return public_base(
        settings.public_url,
        str(request.base_url),
        request.headers.get("host"),
        settings.cds_allowed_hosts,
    )


def cds_client(request: Request) -> str | None:
    """The verified issuer of the call's JWT, whose `aud` must be exactly the URL called.
    None only in the announced development mode without authentication (where the Host is
    still checked first: card links are built from it)."""
    settings = get_settings(request)
    base = base_url(request, settings)
    if not settings.auth:
        return None
    verifier: ClientTokenVerifier = request.app.state.cds_verifier
    audience = base + request.url.path
    return verifier.verify(request.headers.get("authorization"), audience).issuer


Issuer = Annotated[str | None, Depends(cds_client)]


@router.get(
    "",
    response_model=Discovery,
    summary="CDS Hooks discovery",
    description="The services to register with the EHR, with the prefetch templates the EHR "
    "runs before each call. Public, like the rules: no credential needed.",
)
def discover(rules: Rules) -> Any:
    return FastJSONResponse(service.discovery(rules))


@router.post(
    "/{service_id}",
    summary="Answer a hook call with eligibility cards",
    description="A CDS Hooks 2.0 call. The data comes from `prefetch` (the discovery "
    "document's templates, run by the EHR); a key absent or null is searched at `fhirServer` "
    "with `fhirAuthorization`. 412 when the data cannot be had (the detail names the keys and "
    "why); 422 for data about another patient than `context.patientId`. Every call is "
    "recorded in the audit trail (channel `cds-hooks`, its `hookInstance`).",
    response_model=HookResponse,  # documents the cards; the answer is built and sent as is
    responses=problem_responses(400, 401, 404, 412, 413, 415, 422, 503),
    openapi_extra=json_schema_body(HookRequest, "A CDS Hooks 2.0 hook request"),
)
def answer_hook(
    *,
    issuer: Issuer,
    service_id: ServiceId,
    request: Request,
    payload: Annotated[Any, Depends(json_body)],
    rules: Rules,
    settings: Config,
    session: DbSession,
) -> Any:
    service.service(service_id)  # an unknown service is a 404 before the body is judged
    body = parse_body(HookRequest, payload)
    http: httpx.Client = request.app.state.fhir_http
    base = base_url(request, settings)
    context = service.Context(
        issuer=issuer,
        http=http,
        fhir_servers=settings.cds_fhir_servers,
        base_url=base,
        key=settings.pseudonym_secret(),
        smart_launch=launch_link(base, settings.smart_issuers, body.fhirServer),
    )
    try:
        answer = service.call(
            session, rules, request.app.state.stored, service_id, request=body, context=context
        )
    except InvalidInput as exc:
        raise invalid_input(exc) from None
    return FastJSONResponse(answer)


@router.post(
    "/{service_id}/feedback",
    summary="Record what the clinician did with cards",
    description="CDS Hooks 2.0 feedback, stored with the decision each card came from. A "
    "`card` this service did not send is 404 naming it, and nothing of the request is stored.",
    response_model=FeedbackResponse,
    responses=problem_responses(400, 401, 404, 413, 415, 422, 503),
    openapi_extra=json_schema_body(FeedbackRequest, "CDS Hooks 2.0 feedback on served cards"),
)
def give_feedback(
    *,
    issuer: Issuer,
    service_id: ServiceId,
    payload: Annotated[Any, Depends(json_body)],
    session: DbSession,
) -> Any:
    service.service(service_id)
    body = parse_body(FeedbackRequest, payload)
    return FastJSONResponse({"recorded": service.feedback(session, service_id, body, issuer)})
