"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from app.api.deps import get_rules
from app.engine.model import RuleBase

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: rules are loaded and can be served")
def readyz(rules: Annotated[RuleBase, Depends(get_rules)]) -> dict[str, Any]:
    return {"status": "ready", "rulesets": len(rules.rulesets), "rules_hash": rules.hash}
