"""The OpenAPI document: FastAPI's, plus who may call what.

FastAPI documents security only for dependencies made from its `fastapi.security` classes.
Eligo authenticates with its own (`app.api.deps.require(scope)` for API tokens,
`app.api.cds_hooks.cds_client` for CDS clients' JWTs), whose refusals are RFC 9457 problems
with RFC 6750 challenges. So the schemes are declared here, and each operation's requirement
is read from the dependencies its route really runs: the document cannot claim a token where
none is checked, or leave one out where it is (tests/api/test_openapi.py calls every operation
without a credential to hold it to that).

With authentication off (the announced development mode) no operation needs a credential,
and the document says so by listing no requirement; the schemes stay declared.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from app.api.cds_hooks import cds_client
from app.api.errors import PROBLEM_JSON
from app.api.schemas import Problem
from app.engine.model import Feature, RuleBase
from app.engine.schema import FeatureType
from app.security import Scope

API_TOKEN = "apiToken"  # noqa: S105 - a scheme's name, not a secret
CDS_CLIENT_JWT = "cdsClientJwt"

SCHEMES: dict[str, dict[str, Any]] = {
    API_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "eligo_<client id>_<secret>",
        "description": "An API client's token, made with `eligo clients create NAME --scope "
        "SCOPE`. Each operation names the scope it needs (in its security requirement and "
        "description): no or a bad token is 401, a token without the scope 403.",
    },
    CDS_CLIENT_JWT: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "CDS Hooks 2.0 (Trusting CDS Clients): a JWT signed with ES384 or RS384 "
        "by a CDS client trusted in ELIGO_CDS_ISSUERS, whose `aud` is exactly the URL called "
        "(ELIGO_PUBLIC_URL + path), with `exp` and `iat` at most an hour apart and a `jti` "
        "used once. Anything else is 401 with the reason in WWW-Authenticate.",
    },
}

Requirement = dict[str, list[str]]
PROBLEM = {"$ref": "#/components/schemas/Problem"}
REFUSALS = {
    "401": "No credential, or one that is not valid here; WWW-Authenticate says why",
    "403": "The API token lacks the scope this operation needs",
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency a route runs, however deeply nested."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _scope_of(call: Callable[..., Any]) -> Scope | None:
    """The scope an API-token dependency demands (`require(scope)`'s closure, or an object
    carrying a `scope`), else None."""
    scope = getattr(call, "scope", None)
    if scope is None and inspect.isfunction(call):
        scope = inspect.getclosurevars(call).nonlocals.get("scope")
    return scope if isinstance(scope, Scope) else None


def requirement(route: APIRoute | RouteContext) -> Requirement | None:
    """The credential `route` checks: an API token with its scopes, the CDS client JWT, or
    None for a public operation."""
    scopes: list[str] = []
    for call in _calls(route.dependant):
        if call is cds_client:
            return {CDS_CLIENT_JWT: []}
        scope = _scope_of(call)
        if scope is not None and scope.value not in scopes:
            scopes.append(scope.value)
    return {API_TOKEN: scopes} if scopes else None


def add_security(schema: dict[str, Any], routes: Iterable[Any], auth: bool) -> None:
    """Declare the schemes and, with authentication on, each operation's requirement."""
    schema.setdefault("components", {})["securitySchemes"] = SCHEMES
    # Routers are included lazily (FastAPI 0.16x): their routes are reached through contexts,
    # which carry the prefix and the router-level dependencies.
    for route in iter_route_contexts(list(routes)):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        needed = requirement(route)
        if needed is None:
            continue
        operations = schema["paths"].get(route.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            operation["security"] = [needed] if auth else []
            operation["description"] = _with_note(operation.get("description", ""), needed)
            codes = ["401", "403"] if API_TOKEN in needed else ["401"]
            for code in codes:
                operation["responses"].setdefault(code, {"description": REFUSALS[code]})


def problem_bodies(schema: dict[str, Any]) -> None:
    """Every 4xx and 5xx answer is an RFC 9457 problem (app.api.errors), FastAPI's own 422 for
    parameters included: document each as application/problem+json with the Problem schema,
    the only media type it is sent with."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in components:
        made = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(made.pop("$defs", {}))
        components["Problem"] = made
    for operations in schema["paths"].values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                if code.startswith(("4", "5")):
                    response["content"] = {PROBLEM_JSON: {"schema": PROBLEM}}
                    if response.get("description") == "Validation Error":
                        response["description"] = "Invalid input: `errors` names each field"
    # FastAPI's validation error bodies are never sent: their schemas would only mislead.
    for name in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{name}"' not in json.dumps(schema):
            components.pop(name, None)


def _with_note(description: str, needed: Requirement) -> str:
    if CDS_CLIENT_JWT in needed:
        note = "Needs a CDS client's signed JWT (`cdsClientJwt`)."
    else:
        names = " and ".join(f"`{scope}`" for scope in needed[API_TOKEN])
        note = f"Needs an API token with the {names} scope (`apiToken`)."
    return f"{description}\n\n{note}".strip() if note not in description else description


QUANTITY = {
    "type": "object",
    "properties": {
        "value": {"type": "number"},
        "unit": {"type": "string", "description": "A UCUM unit convertible to the canonical one"},
    },
    "required": ["value", "unit"],
    "additionalProperties": False,
    "description": "A value in another unit, converted to the feature's canonical unit",
}
_UNKNOWN = {"type": "null", "description": "unknown, as if left out"}


def feature_schema(feature: Feature) -> dict[str, Any]:
    """One catalogue feature as a JSON Schema: a generated client gets its type, canonical
    unit, plausible range and allowed values (an out-of-range number is still a 422 naming
    the field, with the range)."""
    spec = feature.spec
    if spec.type is FeatureType.NUMBER:
        number: dict[str, Any] = {"type": "number"}
        if spec.range is not None:
            number["minimum"], number["maximum"] = spec.range
        if spec.unit:
            number["description"] = f"in {spec.unit}"
        if spec.integer == "exact":  # a fraction is 422 not_whole (a count, a score, a class)
            number["multipleOf"] = 1
        kinds = [number, {"$ref": "#/components/schemas/Quantity"}, _UNKNOWN]
    elif spec.type is FeatureType.BOOLEAN:
        kinds = [{"type": "boolean"}, _UNKNOWN]
    else:
        kinds = [{"type": "string", "enum": list(spec.values or [])}, _UNKNOWN]
    shown: dict[str, Any] = {"title": spec.label, "description": spec.description, "anyOf": kinds}
    if spec.unit:
        shown["x-unit"] = spec.unit  # the canonical UCUM unit, for a client's own checks
    return shown


def add_features(schema: dict[str, Any], rules: RuleBase) -> None:
    """The request's `features` as the loaded catalogue: one property per feature id."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Quantity"] = QUANTITY
    components["Features"] = {
        "type": "object",
        "description": "Feature id -> value (GET /v1/features); a feature left out is unknown",
        "properties": {ident: feature_schema(f) for ident, f in rules.features.items()},
        "additionalProperties": False,
        "x-rules-hash": rules.hash,
    }
    body = schema["paths"]["/v1/evaluations"]["post"]["requestBody"]["content"]
    properties = body["application/json"]["schema"]["properties"]
    properties["features"] = {
        "$ref": "#/components/schemas/Features",
        "description": properties["features"].get("description", ""),
    }


def install(app: FastAPI, auth: bool) -> None:
    """Make `app.openapi` FastAPI's document with the security and the loaded catalogue
    added (built once, and the catalogue again after a reload changes the rules)."""
    build = app.openapi  # FastAPI's own; it caches the document in app.openapi_schema

    def openapi() -> dict[str, Any]:
        schema = build()
        if "securitySchemes" not in schema.get("components", {}):
            add_security(schema, app.routes, auth)
            problem_bodies(schema)
        rules: RuleBase = app.state.rules
        if schema["components"]["schemas"].get("Features", {}).get("x-rules-hash") != rules.hash:
            add_features(schema, rules)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
