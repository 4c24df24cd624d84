"""Evaluations: decide for one patient (recorded), and read, list and replay the records."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from app.api.body import json_body
from app.api.deps import (
    Caller,
    DbSession,
    authorise,
    commit,
    current_rules,
    get_rules,
    get_settings,
    in_thread,
    records_at_once,
    request_session,
    require,
)
from app.api.errors import MAX_ERRORS, invalid_input, parse_body, problem_responses
from app.api.responses import FastJSONResponse
from app.api.schemas import (
    EvaluationPage,
    EvaluationRecord,
    EvaluationRequest,
    EvaluationResponse,
    EvaluationSummaryResponse,
    Status,
    UtcTime,
)
from app.db import audit
from app.db.models import Evaluation
from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.engine.suggest import did_you_mean
from app.errors import FieldError, InvalidPayload, NotFound
from app.security import Scope
from app.services import evaluations as service
from app.services.evaluations import ChannelName, Indications, Replay, View
from app.strict_json import field_path, printable

router = APIRouter(prefix="/v1", tags=["evaluations"])
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
FHIR_JSON = "application/fhir+json"

Rules = Annotated[RuleBase, Depends(current_rules)]
AuditReader = Annotated[Caller, Depends(require(Scope.AUDIT_READ))]


_VIEW: TypeAdapter[View] = TypeAdapter(View)
_INDICATIONS: TypeAdapter[Indications] = TypeAdapter(Indications)


def create_evaluation(
    *,
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.EVALUATE))],  # first: before the body
    payload: Annotated[Any, Depends(json_body)],
    session: DbSession,
    view: Annotated[
        View,
        Query(
            description="`full` (default): every criterion with its trace, the risks, "
            "outcomes and citations. `summary`: status, reasons with their titles, missing "
            "and to-confirm, and the rule set's id and hash; recorded the same way."
        ),
    ] = "full",
    indications: Annotated[
        Indications,
        Query(
            description="`all` (default): a decision for every rule set asked for. `present`: "
            "leave out the decisions set apart as not assessed (`assessed: false`: the patient "
            "has another disease recorded and their diagnosis is unknown); the answer's "
            "`omitted` says how many and which. Recorded the same way."
        ),
    ] = "all",
) -> Any:
    """What this route declares (its OpenAPI operation, its credential before its body); a
    request is handled by `_handle_evaluation`, which does the same in the same order."""
    return _evaluate(request, caller, payload, session, (view, indications))


class _WrittenOut(APIRoute):
    """The route of a recorded evaluation, the service's hot path: FastAPI's solving of its
    dependencies for every request (credential, body, session, query) cost a quarter of the
    CPU of the whole request, so the handler calls the same functions itself. The declared
    signature above stays what the OpenAPI document and the route tests read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return _handle_evaluation


async def _handle_evaluation(request: Request) -> Response:
    if records_at_once(request):
        return await _answer(request, None)
    async with request_session(request) as session:
        return await _answer(request, session)


async def _answer(request: Request, session: Session | None) -> Response:
    caller = await authorise(request, session, Scope.EVALUATE)  # before the body
    payload = await json_body(request)
    options = (
        _query(request, "view", _VIEW, "full"),
        _query(request, "indications", _INDICATIONS, "all"),
    )
    return await in_thread(request, _evaluate, request, caller, payload, session, options)


_Option = TypeVar("_Option", View, Indications)


def _query(request: Request, name: str, adapter: TypeAdapter[_Option], default: _Option) -> _Option:
    """A query parameter, refused as FastAPI would (422, at `query.<name>`)."""
    given = request.query_params.get(name)
    if given is None:
        return default
    try:
        return adapter.validate_python(given)
    except ValidationError as exc:
        errors = [{**error, "loc": ("query", name)} for error in exc.errors()]
        raise RequestValidationError(errors) from None


router.add_api_route(
    "/evaluations",
    create_evaluation,
    methods=["POST"],
    route_class_override=_WrittenOut,
    response_model=EvaluationResponse | EvaluationSummaryResponse,
    responses=problem_responses(400, 401, 403, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": EvaluationRequest.model_json_schema()},
                FHIR_JSON: {"schema": {"type": "object", "description": "A FHIR R4 Bundle"}},
            },
        }
    },
    summary="Evaluate one patient against the rule sets (recorded in the audit trail)",
)


def _evaluate(
    request: Request,
    caller: Caller,
    payload: Any,
    session: Session | None,
    options: tuple[View, Indications],
) -> Response:
    # The rules and settings as read here, not as dependencies: FastAPI's solving of each
    # dependency cost more than what it returns (an attribute of app.state).
    rules, settings = get_rules(request), get_settings(request)
    if request.headers.get("content-type", "").split(";")[0].strip() == FHIR_JSON:
        payload = {"fhir": payload}  # the body is the Bundle itself
    _within_rules(payload, rules)
    body = _request(payload)
    patient = service.PatientInput(
        features=body.features, fhir=body.fhir, patient_id=body.patient_id
    )
    asked = service.Options(rulesets=body.rulesets, view=options[0], indications=options[1])
    try:
        decided = service.decide(rules, patient, asked, service.Stamp.new())
    except InvalidInput as exc:
        raise invalid_input(exc) from None
    channel, stored = service.ApiCall(caller.client_id), request.app.state.stored
    key = settings.pseudonym_secret()
    if session is None:  # PostgreSQL: committed here and now, in a transaction of its own
        service.record_now(request.app.state.engine, stored, decided, channel, key)
    else:
        service.record(session, stored, decided, channel, key)
        commit(request, session)  # here, in this worker thread: no hand-off to another for it
    # The bytes the record's digest was taken of. Returning a Response skips FastAPI's
    # re-validation through EvaluationResponse; a contract test validates real responses.
    return Response(decided.body, media_type="application/json")


