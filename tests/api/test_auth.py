"""Access control: Bearer tokens of API clients, scopes, revocation, and who the audit names."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.api.deps import Caller, VerifiedClients
from app.db import clients
from app.db.models import Evaluation, EvaluationDecision
from app.security import Scope, hash_secret, parse_token
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import add_client, bearer

BODY = {"features": ASTIS_CANDIDATE, "rulesets": ["hsct-ssc-astis"]}


def _app(client: TestClient) -> FastAPI:
    assert isinstance(client.app, FastAPI)
    return client.app


def _post(client: TestClient, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    # A fresh client without the suite's default Authorization header.
    with TestClient(_app(client), raise_server_exceptions=False) as bare:
        response = bare.post("/v1/evaluations", json=BODY, headers=headers)
    return response.status_code, dict(response.headers), response.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer eligo_" + "0" * 32 + "_" + "A" * 43},  # well-formed, unknown
    ],
)
def test_no_valid_credential_is_401_with_a_challenge(
    client: TestClient, headers: dict[str, str]
) -> None:
    status, response_headers, text = _post(client, headers)
    assert status == 401, text
    assert response_headers["www-authenticate"].startswith('Bearer realm="eligo"')
    assert "application/problem+json" in response_headers["content-type"]


def test_a_wrong_secret_for_a_real_client_is_401(client: TestClient) -> None:
    token = add_client(_app(client), "ehr", [Scope.EVALUATE])
    parsed = parse_token(token)
    assert parsed is not None
    forged = token[: -len(parsed[1])] + "B" * 43
    status, _, text = _post(client, bearer(forged))
    assert status == 401, text
    assert "wrong secret" in text


def test_a_scope_is_required_per_endpoint(client: TestClient) -> None:
    evaluator = add_client(_app(client), "evaluator", [Scope.EVALUATE])
    reader = add_client(_app(client), "auditor", [Scope.AUDIT_READ])
    status, _, text = _post(client, bearer(evaluator))
    assert status == 200, text
    evaluation_id = text.split('"id":"', 1)[1].split('"', 1)[0]
    status, headers, text = _post(client, bearer(reader))
    assert status == 403
    assert 'error="insufficient_scope", scope="evaluate"' in headers["www-authenticate"]
    # The scope as the caller writes it, not Python's enum repr (<Scope.EVALUATE: ...>).
    assert "this client lacks the 'evaluate' scope" in text, text
    for path in ("/v1/evaluations", f"/v1/evaluations/{evaluation_id}"):
        assert client.get(path, headers=bearer(evaluator)).status_code == 403
        assert client.get(path, headers=bearer(reader)).status_code == 200
    replay = f"/v1/evaluations/{evaluation_id}/replay"
    assert client.post(replay, headers=bearer(evaluator)).status_code == 403
    assert client.post(replay, headers=bearer(reader)).status_code == 200


def test_the_audit_record_names_the_client(client: TestClient) -> None:
    token = add_client(_app(client), "Ward 7 EHR", [Scope.EVALUATE])
    status, _, text = _post(client, bearer(token))
    assert status == 200
    evaluation_id = text.split('"id":"', 1)[1].split('"', 1)[0]
    record = client.get(f"/v1/evaluations/{evaluation_id}").json()
    parsed = parse_token(token)
    assert parsed is not None
    assert record["client"] == {"id": parsed[0], "name": "Ward 7 EHR"}
    listed = client.get("/v1/evaluations", params={"client": parsed[0]}).json()["items"]
    assert [item["id"] for item in listed] == [evaluation_id]


def test_a_revoked_client_is_refused_at_once(client: TestClient) -> None:
    token = add_client(_app(client), "leaver", [Scope.EVALUATE])
    assert _post(client, bearer(token))[0] == 200
    parsed = parse_token(token)
    assert parsed is not None
    with _app(client).state.sessions() as session:
        found = clients.find(session, parsed[0])
        assert found is not None
        assert clients.revoke(found)
        session.commit()
    status, _, text = _post(client, bearer(token))
    assert status == 401
    assert "revoked" in text
    with _app(client).state.sessions() as session:  # the refused one left nothing behind
        mine = select(Evaluation.id).where(Evaluation.client_id == parsed[0])
        assert len(session.scalars(mine).all()) == 1
        decided = select(func.count()).where(EvaluationDecision.evaluation_id.in_(mine))
        assert session.scalar(decided) == 1


def test_rule_content_is_public_but_patient_data_is_not(client: TestClient) -> None:
    with TestClient(_app(client), raise_server_exceptions=False) as bare:
        assert bare.get("/v1/rulesets").status_code == 200
        assert bare.get("/v1/features").status_code == 200
        assert bare.get("/healthz").status_code == 200
        assert bare.get("/v1/evaluations").status_code == 401
        assert bare.post("/v1/evaluations/x/replay").status_code == 401


def test_a_verified_client_still_needs_its_secret(client: TestClient) -> None:
    token = add_client(_app(client), "ehr", [Scope.EVALUATE])
    assert _post(client, bearer(token))[0] == 200  # now verified (PostgreSQL: remembered)
    forged = token[:-43] + "B" * 43
    status, _, text = _post(client, bearer(forged))
    assert status == 401, text
    assert "wrong secret" in text


def test_the_verified_clients_are_bounded_and_expire() -> None:
    verified = VerifiedClients(60, most=2)
    callers = [Caller(f"c{i}", f"client {i}", frozenset()) for i in range(3)]
    for caller in callers:
        verified.put(hash_secret("s"), caller)
    assert verified.get("c2", "s") == callers[2]
    assert verified.get("c0", "s") is None  # forgotten when the third came
    assert verified.get("c2", "wrong") is None
    expired = VerifiedClients(0)
    expired.put(hash_secret("s"), callers[0])
    assert expired.get("c0", "s") is None
