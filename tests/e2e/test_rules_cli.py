"""`eligo rules test | coverage | diff | validate` as an author and CI run them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import GOLDEN_RULES, SHIPPED_RULES
from tests.e2e.helpers import run_eligo

pytestmark = pytest.mark.e2e


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(GOLDEN_RULES, target)
    return target


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_shipped_vignettes_pass_with_full_coverage() -> None:
    tested = run_eligo("rules", "test", str(SHIPPED_RULES))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert ", 0 failed" in tested.stdout
    covered = run_eligo("rules", "coverage", str(SHIPPED_RULES), "--fail-under", "100")
    assert covered.returncode == 0, covered.stdout + covered.stderr
    assert "three-valued coverage: 100.0 %" in covered.stdout


def test_a_failing_vignette_shows_expected_got_and_the_trace(rules: Path) -> None:
    _replace(rules / "tests" / "demo.yaml", "status: ineligible", "status: eligible")
    result = run_eligo("rules", "test", str(rules))
    assert result.returncode == 1
    assert "FAIL  " in result.stdout
    assert "demo.yaml:26 demo: every exclusion" in result.stdout
    assert "status: expected eligible, got ineligible" in result.stdout
    assert "exclusion   lvef            met" in result.stdout  # the trace
    assert "lvef_percent=40 %" in result.stdout
    assert "5 vignettes over 1 rule sets: 4 passed, 1 failed" in result.stdout


def test_an_invalid_vignette_file_fails_validate_and_test(rules: Path) -> None:
    _replace(rules / "tests" / "demo.yaml", "reasons: [disease]", "reasons: [diesase]")
    for command in ("validate", "test"):
        result = run_eligo("rules", command, str(rules))
        assert result.returncode == 1
        assert "tests/demo.yaml:41:47: error E031" in result.stderr
        assert "E031 unknown-criterion: 'diesase' is not a deciding criterion of demo" in (
            result.stderr
        )


def test_coverage_lists_what_was_never_exercised(rules: Path) -> None:
    result = run_eligo("rules", "coverage", str(rules), "--fail-under", "100")
    assert result.returncode == 1
    assert "never exercised:\n  demo smoker: unknown" in result.stdout
    assert "three-valued coverage: 95.8 % (7/8 criteria" in result.stdout
    assert "below 100 %" in result.stderr
    report = json.loads(run_eligo("rules", "coverage", str(rules), "--json").stdout)
    assert report["percent"] == 95.83
    assert [c["criterion"] for c in report["criteria"] if c["never"]] == ["smoker"]


def test_diff_with_a_cohort(rules: Path, tmp_path: Path) -> None:
    _replace(rules / "therapies" / "demo.yaml", "lvef_percent < 45 %", "lvef_percent < 50 %")
    cohort = tmp_path / "cohort.csv"
    cohort.write_text(
        "id,has_disease,age_years,subtype,score,organ_a,pao2_mmhg[kPa],serum_creatinine,"
        "lvef_percent\n"
        "moves,yes,40,diffuse,20,yes,12,1.0,47\n"
        "stays,yes,40,diffuse,20,yes,12,1.0,60\n",
        encoding="utf-8",
    )
    result = run_eligo("rules", "diff", str(GOLDEN_RULES), str(rules), "--cohort", str(cohort))
    assert result.returncode == 0, result.stderr
    assert "~ threshold lvef: lvef_percent < 45 % -> lvef_percent < 50 %" in result.stdout
    assert "2 patients, 1 status changes" in result.stdout
    assert "demo: 1 patients (eligible -> ineligible: 1)" in result.stdout
    assert "moves  demo  eligible -> ineligible [lvef]" in result.stdout
    report = json.loads(
        run_eligo(
            "rules", "diff", str(GOLDEN_RULES), str(rules), "--cohort", str(cohort), "--json"
        ).stdout
    )
    assert report["cohort"]["changes"] == [
        {
            "patient": "moves",
            "ruleset": "demo",
            "old": "eligible",
            "new": "ineligible",
            "reasons": ["lvef"],
        }
    ]


def test_diff_refuses_a_bad_cohort_naming_every_bad_row(rules: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "cohort.jsonl"
    cohort.write_text(
        '{"id": "a", "features": {"lvef_percent": 200}}\n'
        '{"id": "b", "features": {"pao2_mmhg": {"value": 9, "unit": "kg"}}}\n',
        encoding="utf-8",
    )
    result = run_eligo("rules", "diff", str(GOLDEN_RULES), str(rules), "--cohort", str(cohort))
    assert result.returncode == 2
    assert f"{cohort}:1: features.lvef_percent: 200 % is outside" in result.stderr
    assert f"{cohort}:2: features.pao2_mmhg.unit:" in result.stderr
    assert result.stdout == ""  # nothing half-written


def test_diff_of_invalid_rules_exits_1(rules: Path) -> None:
    _replace(rules / "therapies" / "demo.yaml", "lvef_percent < 45 %", "lvef_percent <")
    result = run_eligo("rules", "diff", str(GOLDEN_RULES), str(rules))
    assert result.returncode == 1
    assert "error E010 expression-syntax" in result.stderr
