"""`eligo screen --backend`, and `--engine`, its earlier name kept as an alias (a published
option): each alone picks the backend; both, differing, are a usage error naming both."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from app.cli.screen import screen_command
from tests.conftest import SHIPPED_RULES

pytestmark = pytest.mark.one_pass  # independent of ELIGO_TEST_DATABASE

COHORT = "id,age_years,ssc_diagnosis\np1,45,yes\np2,70,no\n"


def _screen(tmp_path: Path, *options: str) -> tuple[int, str, Path]:
    (tmp_path / "cohort.csv").write_text(COHORT)
    out = tmp_path / "r.parquet"
    args = [str(tmp_path / "cohort.csv"), "--out", str(out), "--rules-dir", str(SHIPPED_RULES)]
    result = CliRunner().invoke(screen_command, [*args, "--no-progress", *options])
    return result.exit_code, result.output, out


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("--backend", "duckdb"),
        ("--engine", "duckdb"),
        ("--backend", "duckdb", "--engine", "duckdb"),
    ],
)
def test_the_backend_is_named_by_backend_or_its_alias_engine(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    code, output, out = _screen(tmp_path, *options)
    assert code == 0, output
    assert pq.read_table(out).column("id").to_pylist() == ["p1", "p2"]
    report = out.with_name("r.report.json").read_text()
    assert '"engine": "duckdb"' in report  # the report's key, unchanged


def test_backend_and_engine_that_differ_are_a_usage_error_naming_both(tmp_path: Path) -> None:
    code, output, out = _screen(tmp_path, "--backend", "duckdb", "--engine", "spark")
    assert code == 2, output
    assert "--backend duckdb and its alias --engine spark differ" in output
    assert not out.exists()  # nothing written
    code, output, _ = _screen(tmp_path, "--backend", "pandas")
    assert code == 2
    assert "--backend" in output
