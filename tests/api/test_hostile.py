"""Hostile input at every JSON endpoint (issue 17): no answer is a 500, an outage (503) or
larger than the request deserves, and the log never has a traceback for it.

- credentials are checked before a body is read (anonymous megabytes cost nothing);
- bounds where input fans out: nesting depth, items per array or object, features and rule
  sets no more than are loaded, error lists cut to the first N with a count of the rest;
- one policy for strings: U+0000 and unpaired surrogates are 422 naming the field, in bodies,
  paths and queries; a database's DataError is 4xx, never 503;
- numbers: what is not a finite double is `not_finite`; whatever is echoed can be encoded.

The app here runs with authentication on, the default 4 MiB body limit and CDS calls signed by
the sandbox issuer; one real server on loopback checks what the test client cannot show.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool

from app import strict_json
from app.api import body, screenings, web
from app.api.cds_hooks import cds_client
from app.api.schemas import Problem
from app.cds.issuers import IssuerConfig
from app.db import audit
from app.main import create_app
from app.security import Scope
from app.settings import Settings
from tests.cds.keys import SANDBOX_ISSUER, claims, sandbox_jwks, sign
from tests.conftest import SHIPPED_RULES, add_client, bearer
from tests.databases import app_database
from tests.e2e.helpers import free_port

BASE = "http://testserver"
JSON = {"content-type": "application/json"}
FHIR_JSON = {"content-type": "application/fhir+json"}
DEEP = b"[" * 1000  # 1,000 nested arrays, 1 kB: a RecursionError in Python's parser
NUL = "\x00"
LONE = "\ud800"
HUGE = "1" * 401  # an integer no double can hold
ABOVE_2_64 = 10**20  # 100 x 10^18 ymol/L of creatinine is 1.13 mg/dL: in range


@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test sends, nothing in the log is an error or carries a traceback."""
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    with app_database(tmp_path_factory.mktemp("hostile")) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            cds_issuers={SANDBOX_ISSUER: IssuerConfig(jwks=sandbox_jwks())},
            public_url=BASE,
        )
        yield create_app(settings)


@pytest.fixture(scope="module")
def token(app: FastAPI) -> str:
    return add_client(app, "hostile tester", Scope)


@pytest.fixture(scope="module")
def client(app: FastAPI, token: str) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, headers=bearer(token)) as http:
        yield http


@pytest.fixture(scope="module")
def anonymous(app: FastAPI) -> TestClient:
    """No credentials (and no second run of the app's lifespan)."""
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def service(client: TestClient) -> str:
    ident: str = client.get("/cds-services").json()["services"][0]["id"]
    return ident


def signed(path: str) -> dict[str, str]:
    """A CDS client's headers for one call (each JWT is good once)."""
    return {**JSON, "Authorization": f"Bearer {sign(claims(aud=BASE + path))}"}


# Every route that reads a JSON body: (path, content type); CDS paths take the service id.
JSON_ROUTES = [
    ("/v1/evaluations", "application/json"),
    ("/v1/evaluations", "application/fhir+json"),
    ("/v1/screenings", "application/json"),
    ("/cds-services/{service}", "application/json"),
    ("/cds-services/{service}/feedback", "application/json"),
]


def post_json(
    client: TestClient, path: str, media: str, content: bytes, *, credentials: bool = True
) -> httpx.Response:
    """POST `content` as `media`, with the credential the route takes (an API token is the
    client's default header; a CDS call gets a signed JWT), or none."""
    headers = {"content-type": media}
    if path.startswith("/cds-services/") and credentials:
        headers = {**signed(path), **headers}
    response: httpx.Response = client.post(path, content=content, headers=headers)
    return response


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("application/problem+json")
    answer: dict[str, Any] = response.json()
    Problem.model_validate(answer)
    assert "retry-after" not in response.headers
    return answer


def fields(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in answer.get("errors", [])]


# 1. Credentials before the body ------------------------------------------------------------

BODY_READERS = {body.json_body, screenings.submission, web.admitted_form, web.small_form}
CREDENTIAL_CHECKS = {cds_client, web.admission, web.sign_in_gate}


def _solved(dependant: Any) -> list[Callable[..., Any]]:
    """A route's dependencies in the order FastAPI calls them (each after its own)."""
    order: list[Callable[..., Any]] = []
    for sub in dependant.dependencies:
        order += _solved(sub)
        order.append(sub.call)
    return order


