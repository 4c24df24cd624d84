"""compose.yaml (the development stack) against what it names, since no Docker engine runs
here: the build it uses, the settings it sets, the database it points at, the port it
publishes and the health check it runs."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from app.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.one_pass
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
ELIGO: dict[str, Any] = SERVICES["eligo"]


def _image_env() -> dict[str, str]:
    """The Dockerfile's ENV: what the container starts with before compose adds its own."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                name, value = item.split("=", 1)
                found[name] = value
    return found


def _container_env() -> dict[str, str]:
    return {**_image_env(), **{k: str(v) for k, v in ELIGO["environment"].items()}}


def test_the_service_is_built_from_the_production_dockerfile() -> None:
    context = ROOT / ELIGO["build"]["context"]
    assert context.resolve() == ROOT
    assert (context / ELIGO["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"


def test_every_variable_set_is_a_setting_the_app_knows() -> None:
    known = {f"ELIGO_{name.upper()}" for name in Settings.model_fields}
    assert set(ELIGO["environment"]) <= known


def test_the_container_configuration_is_valid_and_would_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image's ENV and compose's, read by the app's own Settings: no value refused, and
    none of the start-up refusals (authentication off on 0.0.0.0, production without a
    pseudonym key, ...) apply."""
    env = _container_env()
    for name in [name for name in os.environ if name.startswith("ELIGO_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("ELIGO_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.refusals(settings.host) == []
    assert settings.env.value == "development"
    assert settings.auth  # on: the container listens beyond loopback


def test_the_database_is_the_compose_postgresql_service() -> None:
    url = make_url(_container_env()["ELIGO_DATABASE_URL"])
    assert url.get_backend_name() == "postgresql"
    assert url.host is not None
    db = SERVICES[url.host]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", db["image"])
    assert url.port in (None, 5432)
    assert url.username == db["environment"]["POSTGRES_USER"]
    assert url.password == db["environment"]["POSTGRES_PASSWORD"]
    assert url.database == db["environment"]["POSTGRES_DB"]
    assert ELIGO["depends_on"][url.host] == {"condition": "service_healthy"}
    assert "pg_isready" in db["healthcheck"]["test"]


def test_the_published_port_is_the_one_served_and_only_on_loopback() -> None:
    (published,) = ELIGO["ports"]
    host, host_port, container_port = published.split(":")
    assert host == "127.0.0.1"  # a development stack: not on the machine's other addresses
    assert int(container_port) == int(_container_env()["ELIGO_PORT"]) == int(host_port)


def test_the_health_check_asks_an_endpoint_the_app_serves(client: TestClient) -> None:
    command = " ".join(ELIGO["healthcheck"]["test"])
    found = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", command)
    assert found is not None
    assert int(found.group(1)) == int(_container_env()["ELIGO_PORT"])
    assert isinstance(client.app, FastAPI)
    assert "get" in client.app.openapi()["paths"][found.group(2)]
    assert client.get(found.group(2)).status_code == 200


def test_mounted_checkout_paths_exist_and_land_where_the_image_reads_them() -> None:
    env = _container_env()
    for volume in ELIGO["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            assert (ROOT / source).is_dir(), source
            assert target == env["ELIGO_RULES_DIR"]
        else:
            assert source in COMPOSE["volumes"]
            assert Path(env["ELIGO_SCREENING_DIR"]).is_relative_to(target)
