"""Shared fixtures: the golden test catalogue, the shipped rules, and the ASGI app (on a fresh
database of the kind `ELIGO_TEST_DATABASE` names, with authentication on)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.batch import sql_cache
from app.db import clients
from app.engine import unit_memo
from app.engine.load import load_rules
from app.engine.model import RuleBase
from app.main import create_app
from app.security import Scope
from app.settings import Settings
from tests.databases import app_database

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_RULES = ROOT / "tests" / "golden" / "rules"
SHIPPED_RULES = ROOT / "rules"


@pytest.fixture(scope="session", autouse=True)
def _unit_memo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's own file of UCUM answers: what a developer's cache holds does not reach the
    tests, and the broken units of the test rule sets do not reach it."""
    unit_memo.use(tmp_path_factory.mktemp("cache") / "units.json")
    yield
    unit_memo.use(unit_memo.default_path())


@pytest.fixture(scope="session", autouse=True)
def _sql_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's own folder of compiled screening SQL, for the same reasons."""
    sql_cache.use(tmp_path_factory.mktemp("sql-cache"))
    yield
    sql_cache.use(sql_cache.default_folder())


@pytest.fixture(scope="session")
def golden_rules() -> RuleBase:
    return load_rules(GOLDEN_RULES)


@pytest.fixture(scope="session")
def shipped_rules() -> RuleBase:
    return load_rules(SHIPPED_RULES)


def add_client(app: FastAPI, name: str, scopes: Iterable[Scope]) -> str:
    """Create an API client in the app's database; its token."""
    with app.state.sessions() as session:
        _, credential = clients.create(session, name, scopes)
        session.commit()
    return credential.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def app_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with app_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def client(app_database_url: str) -> Iterator[TestClient]:
    """The app with every scope granted to the test client's token."""
    settings = Settings(
        rules_dir=SHIPPED_RULES, max_body_bytes=64 * 1024, database_url=app_database_url
    )
    app = create_app(settings)
    token = add_client(app, "test suite", Scope)
    with TestClient(app, raise_server_exceptions=False, headers=bearer(token)) as test_client:
        yield test_client
