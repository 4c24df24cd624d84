"""The compiled-SQL cache (app/batch/sql_cache.py): a warm cache screens exactly as a cold
one without importing SQLAlchemy; any change to the rules is another key; a damaged, foreign or
unwritable cache falls back to compiling, silently; the patients' ids never reach it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.batch import runner, sql_cache
from app.batch.backends import DuckDBBackend, Relation
from app.batch.mapping import Column, Plan, RawKind
from app.batch.runner import Outcome, Request, screen
from app.engine.load import load_rules
from app.engine.model import RuleBase
from app.engine.units import Linear
from tests.conftest import ROOT, SHIPPED_RULES

pytestmark = pytest.mark.one_pass

HEADER = "id,age_years,ssc_diagnosis,ssc_subtype,mrss,lvef_percent,dlco_percent_predicted\n"
ROWS = [
    "p1,45,yes,diffuse_cutaneous,20,60,55",
    "p2,70,yes,limited_cutaneous,10,85,35",
    "p3,,no,,,,",
    "p4,30.5,true,diffuse_cutaneous,16,40,",
]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """A fresh cache folder for one test, the suite's put back after it."""
    folder = tmp_path / "sql-cache"
    previous = sql_cache.folder()
    sql_cache.use(folder)
    yield folder
    sql_cache.use(previous)


def cohort(folder: Path, rows: list[str] = ROWS) -> Path:
    path = folder / "cohort.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def run(source: Path, out: Path, rules: RuleBase) -> Outcome:
    return screen(Request(source=str(source), out=out), rules)


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def verdict_entries(folder: Path) -> list[Path]:
    """The entries holding a screening's verdicts (the others hold DuckDB's macros)."""
    return [p for p in entries(folder) if "verdicts" in json.loads(p.read_text())["sql"]]


def same_results(first: Outcome, second: Outcome) -> bool:
    return bool(pq.read_table(first.results).equals(pq.read_table(second.results)))


def test_a_warm_cache_screens_as_a_cold_one(
    cache: Path, tmp_path: Path, shipped_rules: RuleBase
) -> None:
    source = cohort(tmp_path)
    cold = run(source, tmp_path / "cold.parquet", shipped_rules)
    [entry] = verdict_entries(cache)
    written = entry.stat().st_mtime_ns
    warm = run(source, tmp_path / "warm.parquet", shipped_rules)
    assert entry.stat().st_mtime_ns == written  # read, not compiled and written again
    assert same_results(cold, warm)
    assert cold.report["rulesets"] == warm.report["rulesets"]
    sql_cache.use(None)  # and both as without any cache
    uncached = run(source, tmp_path / "uncached.parquet", shipped_rules)
    assert same_results(cold, uncached)


# Run in a fresh interpreter with the cache filled by the test: what `eligo screen` imports.
PROBE = """
import sys
from app.batch import runner, sql_cache
from app.batch.mapping import Column
sql_cache.use(__import__("pathlib").Path(sys.argv[1]))
import app.cli
sys.argv = ["eligo", *sys.argv[2:]]
try:
    app.cli.main()
except SystemExit:
    pass
print("loaded:", *(m for m in ("sqlalchemy",) if m in sys.modules), file=sys.stderr)
"""


def test_eligo_screen_on_a_warm_cache_does_not_import_sqlalchemy(
    cache: Path, tmp_path: Path
) -> None:
    source = cohort(tmp_path)

    def probe(out: Path) -> list[str]:
        args = [str(cache), "screen", "--no-progress", str(source), "--out", str(out)]
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert out.exists(), done.stderr
        return done.stderr.splitlines()[-1].split()[1:]

    assert probe(tmp_path / "cold.parquet") == ["sqlalchemy"]  # compiled: the cache was empty
    assert probe(tmp_path / "warm.parquet") == []
    cold, warm = (pq.read_table(tmp_path / n) for n in ("cold.parquet", "warm.parquet"))
    assert cold.equals(warm)


def test_a_changed_catalogue_is_another_key(
    cache: Path, tmp_path: Path, shipped_rules: RuleBase
) -> None:
    """LVEF's plausible range narrowed to 5-80 %: p2's 85 % is then refused. The rule sets'
    own hashes do not change with it (no rule reads the bound), the catalogue's content does."""
    source = cohort(tmp_path)
    before = run(source, tmp_path / "before.parquet", shipped_rules)
    edited = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, edited)
    features = edited / "features.yaml"
    text = features.read_text(encoding="utf-8")
    at = text.index("id: lvef_percent")
    end = text.index("range: [5, 90]", at)
    features.write_text(text[:end] + "range: [5, 80]" + text[end + 14 :], encoding="utf-8")
    narrowed = load_rules(edited)
    after = run(source, tmp_path / "after.parquet", narrowed)
    assert len(verdict_entries(cache)) == 2
    assert before.report["problems"]["cells"] == 0
    assert after.report["rejected"]["count"] == 0  # a bad cell is unknown, the row screened
    [found] = after.report["problems"]["by_column"]
    assert (found["column"], found["problem"]) == (
        "lvef_percent",
        "outside the plausible range 5–80 %",
    )
    assert found["first"] == "cohort.csv:3"


