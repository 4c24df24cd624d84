"""The peer rule set of shared/docs/BENCHMARK.md, as Eligo loads it, agrees exactly with its
hand-written floors: the Python function (benchmarks/peer/handwritten.py) and the DuckDB query
(benchmarks/peer/floor_sql.py), on the generated peer cohort. No timings: the benchmarks
(benchmarks/bench_peer.py, bench_screen.py, bench_http_floor.py) measure; this holds them to
comparing like with like."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from app.engine.diagnostics import Code
from app.engine.evaluate import Result, decide
from app.engine.inputs import normalise
from app.engine.load import check_rules
from app.engine.model import CriterionKind, RuleBase, RuleSet
from benchmarks.peer import cohort, floor_sql
from benchmarks.peer.handwritten import CRITERIA, EXCLUSIONS, INCLUSIONS, decide_peer
from benchmarks.peer.ruleset import RULESET_FILE, load_peer
from tests.conftest import SHIPPED_RULES

pytestmark = pytest.mark.one_pass

N = 2_000
RESULT = {True: Result.MET, False: Result.NOT_MET, None: Result.UNKNOWN}


@pytest.fixture(scope="module")
def peer() -> tuple[RuleBase, RuleSet]:
    return load_peer()


@pytest.fixture(scope="module")
def patients() -> list[dict[str, Any]]:
    # Through JSON text and back, as the benchmarks read the JSONL.
    return [json.loads(json.dumps(p)) for p in cohort.patients(N)]


def test_the_rule_set_has_exactly_benchmark_md_s_15_criteria(
    peer: tuple[RuleBase, RuleSet],
) -> None:
    _, ruleset = peer
    assert ruleset.indication_criterion.id == "inc_ssc"
    assert [c.id for c in ruleset.inclusions] == list(INCLUSIONS)
    assert [c.id for c in ruleset.exclusions] == list(EXCLUSIONS)
    assert ruleset.cautions == ()
    assert [c.id for c in ruleset.deciding] == list(CRITERIA)
    assert {c.kind for c in ruleset.exclusions} == {CriterionKind.EXCLUSION}


def test_the_shipped_safety_floor_refuses_it(tmp_path: Path) -> None:
    """Why the benchmarks load it from a scratch directory without `safety_floor:`."""
    rules = shutil.copytree(SHIPPED_RULES, tmp_path / "rules")
    shutil.copyfile(RULESET_FILE, rules / "therapies" / RULESET_FILE.name)
    base, diagnostics = check_rules(rules)
    assert base is None
    assert {d.code for d in diagnostics} == {Code.SAFETY_FLOOR}
    assert len(diagnostics) == 2  # active infection and active malignancy; pregnancy is there


def test_eligo_agrees_exactly_with_the_hand_written_function(
    peer: tuple[RuleBase, RuleSet], patients: list[dict[str, Any]]
) -> None:
    rules, ruleset = peer
    statuses: Counter[str] = Counter()
    results: dict[str, set[Result]] = {c: set() for c in CRITERIA}
    for i, raw in enumerate(patients):
        expected = decide_peer(raw)
        decision = decide(ruleset, normalise(raw, rules.features))
        got = {r.criterion.id: r.result for r in decision.criteria}
        want = {c: RESULT[expected[c]] for c in CRITERIA}
        assert (decision.status, got) == (expected["status"], want), f"patient {i}: {raw}"
        statuses[expected["status"]] += 1
        for criterion, result in want.items():
            results[criterion].add(result)
    # The cohort drives every status, and every criterion to met, not met and unknown.
    assert set(statuses) == {"not_indicated", "ineligible", "indeterminate", "eligible"}
    assert all(len(seen) == 3 for seen in results.values()), results


def test_the_sql_floor_agrees_on_the_parquet_cohort(tmp_path: Path) -> None:
    """The registry floor, over the Parquet file, against the function over the JSONL file:
    the two files hold the same patients (missing: NULL there, an absent key here)."""
    lines, parquet = cohort.write(N, tmp_path)
    expected = cohort.read_jsonl(lines)
    out = tmp_path / "floor.parquet"
    floor_sql.run(parquet, out)
    connection = duckdb.connect()
    columns = ", ".join(["status", *CRITERIA])
    got = connection.execute(f"SELECT {columns} FROM read_parquet('{out}') ORDER BY id").fetchall()  # noqa: S608 - a test's own path
    assert len(got) == N
    for i, (row, raw) in enumerate(zip(got, expected, strict=True)):
        want = decide_peer(raw)
        assert row == (want["status"], *(want[c] for c in CRITERIA)), f"patient {i}: {raw}"


def test_a_cohort_is_the_start_of_any_larger_one() -> None:
    assert cohort.patients(100) == cohort.patients(cohort.BLOCK + 100)[:100]
