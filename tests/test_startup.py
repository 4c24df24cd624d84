"""What the service refuses at start, the migration policy, and the headers it always sends."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import inspect

from app.cli.common import EXIT_CONFIG
from app.db.migrate import current, head, upgrade
from app.db.session import make_engine
from app.errors import StartupRefused
from app.main import create_app
from app.settings import DEV_PSEUDONYM_KEY, Environment, Settings
from tests.conftest import SHIPPED_RULES
from tests.databases import app_database
from tests.e2e.helpers import run_eligo

GOOD_KEY = "k" * 40
EHR_ISSUERS = {"https://ehr.example": {"jwks_url": "https://ehr.example/jwks.json"}}


def _settings(url: str, **overrides: object) -> Settings:
    return Settings.model_validate({"rules_dir": SHIPPED_RULES, "database_url": url, **overrides})


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'eligo.db'}"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"auth": False}, "authentication is off"),
        ({"pseudonym_key": None}, "ELIGO_PSEUDONYM_KEY is unset"),
        ({"pseudonym_key": DEV_PSEUDONYM_KEY}, "published development key"),
        ({"pseudonym_key": "short"}, "shorter than 32"),
        ({"cds_issuers": EHR_ISSUERS}, "ELIGO_PUBLIC_URL is unset: set it to the URL EHRs call"),
    ],
)
def test_production_refuses_unsafe_configuration(
    url: str, overrides: dict[str, object], reason: str
) -> None:
    settings = _settings(
        url, env=Environment.PRODUCTION, **{"pseudonym_key": GOOD_KEY, **overrides}
    )
    with pytest.raises(StartupRefused) as refused:
        create_app(settings)
    assert any(reason in r for r in refused.value.reasons)


def test_production_with_cds_issuers_starts_once_the_public_url_is_set(url: str) -> None:
    upgrade(url)
    production = {"env": Environment.PRODUCTION, "pseudonym_key": GOOD_KEY}
    settings = _settings(url, **production, cds_issuers=EHR_ISSUERS)
    assert any("ELIGO_PUBLIC_URL" in r for r in settings.refusals("127.0.0.1"))
    with_url = _settings(
        url, **production, cds_issuers=EHR_ISSUERS, public_url="https://eligo.example.org"
    )
    assert with_url.refusals("127.0.0.1") == []
    create_app(with_url)
    # without CDS issuers every CDS call is refused anyway: no audience to get wrong
    assert _settings(url, **production).refusals("127.0.0.1") == []
    # development keeps the request's Host, if allow-listed
    assert _settings(url, cds_issuers=EHR_ISSUERS).refusals("127.0.0.1") == []


@pytest.mark.e2e
def test_eligo_serve_refuses_cds_issuers_without_a_public_url(tmp_path: Path) -> None:
    env = {
        "ELIGO_ENV": "production",
        "ELIGO_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "ELIGO_AUTH": "on",
        "ELIGO_PSEUDONYM_KEY": GOOD_KEY,
        "ELIGO_CDS_ISSUERS": json.dumps(EHR_ISSUERS),
    }
    result = run_eligo("serve", "--port", "1", env=env)
    assert result.returncode == EXIT_CONFIG
    assert "refusing to start" in result.stderr
    assert "ELIGO_PUBLIC_URL is unset: set it to the URL EHRs call" in result.stderr


@pytest.mark.parametrize("entry", ["https://eligo.local", "eligo.local:99999", "a b", ""])
def test_a_bad_allowed_host_is_named(entry: str) -> None:
    with pytest.raises(ValidationError, match="is not a host name or address"):
        Settings.model_validate({"cds_allowed_hosts": ["localhost", entry]})


def test_development_without_auth_binds_only_to_loopback(url: str) -> None:
    settings = _settings(url, auth=False)
    with pytest.raises(StartupRefused, match="loopback"):
        create_app(settings, host="0.0.0.0")
    create_app(settings, host="127.0.0.1")


def test_production_refuses_a_schema_behind_and_leaves_it_untouched(url: str) -> None:
    settings = _settings(url, env=Environment.PRODUCTION, pseudonym_key=GOOD_KEY)
    with pytest.raises(StartupRefused, match="eligo db upgrade"):
        create_app(settings)
    engine = make_engine(url)
    assert current(engine) is None
    assert "evaluations" not in inspect(engine).get_table_names()
    upgrade(url)
    assert current(engine) == head()
    engine.dispose()
    create_app(settings)  # at head: starts


def test_development_upgrades_the_schema_by_itself(tmp_path: Path) -> None:
    with app_database(tmp_path) as url:
        create_app(_settings(url))
        engine = make_engine(url)
        assert current(engine) == head()
        engine.dispose()


def test_what_is_loaded_at_start_is_kept_out_of_full_collections(url: str) -> None:
    gc.unfreeze()
    app = create_app(_settings(url))
    assert gc.get_freeze_count() == 0
    with TestClient(app):  # the lifespan: serving from here
        frozen = gc.get_freeze_count()
    gc.unfreeze()
    assert frozen > 10_000  # the modules, the rules and their compiled forms, at least


def test_security_headers(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert docs.headers["x-content-type-options"] == "nosniff"
    api = client.get("/v1/rulesets")
    assert api.headers["cache-control"] == "no-store"
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api.headers
    too_big = client.post("/v1/evaluations", content=b"{" + b" " * 70_000 + b"}")
    assert too_big.status_code == 413
    assert too_big.headers["x-content-type-options"] == "nosniff"


def test_cors_only_for_configured_origins(url: str) -> None:
    settings = _settings(url, cors_origins=["https://ehr.example"])
    with TestClient(create_app(settings)) as client:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        allowed = client.options(
            "/v1/evaluations", headers={"Origin": "https://ehr.example", **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://ehr.example"
        other = client.options(
            "/v1/evaluations", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers


def test_no_cors_by_default(client: TestClient) -> None:
    response = client.get("/v1/rulesets", headers={"Origin": "https://ehr.example"})
    assert "access-control-allow-origin" not in response.headers
