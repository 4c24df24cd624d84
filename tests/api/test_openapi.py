"""The OpenAPI document against the running app: the security it declares is the security the
routes enforce (every operation called without, with the wrong and with the right credential),
error bodies are documented as the problem+json they are, a 405 lists every method of its path,
and times are date-times with an offset, never bare numbers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.errors import PROBLEM_JSON
from app.api.openapi import API_TOKEN, CDS_CLIENT_JWT
from app.api.schemas import Problem
from app.engine.model import RuleBase
from app.main import create_app
from app.security import Scope
from app.settings import Settings
from tests.conftest import SHIPPED_RULES, add_client, bearer

METHODS = ("get", "post", "put", "patch", "delete")
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


@pytest.fixture(scope="module")
def anonymous(client: TestClient) -> TestClient:
    """The same app, called without any credential, at a Host CDS Hooks allows by default."""
    return TestClient(client.app, base_url="http://localhost", raise_server_exceptions=False)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method in METHODS
    ]


def _url(path: str) -> str:
    """A concrete URL for a templated path: every parameter `x`."""
    return re.sub(r"\{[^}]+\}", "x", path)


def _pattern(template: str) -> str:
    """A regular expression for the URLs a templated path matches."""
    literal_parts = re.split(r"\{[^}]+\}", template)
    return "[^/]+".join(re.escape(part) for part in literal_parts)


def _call(http: TestClient, method: str, path: str, **headers: str) -> Any:
    body = b"{}" if method in ("post", "put", "patch") else None
    headers = {"Content-Type": "application/json", **headers} if body else headers
    return http.request(method.upper(), _url(path), content=body, headers=headers)


# --- security ----------------------------------------------------------------------------------


def test_both_schemes_are_declared(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes[API_TOKEN]["type"] == schemes[CDS_CLIENT_JWT]["type"] == "http"
    assert schemes[API_TOKEN]["scheme"] == schemes[CDS_CLIENT_JWT]["scheme"] == "bearer"
    assert schemes[CDS_CLIENT_JWT]["bearerFormat"] == "JWT"
    assert "ELIGO_CDS_ISSUERS" in schemes[CDS_CLIENT_JWT]["description"]
    # The command the token description names exists (`eligo clients --help`).
    assert "`eligo clients create NAME" in schemes[API_TOKEN]["description"]


def test_the_expected_operations_carry_the_expected_requirements(spec: dict[str, Any]) -> None:
    found = {
        (method.upper(), path): operation.get("security")
        for path, method, operation in _operations(spec)
    }
    assert found["POST", "/v1/evaluations"] == [{API_TOKEN: ["evaluate"]}]
    assert found["GET", "/v1/evaluations"] == [{API_TOKEN: ["audit:read"]}]
    assert found["POST", "/v1/rulesets/reload"] == [{API_TOKEN: ["rules:admin"]}]
    assert found["POST", "/v1/screenings"] == [{API_TOKEN: ["screen"]}]
    assert found["POST", "/cds-services/{service_id}"] == [{CDS_CLIENT_JWT: []}]
    assert found["POST", "/cds-services/{service_id}/feedback"] == [{CDS_CLIENT_JWT: []}]
    for public in ("/v1/rulesets", "/v1/rulesets/{ruleset_id}", "/cds-services", "/healthz"):
        assert found["GET", public] is None, public


def test_every_operation_with_a_requirement_refuses_no_credential_and_no_other_does(
    spec: dict[str, Any], anonymous: TestClient
) -> None:
    for path, method, operation in _operations(spec):
        answer = _call(anonymous, method, path)
        where = f"{method.upper()} {path}: {answer.status_code} {answer.text[:200]}"
        if operation.get("security"):
            assert answer.status_code == 401, where
            # RFC 6750 §3.1: no credential, so a challenge without an error code
            assert answer.headers["www-authenticate"] == 'Bearer realm="eligo"', where
            assert "401" in operation["responses"], where
        else:
            assert answer.status_code not in (401, 403), where


def test_each_token_operation_needs_exactly_its_scope(
    spec: dict[str, Any], anonymous: TestClient
) -> None:
    app: Any = anonymous.app
    for path, method, operation in _operations(spec):
        (requirement,) = operation.get("security") or [{}]
        if API_TOKEN not in requirement:
            continue
        (needed,) = requirement[API_TOKEN]
        others = add_client(app, f"all but {needed}", [s for s in Scope if s.value != needed])
        answer = _call(anonymous, method, path, **bearer(others))
        where = f"{method.upper()} {path} without {needed}: {answer.status_code}"
        assert answer.status_code == 403, where
        assert "403" in operation["responses"], where
        assert f"`{needed}` scope" in operation["description"], where
        only = add_client(app, f"only {needed}", [Scope(needed)])
        answer = _call(anonymous, method, path, **bearer(only))
        assert answer.status_code not in (401, 403), f"{method.upper()} {path} with {needed}"


def test_without_authentication_no_operation_asks_for_a_credential(app_database_url: str) -> None:
    settings = Settings(rules_dir=SHIPPED_RULES, database_url=app_database_url, auth=False)
    document = create_app(settings).openapi()
    assert set(document["components"]["securitySchemes"]) == {API_TOKEN, CDS_CLIENT_JWT}
    assert all(not op.get("security") for _, _, op in _operations(document))


# --- error bodies ------------------------------------------------------------------------------


def test_every_error_is_documented_as_a_problem(spec: dict[str, Any]) -> None:
    for path, method, operation in _operations(spec):
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")):
                content = response["content"]
                assert content == {PROBLEM_JSON: {"schema": PROBLEM_REF}}, (method, path, code)
    # FastAPI's own validation body is never sent, so it is not described either
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_cds_routes_document_401_and_the_ruleset_404_is_a_problem(
    spec: dict[str, Any], client: TestClient
) -> None:
    for path in ("/cds-services/{service_id}", "/cds-services/{service_id}/feedback"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"400", "401", "404", "413", "422"} <= set(responses), path
    one = spec["paths"]["/v1/rulesets/{ruleset_id}"]["get"]["responses"]
    assert one["404"]["content"] == {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    answer = client.get("/v1/rulesets/no-such-ruleset")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert Problem.model_validate(answer.json()).detail.startswith("no rule set 'no-such-ruleset'")


# --- 405 ---------------------------------------------------------------------------------------


def test_a_405_lists_every_method_of_its_path(spec: dict[str, Any], client: TestClient) -> None:
    answer = client.put("/v1/evaluations")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    for path in spec["paths"]:
        url = _url(path)
        # A path written out (/v1/rulesets/reload) is its own resource: only its methods, not
        # GET /v1/rulesets/{ruleset_id} for a rule set called "reload"; a templated path's URL
        # gets every documented template it matches.
        templates = [path] if "{" not in path else spec["paths"]
        documented = {
            method.upper()
            for template in templates
            if re.fullmatch(_pattern(template), url)
            for method in spec["paths"][template]
            if method in METHODS
        }
        unused = next(m for m in ("PATCH", "PUT", "DELETE") if m not in documented)
        answer = client.request(unused, url)
        assert answer.status_code == 405, path
        assert set(answer.headers["allow"].split(", ")) == documented, path
        assert answer.headers["content-type"] == PROBLEM_JSON


# --- times -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("0.5", "datetime_format"),
        ("1700000000", "datetime_format"),
        ("yesterday", "datetime_format"),
        ("2026-11-22T08:00", "naive_datetime"),
        ("2026-11-22", "datetime_format"),
    ],
)
@pytest.mark.parametrize("name", ["since", "until"])
def test_times_must_be_date_times_with_an_offset(
    client: TestClient, name: str, value: str, code: str
) -> None:
    answer = client.get("/v1/evaluations", params={name: value})
    assert answer.status_code == 422, answer.text
    assert [(e["field"], e["code"]) for e in answer.json()["errors"]] == [(f"query.{name}", code)]
    assert "e.g. 2026-11-22T08:00Z" in answer.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "value", ["2026-11-22T08:00Z", "2026-11-22T08:00:00.5+01:00", "2026-11-22 08:00:00-05:00"]
)
def test_date_times_with_an_offset_are_accepted(client: TestClient, value: str) -> None:
    answer = client.get("/v1/evaluations", params={"until": value})
    assert answer.status_code == 200, answer.text


def test_times_are_documented_as_date_times(spec: dict[str, Any]) -> None:
    parameters = spec["paths"]["/v1/evaluations"]["get"]["parameters"]
    for name in ("since", "until"):
        (found,) = [p for p in parameters if p["name"] == name]
        assert {"type": "string", "format": "date-time"} in found["schema"]["anyOf"]


# --- the request's features, from the loaded catalogue -----------------------------------------


def test_the_request_lists_every_feature_with_its_type_unit_range_and_values(
    spec: dict[str, Any], client: TestClient
) -> None:
    """A generated client gets typed features: each id, number/boolean/enum, the canonical
    unit, the plausible range and the allowed values, exactly the loaded catalogue."""
    body = spec["paths"]["/v1/evaluations"]["post"]["requestBody"]["content"]
    features = body["application/json"]["schema"]["properties"]["features"]
    assert features["$ref"] == "#/components/schemas/Features"
    listed = spec["components"]["schemas"]["Features"]
    catalogue = {f["id"]: f for f in client.get("/v1/features").json()["features"]}
    assert set(listed["properties"]) == set(catalogue)
    assert listed["additionalProperties"] is False
    lvef = listed["properties"]["lvef_percent"]
    assert lvef["x-unit"] == "%"
    number = lvef["anyOf"][0]
    assert (number["type"], number["minimum"], number["maximum"]) == ("number", 5, 90)
    assert {"$ref": "#/components/schemas/Quantity"} in lvef["anyOf"]
    assert {"type": "boolean"} in listed["properties"]["pregnant"]["anyOf"]
    enums = [
        (ident, entry)
        for ident, entry in listed["properties"].items()
        if catalogue[ident]["type"] == "enum"
    ]
    assert enums
    for ident, entry in enums:
        assert entry["anyOf"][0]["enum"] == catalogue[ident]["values"]
    assert spec["components"]["schemas"]["Quantity"]["required"] == ["value", "unit"]


def test_whole_number_features_are_documented_as_such(
    spec: dict[str, Any], shipped_rules: RuleBase
) -> None:
    """A count, a score or a class (`integer: exact`: a fraction is 422) is `multipleOf: 1`;
    age in completed years (a fraction is counted down, and said so) and mRSS are not."""
    listed = spec["components"]["schemas"]["Features"]["properties"]
    exact = {i for i, f in shipped_rules.features.items() if f.spec.integer == "exact"}
    assert {"ecog", "nyha_class", "sledai_2k"} <= exact
    for ident, entry in listed.items():
        whole = entry["anyOf"][0].get("multipleOf") == 1
        assert whole == (ident in exact), ident
