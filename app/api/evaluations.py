"""POST /v1/evaluations: one patient against the shipped rule sets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from app.api.body import parse_json
from app.api.deps import get_rules
from app.api.errors import invalid_input, validation_errors
from app.api.responses import FastJSONResponse
from app.api.schemas import EvaluationRequest, EvaluationResponse, Problem
from app.engine import present
from app.engine.inputs import InvalidInput, normalise
from app.engine.model import RuleBase
from app.engine.run import evaluate_all, select
from app.errors import InvalidPayload

router = APIRouter(prefix="/v1", tags=["evaluations"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}}
    for code in (400, 413, 415, 422)
}


@router.post(
    "/evaluations",
    response_model=EvaluationResponse,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EvaluationRequest.model_json_schema()}},
        }
    },
    summary="Evaluate one patient against the rule sets",
)
async def create_evaluation(
    request: Request, rules: Annotated[RuleBase, Depends(get_rules)]
) -> Any:
    payload = parse_json(await request.body(), request.headers.get("content-type"))
    try:
        body = EvaluationRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidPayload(
            "request validation failed", validation_errors(list(exc.errors()))
        ) from None
    try:
        rulesets = select(rules, body.rulesets)
        values = normalise(body.features, rules.features)
    except InvalidInput as exc:
        raise invalid_input(exc) from None
    decisions = evaluate_all(rulesets, values)
    # Returning a Response skips FastAPI's re-validation through EvaluationResponse, which
    # would only cost time; a contract test validates real responses against the model.
    return FastJSONResponse(
        {
            "id": str(uuid.uuid4()),
            "evaluated_at": datetime.now(UTC).isoformat(),
            "rules_hash": rules.hash,
            "results": [present.decision(d, rules) for d in decisions],
        }
    )
