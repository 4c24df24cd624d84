"""Project plumbing that has no engine to run it here: the Dockerfile, the lock files,
the Alembic environment, the README's commands and CI's entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.docs import SWAGGER_UI
from app.cli import main
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instruction(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [
        line.split(None, 1)[1] for line in joined.splitlines() if line.split(None, 1)[:1] == [name]
    ]


def test_dockerfile_entry_point_is_the_eligo_serve_command() -> None:
    (cmd,) = _instruction("CMD")
    program, *args = json.loads(cmd)
    assert program in PYPROJECT["project"]["scripts"]
    assert PYPROJECT["project"]["scripts"][program] == "app.cli:main"
    assert args == ["serve"]
    assert "serve" in main.commands
    assert CliRunner().invoke(main, ["serve", "--help"]).exit_code == 0


def test_dockerfile_is_slim_non_root_and_health_checked(client: TestClient) -> None:
    (base,) = _instruction("FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim", base)
    users = _instruction("USER")
    assert users
    assert users[-1] not in ("root", "0")
    assert DOCKERFILE.index("USER") < DOCKERFILE.index("CMD")
    (check,) = _instruction("HEALTHCHECK")
    path = re.search(r"127\.0\.0\.1:8000(/\w+)", check)
    assert path is not None
    assert isinstance(client.app, FastAPI)
    paths = client.app.openapi()["paths"]
    assert "get" in paths[path.group(1)]


def test_dockerfile_copies_only_what_exists() -> None:
    for args in _instruction("COPY"):
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_runtime_lock_agrees_with_the_full_lock() -> None:
    full, runtime = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements.runtime.lock")
    assert runtime
    assert {name: full.get(name) for name in runtime} == runtime


def test_alembic_environment_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={"ELIGO_DATABASE_URL": url, "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^\s*bash (scripts/\w+\.sh)\s*$", readme, flags=re.MULTILINE)
    assert commands[:2] == ["scripts/serve.sh", "scripts/test.sh"]
    assert "bash scripts/test.sh" in ci


def test_the_installed_package_carries_the_forms_templates_and_static_files(
    tmp_path: Path,
) -> None:
    """The Docker image installs the package (not the source tree): every file the form
    and the API docs serve must be in the wheel, and the licence with the notices. Built as
    the image builds it, with pyproject's build requirements (SPDX `license` needs setuptools
    77, newer than a venv's own)."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("eligo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    web = ROOT / "app" / "web"
    files = [p for p in [*web.glob("templates/*"), *web.rglob("static/**/*")] if p.is_file()]
    shipped = {p.relative_to(ROOT).as_posix() for p in files}
    assert {"app/web/static/eligo.js", f"app/web/static/docs/{SWAGGER_UI}/LICENSE"} <= shipped
    assert shipped <= names, sorted(shipped - names)
    licences = {Path(name).name for name in names if "/licenses/" in name}
    assert licences == {"LICENSE", "NOTICE"}


READMES = [ROOT / "README.md", ROOT / "rules" / "README.md"]
TOP_LEVEL = (
    *(".ci/", "app/", "benchmarks/", "docs/", "migrations/"),
    *("rules/", "schemas/", "scripts/", "tests/"),
)


def _cited(readme: Path) -> set[str]:
    """What a README cites: its Markdown links' targets, every `*.md` name, and the code
    spans that are repository paths (placeholders such as `<id>` left out)."""
    text = readme.read_text(encoding="utf-8")
    links = {t for t in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in t}
    documents = set(re.findall(r"(?<![\w/.-])([\w./-]+\.md)\b", text))
    spans = {
        span
        for span in re.findall(r"`([^`\s]+)`", text)
        if span.startswith(TOP_LEVEL) and not re.search(r"[<{…]", span)
    }
    return links | documents | spans


def test_every_document_the_readmes_cite_is_in_the_repository() -> None:
    """A link, a document named bare (`EVIDENCE.md`: in docs/ or beside the README) or a path:
    each must exist, so a fresh clone has everything its READMEs send a reader to."""
    missing = []
    for readme in READMES:
        for cited in sorted(_cited(readme)):
            places = [readme.parent / cited, ROOT / cited, ROOT / "docs" / cited]
            if not any(list(ROOT.glob(str(p.relative_to(ROOT)))) for p in places if _inside(p)):
                missing.append(f"{readme.relative_to(ROOT)}: {cited}")
    assert missing == []


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)