def _checks_credentials(call: Callable[..., Any]) -> bool:
    return call in CREDENTIAL_CHECKS or call.__qualname__ == "require.<locals>.dependency"


def test_every_route_that_reads_a_body_checks_credentials_first(app: FastAPI) -> None:
    readers = set()
    for route in iter_route_contexts(list(app.routes)):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        order = _solved(dependant)
        reading = [i for i, call in enumerate(order) if call in BODY_READERS]
        if not reading:
            continue
        readers |= {(method, route.path_format) for method in route.methods or ()}
        checking = [i for i, call in enumerate(order) if _checks_credentials(call)]
        assert checking, f"{route.path_format} reads a body and checks no credential"
        assert checking[0] < reading[0], f"{route.path_format} reads its body before credentials"
    assert readers == {
        ("POST", "/v1/evaluations"),
        ("POST", "/v1/screenings"),
        ("POST", "/cds-services/{service_id}"),
        ("POST", "/cds-services/{service_id}/feedback"),
        ("POST", "/"),
        ("POST", "/fhir"),
        ("POST", "/sign-in"),
        ("POST", "/sign-out"),
    }


class Unread:
    """A request body that notes whether anyone read it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.read = False

    def __iter__(self) -> Iterator[bytes]:
        self.read = True
        yield self.data


@pytest.mark.parametrize(("path", "media"), JSON_ROUTES)
def test_an_anonymous_body_is_refused_unread(
    anonymous: TestClient, service: str, path: str, media: str
) -> None:
    sent = Unread(b'{"features": {}}' + b" " * 100_000)
    url = path.format(service=service)
    response = anonymous.post(url, content=iter(sent), headers={"content-type": media})
    answer = problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not sent.read, answer


@pytest.mark.parametrize(("path", "media"), JSON_ROUTES)
def test_deep_nesting_without_a_token_is_401_not_500(
    anonymous: TestClient, service: str, path: str, media: str
) -> None:
    url = path.format(service=service)
    problem(post_json(anonymous, url, media, DEEP, credentials=False), 401)


def test_a_token_without_the_scope_is_403_before_the_body(app: FastAPI) -> None:
    reader = add_client(app, "auditor only", [Scope.AUDIT_READ])
    with TestClient(app, raise_server_exceptions=False, headers=bearer(reader)) as http:
        sent = Unread(DEEP)
        response = http.post("/v1/evaluations", content=iter(sent), headers=JSON)
        problem(response, 403)
        assert not sent.read


# 2. Bounds where input fans out ------------------------------------------------------------


@pytest.mark.parametrize(("path", "media"), JSON_ROUTES)
def test_deep_nesting_with_credentials_is_422_too_deep(
    client: TestClient, service: str, path: str, media: str
) -> None:
    url = path.format(service=service)
    answer = problem(post_json(client, url, media, DEEP), 422)
    assert fields(answer) == [("body", "too_deep")]
    assert "32 levels" in answer["errors"][0]["message"]
    # as deep as allowed is parsed and judged as usual
    fine = b'{"features": {"age_years": 45}, "x": ' + b"[" * 30 + b"]" * 30 + b"}"
    assert "too_deep" not in post_json(client, url, media, fine).text


def test_a_million_rule_set_ids_get_a_short_answer(client: TestClient) -> None:
    ids = b",".join([b'"x"'] * 1_000_000)
    sent = b'{"features": {}, "rulesets": [' + ids + b"]}"  # 4.0 MB
    response = client.post("/v1/evaluations", content=sent, headers=JSON)
    answer = problem(response, 422)
    assert fields(answer) == [("rulesets", "too_long")]
    assert len(response.content) < 1000


def test_more_rule_sets_than_are_loaded_cannot_be_valid(client: TestClient) -> None:
    loaded = [r["id"] for r in client.get("/v1/rulesets").json()["rulesets"]]
    response = client.post("/v1/evaluations", json={"features": {}, "rulesets": [*loaded, "x"]})
    answer = problem(response, 422)
    assert fields(answer) == [("rulesets", "too_long")]
    assert f"at most {len(loaded)}" in answer["errors"][0]["message"]
    every = client.post("/v1/evaluations", json={"features": {}, "rulesets": loaded})
    assert every.status_code == 200, every.text[:500]


def test_358k_unknown_features_get_a_short_answer(client: TestClient) -> None:
    keys = b",".join(b'"k%d":0' % i for i in range(358_000))
    response = client.post("/v1/evaluations", content=b'{"features": {' + keys + b"}}")
    answer = problem(response, 422)
    assert fields(answer) == [("features", "too_long")]
    assert len(response.content) < 1000


def test_more_features_than_the_catalogue_cannot_be_valid(client: TestClient) -> None:
    known = len(client.get("/v1/features").json()["features"])
    features = {f"unknown_{i}": 1 for i in range(known + 1)}
    answer = problem(client.post("/v1/evaluations", json={"features": features}), 422)
    assert fields(answer) == [("features", "too_long")]


def test_an_error_list_is_cut_to_its_first_50_and_counts_the_rest(client: TestClient) -> None:
    known = len(client.get("/v1/features").json()["features"])
    features = {f"unknown_{i}": 1 for i in range(known)}
    answer = problem(client.post("/v1/evaluations", json={"features": features}), 422)
    assert len(answer["errors"]) == 50
    assert answer["errors"][0] == {
        "field": "features.unknown_0",
        "code": "unknown_feature",
        "message": "unknown feature 'unknown_0'; see GET /v1/features",
    }
    assert answer["errors_omitted"] == known - 50


def test_an_array_longer_than_the_limit_is_named(client: TestClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{}] * 10_001}
    answer = problem(client.post("/v1/evaluations", json={"fhir": bundle}), 422)
    assert fields(answer) == [("fhir.entry", "too_long")]
    alone = client.post("/v1/evaluations", content=json.dumps(bundle), headers=FHIR_JSON)
    assert fields(problem(alone, 422)) == [("entry", "too_long")]


def test_a_long_unknown_id_is_not_echoed_at_length(client: TestClient) -> None:
    long_id = "r" * 1_000_000
    response = client.post("/v1/evaluations", json={"features": {}, "rulesets": [long_id]})
    problem(response, 422)
    assert len(response.content) < 3000
    path = client.get(f"/v1/evaluations/{'e' * 60_000}")
    problem(path, 404)
    assert len(path.content) < 1000


def test_the_openapi_document_states_the_limits(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["x-limits"] == {
        "max_body_bytes": 4 * 1024 * 1024,
        "max_json_depth": 32,
        "max_json_items": 10_000,
        "max_problem_errors": 50,
    }
    assert "`invalid_character`" in spec["info"]["description"]
    for path in ("/v1/evaluations", "/v1/screenings"):
        described = spec["paths"][path]["post"]["requestBody"]["description"]
        assert "nested at most 32 deep" in described
        assert "10,000 items per array" in described
    problem_schema = spec["components"]["schemas"]["Problem"]["properties"]
    assert "errors_omitted" in problem_schema
    request = spec["paths"]["/v1/evaluations"]["post"]["requestBody"]["content"]
    properties = request["application/json"]["schema"]["properties"]
    assert "as many as are loaded" in properties["rulesets"]["description"]


# 4. One policy for strings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "field"),
    [
        ("GET", "/v1/evaluations/%00", "path.evaluation_id"),
        ("POST", "/v1/evaluations/%00/replay", "path.evaluation_id"),
        ("GET", "/v1/evaluations?ruleset=%00", "query.ruleset"),
        ("GET", "/v1/evaluations?client=a%00b", "query.client"),
        ("GET", "/v1/screenings/%00", "path.screening_id"),
        ("GET", "/v1/screenings/x%00/results.csv", "path.screening_id"),
        ("GET", "/v1/rulesets/%00", "path.ruleset_id"),
        ("GET", "/?evaluation=%00", "query.evaluation"),
        ("GET", "/nowhere/%00", "path"),
    ],
)
def test_nul_in_a_path_or_query_is_422_naming_it(
    client: TestClient, method: str, url: str, field: str
) -> None:
    answer = problem(client.request(method, url), 422)
    assert fields(answer) == [(field, "invalid_character")]
    assert "U+0000" in answer["errors"][0]["message"]


def _bundle(coding_code: str) -> dict[str, Any]:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": coding_code}]},
        "valueQuantity": {"value": 60, "unit": "%"},
    }
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": observation}]}


def test_nul_in_a_fhir_coding_is_422_naming_it(client: TestClient) -> None:
    answer = problem(client.post("/v1/evaluations", json={"fhir": _bundle("10230-1" + NUL)}), 422)
    assert fields(answer) == [("fhir.entry[0].resource.code.coding[0].code", "invalid_character")]
    sent = json.dumps(_bundle(NUL))
    alone = problem(client.post("/v1/evaluations", content=sent, headers=FHIR_JSON), 422)
    assert fields(alone) == [("entry[0].resource.code.coding[0].code", "invalid_character")]


def test_nul_in_a_cds_user_id_is_422_naming_it(client: TestClient, service: str) -> None:
    path = f"/cds-services/{service}"
    call = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/" + NUL, "patientId": "ssc-1"},
    }
    answer = problem(client.post(path, json=call, headers=signed(path)), 422)
    assert fields(answer) == [("context.userId", "invalid_character")]


def test_nul_in_a_feedback_comment_is_422_naming_it(client: TestClient, service: str) -> None:
    path = f"/cds-services/{service}/feedback"
    item = {
        "card": "a-card",
        "outcome": "overridden",
        "overrideReason": {"userComment": "see the MDT" + NUL},
        "outcomeTimestamp": "2026-11-22T10:00:00Z",
    }
    answer = problem(client.post(path, json={"feedback": [item]}, headers=signed(path)), 422)
    assert fields(answer) == [("feedback[0].overrideReason.userComment", "invalid_character")]


def test_nul_in_a_screening_source_path_is_422_naming_it(client: TestClient) -> None:
    response = client.post("/v1/screenings", json={"source": {"path": "registry.csv" + NUL}})
    assert fields(problem(response, 422)) == [("source.path", "invalid_character")]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"features": {LONE: 1}}, "features.\\ud800"),
        ({"features": {"ssc_subtype": "diffuse" + LONE}}, "features.ssc_subtype"),
        ({"features": {}, "rulesets": ["hsct" + LONE]}, "rulesets[0]"),
        ({"features": {}, "patient_id": "P" + NUL}, "patient_id"),
        ({"features": {NUL: True}}, "features.\\u0000"),
    ],
)
def test_nul_and_lone_surrogates_in_a_body_are_422_naming_them(
    client: TestClient, payload: dict[str, Any], field: str
) -> None:
    sent = json.dumps(payload)  # ASCII: a lone surrogate goes as its \ud800 escape
    response = client.post("/v1/evaluations", content=sent, headers=JSON)
    answer = problem(response, 422)
    assert fields(answer) == [(field, "invalid_character")]
    response.content.decode("utf-8")  # the answer itself is valid UTF-8


def test_a_paired_surrogate_is_an_ordinary_character(client: TestClient) -> None:
    sent = json.dumps({"features": {}, "patient_id": "P-\U0001f600"})
    assert client.post("/v1/evaluations", content=sent, headers=JSON).status_code == 200


def test_a_database_data_error_is_4xx_not_an_outage(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise DataError("SELECT", {}, ValueError("PostgreSQL text fields cannot contain NUL"))

    monkeypatch.setattr(audit, "page", refuse)
    response = client.get("/v1/evaluations")
    answer = problem(response, 422)
    assert fields(answer) == [("request", "unstorable_value")]
    assert "Retry" not in answer["detail"]
    assert client.get("/readyz").status_code == 200


# 5. Numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (HUGE, "features.age_years"),
        ("-" + HUGE, "features.age_years"),
        ("1e400", "features.age_years"),
        ('{"value": 1e999, "unit": "a"}', "features.age_years.value"),
    ],
)
def test_what_cannot_be_a_finite_double_is_not_finite(
    client: TestClient, value: str, field: str
) -> None:
    sent = '{"features": {"age_years": ' + value + "}}"
    answer = problem(client.post("/v1/evaluations", content=sent, headers=JSON), 422)
    assert fields(answer) == [(field, "not_finite")]


def test_a_not_finite_number_in_a_bundle_is_named(client: TestClient) -> None:
    sent = json.dumps(_bundle("10230-1")).replace('"value": 60', '"value": 1e400')
    answer = problem(client.post("/v1/evaluations", content=sent, headers=FHIR_JSON), 422)
    assert fields(answer) == [("entry[0].resource.valueQuantity.value", "not_finite")]


def test_an_integer_above_2_64_in_range_is_used_and_echoed(client: TestClient) -> None:
    creatinine = {"value": ABOVE_2_64, "unit": "ymol/L"}
    response = client.post(
        "/v1/evaluations",
        json={"features": {"serum_creatinine": creatinine}, "rulesets": ["hsct-ssc-assist"]},
    )
    assert response.status_code == 200, response.text[:1000]
    used = [
        feature
        for criterion in response.json()["results"][0]["criteria"]
        for feature in criterion["features"]
        if feature["feature"] == "serum_creatinine"
    ]
    assert used
    assert used[0]["given"] == {"value": float(ABOVE_2_64), "unit": "ymol/L"}
    assert used[0]["value"] == pytest.approx(1.1312, rel=1e-3)


def test_an_integer_of_over_4300_digits_is_not_finite(client: TestClient) -> None:
    sent = '{"features": {"lvef_percent": ' + "9" * 5000 + "}}"
    answer = problem(client.post("/v1/evaluations", content=sent, headers=JSON), 422)
    assert fields(answer) == [("features.lvef_percent", "not_finite")]


# A hypothesis strategy for hostile JSON, on every JSON endpoint ------------------------------


class Raw(str):
    """A JSON token written as it is (numbers JSON has and Python cannot hold, deep nesting)."""


_TEXT = st.text(
    st.one_of(
        st.sampled_from([NUL, LONE, "\udfff", "\U0001f600", "é", '"', "\\", "a", "/"]),
        st.characters(),
    ),
    max_size=12,
)
_NUMBERS = st.one_of(
    st.integers(min_value=2**63, max_value=10**400),
    st.integers(max_value=-(2**63), min_value=-(10**400)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1e400", "-1e400", "1e-400", HUGE, "-" + HUGE, "9" * 5000]).map(Raw),
)
_NESTING = st.integers(min_value=20, max_value=3000).flatmap(
    lambda n: st.sampled_from([Raw("[" * n + "]" * n), Raw('{"a":' * n + "1" + "}" * n)])
)
_SCALARS = st.one_of(st.none(), st.booleans(), _TEXT, _NUMBERS, _NESTING)
HOSTILE = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=12,
)


def encode(value: Any) -> str:
    """JSON text for `value`, lone surrogates and NUL as their escapes."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{encode(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)  # ASCII: \u0000, \ud800


