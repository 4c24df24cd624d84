"""`eligo clients create | list | revoke` against real databases, and the token it prints
working (and then not) against a real server process."""

from __future__ import annotations

import json

import httpx

from app.db.migrate import upgrade
from tests.astis_patients import ASTIS_CANDIDATE
from tests.e2e.helpers import eligo_process, run_eligo


def test_create_list_revoke(database_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": database_url}
    refused = run_eligo("clients", "list", env=env)
    assert refused.returncode == 2
    assert "eligo db upgrade" in refused.stderr
    upgrade(database_url)
    created = run_eligo("clients", "create", "Ward 7 EHR", "--scope", "evaluate", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("eligo_")
    assert "shown once" in created.stderr
    (listed,) = json.loads(run_eligo("clients", "list", "--json", env=env).stdout)
    assert listed["name"] == "Ward 7 EHR"
    assert listed["scopes"] == ["evaluate"]
    assert listed["revoked_at"] is None
    assert token.split("_")[1] == listed["id"]
    assert token not in run_eligo("clients", "list", "--json", env=env).stdout
    assert run_eligo("clients", "revoke", listed["id"], env=env).returncode == 0
    again = run_eligo("clients", "revoke", listed["id"], env=env)
    assert again.returncode == 2
    assert "already revoked" in again.stderr
    assert "revoked" in run_eligo("clients", "list", env=env).stdout
    assert run_eligo("clients", "revoke", "no-such-id", env=env).returncode == 2


def test_bad_arguments_are_usage_errors(sqlite_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": sqlite_url}
    bad_scope = run_eligo("clients", "create", "x", "--scope", "root", env=env)
    assert bad_scope.returncode == 2
    assert "'root' is not one of" in bad_scope.stderr
    no_scope = run_eligo("clients", "create", "x", env=env)
    assert no_scope.returncode == 2


def test_a_created_token_authenticates_until_revoked(sqlite_url: str) -> None:
    env = {"ELIGO_DATABASE_URL": sqlite_url, "ELIGO_AUTH": "on"}
    upgrade(sqlite_url)
    created = run_eligo("clients", "create", "ehr", "--scope", "evaluate", env=env)
    token = created.stdout.strip().splitlines()[-1]
    client_id = token.split("_")[1]
    body = {"features": ASTIS_CANDIDATE, "rulesets": ["hsct-ssc-astis"]}
    with eligo_process(env) as server:
        url = f"{server.base}/v1/evaluations"
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.post(url, json=body, timeout=10).status_code == 401
        assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 200
        assert run_eligo("clients", "revoke", client_id, env=env).returncode == 0
        assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 401
        # The secret is base64url, so it may hold "_" itself: split off the prefix and id only.
        secret = token.split("_", 2)[2]
        assert len(secret) == 43
        assert secret not in server.output()  # secrets never reach the log
