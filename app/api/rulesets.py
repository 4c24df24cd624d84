"""The loaded rules, read-only: rule sets, features, evidence and the rule file schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from app.api.deps import Caller, current_rules, require
from app.api.errors import problem_responses
from app.api.schemas import EvidenceList, FeatureList, RulesetDetail, RulesetList
from app.engine import present
from app.engine.model import RuleBase
from app.engine.schema import ruleset_json_schema
from app.errors import FieldError, NotFound, RulesRefused
from app.reload import ReloadError, RuleReloader
from app.security import Scope

router = APIRouter(prefix="/v1", tags=["rules"])
Rules = Annotated[RuleBase, Depends(current_rules)]


@router.get("/rulesets", response_model=RulesetList)
def list_rulesets(rules: Rules, request: Request) -> Any:
    state = request.app.state
    error: ReloadError | None = state.rules_error
    return {
        "rules_hash": rules.hash,
        "loaded_at": state.rules_loaded_at,
        "reload_error": error.as_dict() if error else None,
        "rulesets": [
            {
                **present.ruleset_ref(r),
                "criteria": len(r.deciding),
                "cautions": len(r.cautions),
                "risks": len(r.risks),
            }
            for r in rules.rulesets.values()
        ],
    }


@router.post(
    "/rulesets/reload",
    response_model=RulesetList,
    responses=problem_responses(401, 403, 409),
    summary="Reload the rules directory now (as SIGHUP does); 409 if the change is refused",
)
async def reload_rulesets(
    request: Request,
    # fresh: a reload is no database write, so no transaction would confirm the client.
    caller: Annotated[Caller, Depends(require(Scope.RULES_ADMIN, fresh=True))],
) -> Any:
    reloader: RuleReloader = request.app.state.reloader
    await reloader.reload_everywhere(f"requested by client {caller.client_id or '(auth off)'}")
    error: ReloadError | None = request.app.state.rules_error
    if error is not None:
        raise RulesRefused(
            f"the rules directory holds an invalid change; still serving "
            f"{request.app.state.rules.hash}",
            [FieldError(f"{d.position}", d.code.value, d.message) for d in error.diagnostics],
        )
    return list_rulesets(request.app.state.rules, request)


@router.get(
    "/rulesets/{ruleset_id}", response_model=RulesetDetail, responses=problem_responses(404)
)
def get_ruleset(ruleset_id: str, rules: Rules) -> Any:
    ruleset = rules.rulesets.get(ruleset_id)
    if ruleset is None:
        raise NotFound(f"no rule set {ruleset_id!r}; see GET /v1/rulesets")
    return present.ruleset_detail(ruleset, rules)


@router.get("/features", response_model=FeatureList)
def list_features(rules: Rules) -> Any:
    return {"features": [present.feature(f) for f in rules.features.values()]}


@router.get("/evidence", response_model=EvidenceList)
def list_evidence(rules: Rules) -> Any:
    return {"evidence": [present.citation(e) for e in rules.evidence.values()]}


@router.get("/schemas/ruleset", summary="JSON Schema of rules/therapies/*.yaml")
def ruleset_schema() -> dict[str, Any]:
    return ruleset_json_schema()