# Where a hostile value goes, per endpoint: `@` is replaced by it.
PLACES = {
    ("/v1/evaluations", "application/json"): [
        "@",
        '{"features": @}',
        '{"features": {"age_years": @}}',
        '{"features": {"ssc_subtype": @, "pao2_mmhg": {"value": @, "unit": "kPa"}}}',
        '{"features": {}, "rulesets": @}',
        '{"features": {}, "rulesets": [@]}',
        '{"features": {}, "patient_id": @}',
        '{"fhir": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": @}]}}',
    ],
    ("/v1/evaluations", "application/fhir+json"): [
        "@",
        '{"resourceType": "Bundle", "type": "collection", "entry": @}',
        '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType":'
        ' "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", '
        '"code": @}]}, "valueQuantity": {"value": @, "unit": "%"}}}]}',
    ],
    ("/v1/screenings", "application/json"): [
        "@",
        '{"source": {"path": @}}',
        '{"source": {"path": "registry.csv"}, "mapping": @}',
        '{"source": {"url": @, "table": "t"}, "rulesets": [@]}',
    ],
    ("/cds-services/{service}", "application/json"): [
        "@",
        '{"hook": "patient-view", "hookInstance": "h-1", "context": {"userId": @, '
        '"patientId": "ssc-1"}}',
        '{"hook": "patient-view", "hookInstance": "h-1", "context": {"patientId": "ssc-1"}, '
        '"prefetch": {"patient": @}}',
    ],
    ("/cds-services/{service}/feedback", "application/json"): [
        "@",
        '{"feedback": [{"card": "c", "outcome": "overridden", "overrideReason": {"userComment": '
        '@}, "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}',
        '{"feedback": @}',
    ],
}


