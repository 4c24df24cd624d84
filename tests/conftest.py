"""Shared fixtures: the golden test catalogue, the shipped rules, and the ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.engine.load import load_rules
from app.engine.model import RuleBase
from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_RULES = ROOT / "tests" / "golden" / "rules"
SHIPPED_RULES = ROOT / "rules"


@pytest.fixture(scope="session")
def golden_rules() -> RuleBase:
    return load_rules(GOLDEN_RULES)


@pytest.fixture(scope="session")
def shipped_rules() -> RuleBase:
    return load_rules(SHIPPED_RULES)


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    settings = Settings(rules_dir=SHIPPED_RULES, max_body_bytes=64 * 1024)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client
