"""POST /v1/rulesets/reload: an administrator's reload, refused changes answered with 409."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from app.security import Scope
from app.settings import Settings
from tests.conftest import SHIPPED_RULES, add_client, bearer
from tests.databases import app_database


def test_reload_on_request(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, rules)
    astis = rules / "therapies" / "hsct-ssc-astis.yaml"
    with app_database(tmp_path) as url:
        settings = Settings(rules_dir=rules, database_url=url, rules_reload_interval=0)
        app = create_app(settings)
        admin = bearer(add_client(app, "admin", [Scope.RULES_ADMIN]))
        evaluator = bearer(add_client(app, "ehr", [Scope.EVALUATE]))
        with TestClient(app, raise_server_exceptions=False) as client:
            before = client.get("/v1/rulesets").json()["rules_hash"]
            assert client.post("/v1/rulesets/reload", headers=evaluator).status_code == 403
            unchanged = client.post("/v1/rulesets/reload", headers=admin)
            assert unchanged.status_code == 200
            assert unchanged.json()["rules_hash"] == before
            astis.write_text(astis.read_text().replace("between 18 and 65", "between 18 and 70"))
            changed = client.post("/v1/rulesets/reload", headers=admin).json()
            assert changed["rules_hash"] != before
            astis.write_text(astis.read_text().replace("between 18 and 70", "between 18 and"))
            refused = client.post("/v1/rulesets/reload", headers=admin)
            assert refused.status_code == 409
            (error,) = refused.json()["errors"]
            line, text = next(
                (n, t)
                for n, t in enumerate(astis.read_text().splitlines(), 1)
                if t.strip().startswith("when:") and "between 18 and" in t
            )
            # file:line:col of the broken expression: the end of its line, after "and"
            assert error["field"] == f"{astis}:{line}:{len(text) + 1}"
            assert error["code"] == "E010"
            assert client.get("/v1/rulesets").json()["rules_hash"] == changed["rules_hash"]