def test_a_changed_rule_is_another_key(
    cache: Path, tmp_path: Path, shipped_rules: RuleBase
) -> None:
    source = cohort(tmp_path)
    before = run(source, tmp_path / "before.parquet", shipped_rules)
    edited = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, edited)
    astis = edited / "therapies" / "hsct-ssc-astis.yaml"
    text = astis.read_text(encoding="utf-8")
    assert "when: lvef_percent < 45 %" in text
    astis.write_text(text.replace("when: lvef_percent < 45 %", "when: lvef_percent < 65 %"))
    after = run(source, tmp_path / "after.parquet", load_rules(edited))
    assert len(verdict_entries(cache)) == 2
    column = "hsct-ssc-astis:lvef-below-45"
    assert pq.read_table(before.results).column(column).to_pylist()[0] is False
    assert pq.read_table(after.results).column(column).to_pylist()[0] is True  # p1's 60 %


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "not JSON",
        "another key",
        "text changed, checksum kept",
        "not a mapping",
    ],
)
def test_a_damaged_entry_is_compiled_again_silently(
    cache: Path, tmp_path: Path, shipped_rules: RuleBase, damage: str
) -> None:
    source = cohort(tmp_path)
    first = run(source, tmp_path / "first.parquet", shipped_rules)
    [entry] = verdict_entries(cache)
    good = entry.read_text(encoding="utf-8")
    data = json.loads(good)
    if damage == "truncated":
        entry.write_text(good[: len(good) // 2], encoding="utf-8")
    elif damage == "not JSON":
        entry.write_bytes(b"\xff\xfe not json")
    elif damage == "another key":
        data["key"] = "0" * 64
        entry.write_text(json.dumps(data), encoding="utf-8")
    elif damage == "text changed, checksum kept":
        # A query that would call every patient eligible, were it run.
        data["sql"]["verdicts"] = data["sql"]["verdicts"].replace("'ineligible'", "'eligible'")
        entry.write_text(json.dumps(data), encoding="utf-8")
    else:
        entry.write_text("[1, 2, 3]", encoding="utf-8")
    again = run(source, tmp_path / "again.parquet", shipped_rules)
    assert same_results(first, again)
    assert entry.read_text(encoding="utf-8") == good  # written anew


def test_an_unwritable_cache_still_screens(tmp_path: Path, shipped_rules: RuleBase) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be", encoding="utf-8")
    previous = sql_cache.folder()
    sql_cache.use(blocker / "sql")
    try:
        outcome = run(cohort(tmp_path), tmp_path / "r.parquet", shipped_rules)
    finally:
        sql_cache.use(previous)
    assert outcome.report["screened"] == len(ROWS)


def test_duplicate_ids_are_never_written_to_the_cache(
    cache: Path, tmp_path: Path, shipped_rules: RuleBase
) -> None:
    source = cohort(tmp_path, [*ROWS, "p-duplicated-7,50,yes,,,,", "p-duplicated-7,51,yes,,,,"])
    outcome = run(source, tmp_path / "r.parquet", shipped_rules)
    assert [r.where for r in outcome.rejected] == ["cohort.csv:6", "cohort.csv:7"]
    assert all("duplicate" in r.problems for r in outcome.rejected)
    assert entries(cache)  # the duplicate-free texts were kept
    for entry in entries(cache):
        assert "p-duplicated-7" not in entry.read_text(encoding="utf-8")
    warm = run(source, tmp_path / "warm.parquet", shipped_rules)  # from the cache, with ids
    assert [r.where for r in warm.rejected] == ["cohort.csv:6", "cohort.csv:7"]
    assert same_results(outcome, warm)


def test_every_field_of_a_mapped_column_is_part_of_the_cache_key(
    shipped_rules: RuleBase,
) -> None:
    """runner._cache_parts keys the SQL on every field of every mapped Column (by
    `dataclasses.fields`): a field added to Column and left out would let a warm cache serve
    SQL made without it (wrong results, silently). Each field changed alone changes the key."""
    features = shipped_rules.features
    base = Column(features["lvef_percent"], "EF", RawKind.TEXT, None)
    changed = {
        "feature": features["mrss"],
        "column": "LVEF",
        "kind": RawKind.NUMBER,
        "unit": "%",
        "linear": Linear(2.0, 0.0),
        "values": {"<5": 4},
        "missing": frozenset({"u"}),
        "decimal_comma": True,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(Column)}

    def key(column: Column, strict: bool = False) -> str:
        job = runner.Job(
            backend=DuckDBBackend(), rules=shipped_rules, rulesets=[], out=Path("r.csv"),
            strict=strict,
        )  # fmt: skip
        try:
            relation = Relation("t", {"EF": RawKind.TEXT})
            parts = runner._cache_parts(job, relation, Plan("id", (column,), ()), [])
        finally:
            job.backend.close()
        return json.dumps(parts, sort_keys=True)

    keys = {key(base), key(base, strict=True)}
    for name, value in changed.items():
        keys.add(key(dataclasses.replace(base, **{name: value})))  # type: ignore[arg-type]
    assert len(keys) == 2 + len(changed)
