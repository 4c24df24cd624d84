"""The service as a real process: `eligo serve` on a free loopback port."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import httpx
import pytest

from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import ROOT, SHIPPED_RULES
from tests.e2e.helpers import eligo_process, eligo_server, run_eligo

pytestmark = pytest.mark.e2e


def test_served_evaluation_over_http(tmp_path: Path) -> None:
    with eligo_server({"ELIGO_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}"}) as base:
        response = httpx.post(
            f"{base}/v1/evaluations",
            timeout=10,
            json={"features": ASTIS_CANDIDATE, "rulesets": ["hsct-ssc-astis"]},
        )
        assert response.status_code == 200
        assert response.json()["results"][0]["status"] == "eligible"
        bad = httpx.post(
            f"{base}/v1/evaluations",
            content=b"{",
            timeout=10,
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400
        assert httpx.get(f"{base}/readyz", timeout=10).json()["status"] == "ready"


def test_the_readme_quick_start_serves_in_announced_development_mode(tmp_path: Path) -> None:
    """`bash scripts/serve.sh`: no token needed, said so, bound to loopback, and recorded. On a
    fresh clone (as in CI) this first creates .venv-serve with the runtime dependencies only,
    about a minute, saying what it does."""
    # ELIGO_AUTH empty, as on a fresh machine: serve.sh itself must choose "off".
    env = {"ELIGO_DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}", "ELIGO_AUTH": ""}
    quick_start = ("bash", str(ROOT / "scripts" / "serve.sh"))
    with eligo_process(env, command=quick_start, ready_seconds=600) as server:
        assert "serve.sh: starting .venv-serve/bin/eligo serve" in server.output()
        installed = {path.name for path in ROOT.glob(".venv-serve/lib/python*/site-packages/*")}
        assert {"fastapi", "uvicorn"} <= installed
        assert not {"pyspark", "playwright", "pytest", "mypy"} & installed
        body = {"features": ASTIS_CANDIDATE, "rulesets": ["hsct-ssc-astis"], "patient_id": "P-1"}
        response = httpx.post(f"{server.base}/v1/evaluations", json=body, timeout=10)
        assert response.status_code == 200, response.text
        record = httpx.get(f"{server.base}/v1/evaluations/{response.json()['id']}", timeout=10)
        assert record.json()["client"] is None
        assert "DEVELOPMENT MODE: authentication is OFF" in server.output()
        assert "P-1" not in server.output()


def test_production_refuses_to_start_without_a_pseudonym_key(tmp_path: Path) -> None:
    env = {
        "ELIGO_ENV": "production",
        "ELIGO_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "ELIGO_AUTH": "on",
    }
    result = run_eligo("serve", "--port", "1", env=env)
    assert result.returncode == 3
    assert "ELIGO_PSEUDONYM_KEY is unset" in result.stderr


def test_server_refuses_to_start_on_invalid_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    astis = rules / "therapies" / "hsct-ssc-astis.yaml"
    astis.write_text(astis.read_text().replace("lvef_percent < 45 %", "lvef_pct < 45 %"))
    result = run_eligo("serve", "--port", "1", env={"ELIGO_RULES_DIR": str(rules)})
    assert result.returncode == 1
    assert "E011 unknown-feature: unknown feature 'lvef_pct'" in result.stderr
    assert "hsct-ssc-astis.yaml:" in result.stderr
    assert "refusing to start" in result.stderr


def test_a_busy_port_gets_a_one_line_hint_not_a_traceback(tmp_path: Path) -> None:
    """A port some other program listens on (a socket held here, on loopback): `eligo serve`
    says so in one line and exits before it touches the database."""
    database = tmp_path / "busy.db"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {"ELIGO_DATABASE_URL": f"sqlite:///{database}", "ELIGO_AUTH": "off"}
        result = run_eligo("serve", "--host", "127.0.0.1", "--port", str(port), env=env)
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [
        f"error: port {port} is in use on 127.0.0.1: stop the other server or pass --port "
        f"(e.g. --port {port + 1}; ELIGO_PORT sets the default)"
    ]
    assert result.stdout == ""
    assert not database.exists()