EXPECTED = (
    "expected `features`: an object of feature id -> value (GET /v1/features), or `fhir`: a "
    "FHIR R4 Bundle (or both); optionally `rulesets` and `patient_id`"
)


def _request(payload: Any) -> EvaluationRequest:
    """The body as a request, or 422. A body that is not shaped like one (a misspelt or
    invented key, no `features` nor `fhir`) is told what is expected, not only pydantic's
    "Extra inputs are not permitted" at the key."""
    try:
        body = parse_body(EvaluationRequest, payload)
    except InvalidPayload as exc:
        raise _reshaped(exc, payload) from None
    if body.fhir is None and "features" not in body.model_fields_set:
        raise InvalidPayload(f"no features given: {EXPECTED}", [_missing()])
    return body


def _reshaped(exc: InvalidPayload, payload: Any) -> InvalidPayload:
    if not isinstance(payload, dict):
        return exc
    unexpected = [k for k in payload if k not in EvaluationRequest.model_fields]
    if not unexpected:
        return exc
    # Pydantic's code is kept (callers may match on it); its message is replaced.
    errors = [e for e in exc.errors if e.code != "extra_forbidden"]
    if "features" not in payload and "fhir" not in payload:
        errors.append(_missing())
    # Only as many as an answer lists (pydantic's own list is as long: it was already paid).
    errors += [_unexpected(key, payload[key]) for key in unexpected[:MAX_ERRORS]]
    names = ", ".join(repr(printable(k, 40)) for k in unexpected[:5])
    names += ", …" if len(unexpected) > 5 else ""
    return InvalidPayload(
        f"unexpected key(s) {names}; {EXPECTED}",
        errors,
        omitted=exc.omitted + max(0, len(unexpected) - MAX_ERRORS),
    )


def _missing() -> FieldError:
    return FieldError("features", "missing", f"no `features` and no `fhir`: {EXPECTED}")


def _unexpected(key: str, value: Any) -> FieldError:
    """An object under an unknown key is most likely the feature values (or a Bundle) under
    another name (`patient`, `values`), whatever the key is closest to."""
    if isinstance(value, dict):
        hint = "; did you mean 'fhir'?" if value.get("resourceType") == "Bundle" else ""
        hint = hint or "; did you mean 'features'?"
    else:
        hint = did_you_mean(key, EvaluationRequest.model_fields)
    # As a field path (an empty key is the body's, a long one cut), as pydantic's were.
    message = f"unexpected key {printable(key)!r}{hint} ({EXPECTED})"
    return FieldError(field_path((key,)), "extra_forbidden", message)


def _within_rules(payload: Any, rules: RuleBase) -> None:
    """More features than the catalogue has, or more rule sets than are loaded, cannot be a
    valid request: refused before each one is judged (and answered with an error of its own)."""
    if not isinstance(payload, dict):
        return
    bounds = (("features", dict, len(rules.features)), ("rulesets", list, len(rules.rulesets)))
    errors = [
        FieldError(
            name,
            "too_long",
            f"{len(given)} given; at most {most}, as many as are loaded (GET /v1/{name})",
        )
        for name, kind, most in bounds
        if isinstance(given := payload.get(name), kind) and len(given) > most
    ]
    if errors:
        raise InvalidPayload("request validation failed", errors)


@router.get(
    "/evaluations",
    response_model=EvaluationPage,
    responses=problem_responses(401, 403, 422, 503),
    summary="List recorded evaluations, newest first",
)
def list_evaluations(
    *,
    session: DbSession,
    _: AuditReader,
    since: Annotated[UtcTime | None, Query(description="From this time (inclusive)")] = None,
    until: Annotated[UtcTime | None, Query(description="Before this time")] = None,
    ruleset: Annotated[str | None, Query(description="Evaluated with this rule set")] = None,
    status: Annotated[
        Status | None, Query(description="With this status (for `ruleset`, if given)")
    ] = None,
    channel: ChannelName | None = None,
    client: Annotated[str | None, Query(description="Asked by this API client id")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> Any:
    filters = audit.Filters(since, until, ruleset, status, channel, client)
    try:
        rows, next_cursor = audit.page(session, filters, limit, cursor)
    except audit.BadCursor as exc:
        raise InvalidPayload(
            "bad cursor", [FieldError("query.cursor", "bad_cursor", str(exc))]
        ) from None
    return {"items": service.summaries(session, rows), "next_cursor": next_cursor}


def _evaluation(session: Session, evaluation_id: str) -> Evaluation:
    # Ids are UUIDs: anything else is not looked for (nor echoed at length).
    found = audit.get(session, evaluation_id) if _UUID.fullmatch(evaluation_id) else None
    if found is None:
        raise NotFound(f"no evaluation {printable(evaluation_id)!r}")
    return found


@router.get(
    "/evaluations/{evaluation_id}",
    response_model=EvaluationRecord,
    responses=problem_responses(401, 403, 404, 503),
    summary="One recorded evaluation: caller, input as received and normalised, full result",
)
def get_evaluation(
    evaluation_id: str,
    session: DbSession,
    rules: Rules,
    _: AuditReader,
) -> Any:
    return FastJSONResponse(
        service.full_record(session, rules, _evaluation(session, evaluation_id))
    )


@router.post(
    "/evaluations/{evaluation_id}/replay",
    response_model=Replay,
    responses=problem_responses(401, 403, 404, 503),
    summary="Re-evaluate a record with its recorded rule set versions and with today's rules",
)
def replay_evaluation(
    evaluation_id: str,
    session: DbSession,
    rules: Rules,
    _: AuditReader,
) -> Any:
    return service.replay(session, rules, _evaluation(session, evaluation_id))
