"""The vignette format: validation with positions, the runner's comparisons, coverage."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.engine.evaluate import Result, Status
from app.engine.model import RuleBase
from app.engine.vignettes import ExpectSpec, Vignette, coverage, load_vignettes, run
from tests.conftest import GOLDEN_RULES

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "vignettes"


def test_vignette_diagnostics_are_golden(
    golden_rules: RuleBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(GOLDEN.parent.parent.parent)
    vignettes, diagnostics = load_vignettes(Path("tests/golden/vignettes"), golden_rules)
    assert vignettes == []  # every case in these files has a problem
    got = "\n".join(str(d) for d in diagnostics) + "\n"
    expected = GOLDEN / "expected.txt"
    if os.environ.get("ELIGO_UPDATE_GOLDEN"):
        expected.write_text(got, encoding="utf-8")
    assert got == expected.read_text(encoding="utf-8")


@pytest.fixture
def demo(golden_rules: RuleBase) -> list[Vignette]:
    vignettes, diagnostics = load_vignettes(GOLDEN_RULES / "tests", golden_rules)
    assert diagnostics == []
    return vignettes


def test_demo_vignettes_pass(demo: list[Vignette]) -> None:
    outcomes = [run(v) for v in demo]
    assert [o.mismatches for o in outcomes] == [()] * len(demo)
    assert outcomes[0].decision.status is Status.ELIGIBLE


def test_a_wrong_expectation_names_each_difference(demo: list[Vignette]) -> None:
    every_exclusion = next(v for v in demo if v.name == "every exclusion")
    wrong = ExpectSpec(
        status=Status.INDETERMINATE,
        reasons=["lvef"],
        missing=["score"],
        cautions=["smoker"],
        criteria={"pao2": Result.NOT_MET},
    )
    outcome = run(
        Vignette(
            every_exclusion.name,
            every_exclusion.position,
            every_exclusion.ruleset,
            every_exclusion.values,
            wrong,
        )
    )
    assert not outcome.passed
    assert outcome.mismatches == (
        "status: expected indeterminate, got ineligible",
        "reasons: expected ['lvef'], got ['age', 'creatinine', 'lvef', 'pao2', 'skin-and-organ', "
        "'subtype']",
        "missing: expected ['score'], got []",
        "cautions: expected ['smoker'], got []",
        "criterion pao2: expected not_met, got met",
    )


def test_coverage_counts_each_result_and_names_the_gap(
    golden_rules: RuleBase, demo: list[Vignette]
) -> None:
    report = coverage(golden_rules, [run(v) for v in demo])
    gaps = {(c.criterion.id, tuple(c.unexercised)) for c in report if c.unexercised}
    assert gaps == {("smoker", (Result.UNKNOWN,))}
    assert len(report) == 8


def test_coverage_ignores_failing_vignettes(golden_rules: RuleBase, demo: list[Vignette]) -> None:
    candidate = demo[0]
    failing = Vignette(
        candidate.name,
        candidate.position,
        candidate.ruleset,
        candidate.values,
        ExpectSpec(status=Status.INELIGIBLE),
    )
    report = coverage(golden_rules, [run(failing)])
    assert all(c.seen == frozenset() for c in report)
