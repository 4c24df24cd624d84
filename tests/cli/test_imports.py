"""`eligo --version` and `--help` load the command line only: the engine, the server, the
database layer and the screening engines are imported inside the commands that use them
(app/cli/common.py). A structural guard on start-up time, not a timing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.one_pass

HEAVY = ("fastapi", "sqlalchemy", "duckdb", "pyarrow", "pyspark", "httpx")

# Run in a fresh interpreter: this test process has imported all of them already.
PROBE = """
import sys
import app.cli
sys.argv = ["eligo", *sys.argv[1:]]
if len(sys.argv) > 1:
    try:
        app.cli.main()
    except SystemExit:
        pass
print("loaded:", *(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def _probe(heavy: Sequence[str], args: Sequence[str], timeout: float) -> tuple[str, list[str]]:
    """Run `eligo *args` under PROBE: its stderr, and which of `heavy` it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=heavy), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stderr, done.stderr.splitlines()[-1].split()[1:]


@pytest.mark.parametrize(
    "args", [(), ("--version",), ("--help",), ("rules", "--help"), ("users", "--help")]
)
def test_the_command_line_starts_without_the_heavy_libraries(args: tuple[str, ...]) -> None:
    _, loaded = _probe(HEAVY, args, timeout=60)
    assert loaded == [], f"`eligo {' '.join(args)}` imported {', '.join(loaded)}"


# What `eligo screen` of a file never needs: the server, the CDS token checks (the settings
# read only their configuration side, app/cds/issuers.py), Spark (`--backend spark`) and the
# FHIR models (a FHIR Bulk folder).
NOT_FOR_SCREENING = ("fastapi", "pyspark", "httpx", "jwt", "cryptography", "fhir.resources")


def test_screening_a_file_leaves_out_the_server_spark_and_fhir(tmp_path: Path) -> None:
    (tmp_path / "cohort.csv").write_text("id,age_years,ssc_diagnosis\np1,45,yes\n")
    out = tmp_path / "r.parquet"
    args = ["screen", "--no-progress", str(tmp_path / "cohort.csv"), "--out", str(out)]
    stderr, loaded = _probe(NOT_FOR_SCREENING, args, timeout=120)
    assert out.exists(), stderr  # it screened
    assert loaded == [], f"`eligo screen` imported {', '.join(loaded)}"


# app/batch is the screening pipeline alone: the server's side (its settings, the audit
# database, the job store and worker in app/services/screening_jobs.py) passes in what it needs.
SERVER_SIDE = (
    "app.db",
    "app.api",
    "app.services",
    "app.settings",
    "fastapi",
    "starlette",
    "sqlalchemy.orm",
    "psycopg",
)

PURE_PROBE = """
import importlib, pkgutil, sys
import app.batch
names = [m.name for m in pkgutil.iter_modules(app.batch.__path__, "app.batch.")]
for name in names:
    importlib.import_module(name)
print("modules:", *names)
print("loaded:", *(m for m in sys.modules if m.startswith({server!r})))
"""


def test_the_batch_pipeline_imports_nothing_of_the_server() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PURE_PROBE.format(server=SERVER_SIDE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules, loaded = (line.split()[1:] for line in done.stdout.splitlines()[-2:])
    assert {"app.batch.runner", "app.batch.backends", "app.batch.bulk"} <= set(modules)
    assert loaded == [], f"app/batch imported {', '.join(loaded)}"
