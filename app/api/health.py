"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import text

from app.api.deps import DbSession, current_rules
from app.api.errors import problem_responses
from app.engine.model import RuleBase

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: rules are loaded and the audit database answers (503 if it does not)",
    responses=problem_responses(503),
)
def readyz(
    rules: Annotated[RuleBase, Depends(current_rules)], session: DbSession
) -> dict[str, Any]:
    session.execute(text("SELECT 1"))  # a database error becomes the 503 of the error handler
    return {"status": "ready", "rulesets": len(rules.rulesets), "rules_hash": rules.hash}