@pytest.mark.parametrize(("path", "media"), JSON_ROUTES)
def test_hostile_json_never_gets_a_500_a_503_or_a_large_answer(
    client: TestClient, service: str, caplog: pytest.LogCaptureFixture, path: str, media: str
) -> None:
    url = path.format(service=service)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(place=st.sampled_from(PLACES[(path, media)]), value=HOSTILE)
    def hostile(place: str, value: Any) -> None:
        caplog.clear()
        sent = place.replace("@", encode(value)).encode()
        response = post_json(client, url, media, sent)
        assert response.status_code < 500, (sent[:300], response.text[:500])
        assert len(response.content) < 100_000 or response.status_code == 200
        answer = response.json()  # always encodable, always JSON
        if response.status_code >= 400:
            Problem.model_validate(answer)
        if response.status_code == 422:
            assert all(e["field"] and e["code"] for e in answer.get("errors", [])), answer
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]

    hostile()


# On a real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(app: FastAPI) -> Iterator[tuple[str, int]]:
    """The same app served by uvicorn on loopback (without its lifespan: the rule reloader and
    the screening worker play no part here)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="info")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(10)


def _exchange(address: tuple[str, int], head: bytes, sent: bytes) -> bytes:
    """Send a request's head and the first part of its body, and read the answer without
    sending the rest (a 10 s guard against a hang, not a measurement)."""
    with socket.create_connection(address, timeout=10) as connection:
        connection.sendall(head + sent)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.parametrize(("path", "media"), JSON_ROUTES)
def test_the_server_refuses_an_anonymous_body_before_it_arrives(
    live: tuple[str, int], service: str, path: str, media: str
) -> None:
    """The first kilobytes of a declared 4 MB body, and no more: an answer can only come if the
    server judged the credentials without waiting for (let alone parsing) the body."""
    url = path.format(service=service)
    head = (
        f"POST {url} HTTP/1.1\r\nHost: {live[0]}:{live[1]}\r\nContent-Type: {media}\r\n"
        f"Content-Length: {4 * 1024 * 1024 - 1}\r\n\r\n"
    ).encode()
    answer = _exchange(live, head, DEEP * 2)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]


def test_the_server_answers_deep_nesting_and_nul_without_a_traceback(
    live: tuple[str, int], token: str
) -> None:
    base = f"http://{live[0]}:{live[1]}"
    with httpx.Client(base_url=base, timeout=10) as http:
        bare = http.post("/v1/evaluations", content=DEEP, headers=JSON)
        assert bare.status_code == 401
        deep = http.post("/v1/evaluations", content=DEEP, headers={**JSON, **bearer(token)})
        assert fields(problem(deep, 422)) == [("body", "too_deep")]
        nul = http.get("/v1/evaluations/%00", headers=bearer(token))
        assert fields(problem(nul, 422)) == [("path.evaluation_id", "invalid_character")]


def test_the_limits_are_settings(tmp_path: Path) -> None:
    with app_database(tmp_path) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            auth=False,
            max_json_depth=4,
            max_json_items=16,
            max_problem_errors=2,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as http:
            deep = http.post("/v1/evaluations", json={"features": {"a": [[[1]]]}})
            assert fields(problem(deep, 422)) == [("body", "too_deep")]
            wide = http.post("/v1/evaluations", json={"features": {}, "fhir": {"x": [0] * 17}})
            assert fields(problem(wide, 422)) == [("fhir.x", "too_long")]
            many = problem(http.post("/v1/evaluations", json={"features": {"a": 1, "b": 2}}), 422)
            assert len(many["errors"]) == 2
            three = problem(
                http.post("/v1/evaluations", json={"features": {"a": 1, "b": 2, "c": 3}}), 422
            )
            assert (len(three["errors"]), three["errors_omitted"]) == (2, 1)


def test_a_large_body_is_parsed_in_a_worker_thread(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    offloaded: list[int] = []

    async def recording(func: Callable[..., Any], *args: Any) -> Any:
        offloaded.append(len(args[0]))
        return await run_in_threadpool(func, *args)

    monkeypatch.setattr(body, "run_in_threadpool", recording)
    small = client.post("/v1/evaluations", json={"features": {}})
    large = b'{"features": {}}' + b" " * body.OFFLOAD_BYTES
    big = client.post("/v1/evaluations", content=large, headers=JSON)
    assert (small.status_code, big.status_code) == (200, 200)
    assert offloaded == [len(large)]


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_NESTED = st.recursive(
    st.one_of(st.none(), st.integers(), _TEXT.map(lambda t: t + '[{"\\')),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(document=_NESTED, limit=st.integers(min_value=0, max_value=8))
def test_the_depth_judged_on_raw_bytes_is_the_parsers_depth(document: Any, limit: int) -> None:
    """Brackets inside strings (escaped quotes, backslashes) do not count; every one the parser
    would recurse on does."""
    raw = encode(document).encode()
    limits = strict_json.Limits(depth=max(limit, 1), items=1000)
    deeper = _depth(document) > limits.depth
    try:
        strict_json.loads_checked(raw, limits)
        refused = False
    except strict_json.Refused as exc:
        refused = any(i.code == "too_deep" for i in exc.issues)
    assert refused == deeper
