"""The web form's apps: the quick start's development mode (no sign-in) and local clinician
accounts (authentication on), each on a fresh database of the kind ELIGO_TEST_DATABASE names."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.main import create_app
from app.settings import Settings
from tests.conftest import SHIPPED_RULES
from tests.databases import app_database

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sessions(client: TestClient) -> sessionmaker[Session]:
    """The app's own session factory, to look into its database."""
    factory: sessionmaker[Session] = client.app.state.sessions  # type: ignore[attr-defined]
    return factory


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


@pytest.fixture
def development(tmp_path: Path) -> Iterator[TestClient]:
    """Authentication off, as `scripts/serve.sh` runs it."""
    with app_database(tmp_path) as url:
        settings = Settings(rules_dir=SHIPPED_RULES, database_url=url, auth=False)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client


@pytest.fixture
def accounts_app(tmp_path: Path) -> Iterator[TestClient]:
    """Authentication on, clinicians signing in with local accounts."""
    with app_database(tmp_path) as url:
        settings = Settings(rules_dir=SHIPPED_RULES, database_url=url, sign_in="local")
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client


def form_fields(patient: Mapping[str, object]) -> dict[str, str]:
    """A patient as the form posts it: yes/no radios, numbers as text, units from selects."""
    fields: dict[str, str] = {}
    for key, value in patient.items():
        if isinstance(value, bool):
            fields[key] = "yes" if value else "no"
        elif isinstance(value, dict):
            fields[key], fields[f"{key}.unit"] = str(value["value"]), str(value["unit"])
        else:
            fields[key] = str(value)
    return fields
