"""Screening end to end: raw registry cells -> validation -> verdicts -> results, on DuckDB
(CSV, Parquet, NDJSON), PostgreSQL (a table, pushed down) and Spark (local mode).

The oracle is the API's own path for each row: `normalise`, `derive`, then `decide`. A row
`normalise` refuses must be rejected with its row number; every other row must get the same
status, criterion results, values missing and confirmations awaited as the Python evaluator
gives, and the same `corrected:<feature>` flags as `derive.corrections` lists (a value given
against a catalogue derivation is replaced, never a rejected row).
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from app.batch import backends, database
from app.batch.backends import Backend, DuckDBBackend, SourceError, SparkBackend
from app.batch.bulk import read_bulk
from app.batch.database import DatabaseBackend
from app.batch.mapping import Column, MappingError, RawKind, load_mapping, plan
from app.batch.report import ScreeningReport
from app.batch.runner import Cancelled, Job, Outcome, Request, run, sentence, side_file
from app.batch.runner import screen as run_screen
from app.engine import cells
from app.engine.cells import DEFAULT_MISSING
from app.engine.derive import corrections, derive
from app.engine.evaluate import Result, decide
from app.engine.inputs import InvalidInput, normalise
from app.engine.model import RuleBase, RuleSet
from app.engine.result_columns import (
    EXCLUDED_BY,
    MISSING,
    STATUS,
    TO_CONFIRM,
    column_name,
    corrected_column,
)
from tests.databases import postgres_database

# Independent of ELIGO_TEST_DATABASE: scripts/test.sh runs these in the SQLite pass only.
pytestmark = pytest.mark.one_pass

NUMBERS = {
    "age_years": (0, 120),  # fractions: rounded down to completed years, flagged corrected
    "ecog": (0, 5),  # fractions: refused
    "mrss": (0, 51),
    "dlco_percent_predicted": (5, 150),
    "lvef_percent": (5, 90),
    "disease_duration_years": (0, 80),
}
BOOLEANS = (
    "ssc_diagnosis",
    "sle_diagnosis",
    "ild_present",
    "internal_organ_involvement",
    # the catalogue derives each of the next from the one before it
    "dialysis",
    "renal_replacement_last_3_months",
    "active_malignancy",
    "history_of_malignancy",
    "prior_alkylating_or_irradiation",
    # clinician confirmations
    "severe_comorbidity",
    "hsct_fitness_confirmed",
)
DOSE = "prior_cyclophosphamide_iv_g"  # > 0 implies prior_alkylating_or_irradiation
ENUMS = {"ssc_subtype": ("diffuse_cutaneous", "limited_cutaneous", "sine_scleroderma")}
CREATININE = "serum_creatinine[umol/L]"
TRUE_CELLS = ("true", "Yes", "1", "TRUE", "y")
FALSE_CELLS = ("false", "no", "0", "N")


def _number_cell(low: float, high: float) -> st.SearchStrategy[str | None]:
    inside = st.floats(low, high, allow_nan=False).map(lambda v: repr(round(v, 3)))
    edges = st.sampled_from([repr(float(low)), repr(float(high)), str(int(high) + 1), "-1"])
    odd = st.sampled_from(["abc", "1,5", " 42 ", "NA", "n/a", "."])  # the last three: unknown
    return st.one_of(st.none(), inside, edges, odd)


@st.composite
def csv_rows(draw: st.DrawFn) -> dict[str, str | None]:
    row: dict[str, str | None] = {}
    for name, (low, high) in NUMBERS.items():
        row[name] = draw(_number_cell(low, high))
    for name in BOOLEANS:
        row[name] = draw(st.none() | st.sampled_from([*TRUE_CELLS, *FALSE_CELLS, "maybe", "NULL"]))
    for name, values in ENUMS.items():
        row[name] = draw(st.none() | st.sampled_from([*values, "diffuse", "N/A"]))
    row[CREATININE] = draw(st.none() | st.sampled_from(["70", "88.4", "150", "2000", "x"]))
    row[DOSE] = draw(st.none() | st.sampled_from(["0", "0.5", "3", "12.25"]))
    return row


def _api_value(column: str, cell: str) -> Any:
    """A CSV cell as the API's JSON would carry it; ValueError where no JSON value exists."""
    text = cell.strip()
    if column in BOOLEANS:
        lowered = text.lower()
        if lowered in {c.lower() for c in TRUE_CELLS}:
            return True
        if lowered in {c.lower() for c in FALSE_CELLS}:
            return False
        raise ValueError(text)
    if column in ENUMS:
        return text
    number = float(text)  # raises ValueError on "abc" and "1,5"
    return {"value": number, "unit": "umol/L"} if column == CREATININE else number


def oracle(
    rules: RuleBase, row: Mapping[str, str | None], *, strict: bool = False
) -> dict[str, Any] | None:
    """Per rule set (status, criteria, awaited) and the features `derive` corrected, or None
    when the row must be rejected (strict, a cell with a problem). Each cell is given to the
    API alone: one it refuses is a problem of that cell, and (not strict) unknown."""
    raw: dict[str, Any] = {}
    problems: list[str] = []
    for column, cell in row.items():
        if cell is None or cell.strip().casefold() in DEFAULT_MISSING:  # the one cell grammar
            continue
        feature = column.split("[")[0]
        try:
            value = _api_value(column, cell)
            normalise({feature: value}, rules.features)
        except (ValueError, InvalidInput):
            problems.append(column)
            continue
        raw[feature] = value
    if strict and problems:
        return None
    return _decided(rules, raw, problems)


def _decided(rules: RuleBase, raw: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    values = derive(normalise(dict(raw), rules.features), rules.features)
    found: dict[str, Any] = {"corrected": sorted(ident for ident, _ in corrections(values))}
    for ruleset in rules.rulesets.values():
        decision = decide(ruleset, values)
        results = [r.result for r in (*decision.criteria, *decision.cautions)]
        awaited = (sorted(decision.missing), sorted(decision.to_confirm))
        found[ruleset.id] = (decision.status.value, results, awaited)
    found["problems"] = sorted(problems)
    return found


def _truth(value: Any) -> Result:
    return Result.UNKNOWN if value is None else (Result.MET if value else Result.NOT_MET)


def screened(rules: RuleBase, outcome: Outcome) -> dict[str, dict[str, Any]]:
    table = pq.read_table(outcome.results).to_pylist()
    found: dict[str, dict[str, Any]] = {}
    for row in table:
        per: dict[str, Any] = {}
        for ruleset in rules.rulesets.values():
            every = (*ruleset.deciding, *ruleset.cautions)
            results = [_truth(row[column_name(ruleset, c.id)]) for c in every]
            awaited = (_flagged(row, ruleset, MISSING), _flagged(row, ruleset, TO_CONFIRM))
            per[ruleset.id] = (row[column_name(ruleset, STATUS)], results, awaited)
        corrected = corrected_column("")
        flagged = [n for n, v in row.items() if n.startswith(corrected) and v]
        per["corrected"] = sorted(n.removeprefix(corrected) for n in flagged)
        found[row["id"]] = per
    return found


def _flagged(row: Mapping[str, Any], ruleset: RuleSet, kind: str) -> list[str]:
    """The features a result row flags as `<ruleset>:<kind>:<feature>`."""
    prefix = column_name(ruleset, kind, "")
    return sorted(n.removeprefix(prefix) for n, v in row.items() if n.startswith(prefix) and v)


def write_csv(path: Path, rows: Sequence[Mapping[str, str | None]], delimiter: str = ",") -> None:
    columns = ["id", *rows[0]] if rows else ["id"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(columns)
        for i, row in enumerate(rows):
            writer.writerow([f"p{i}", *("" if row[c] is None else row[c] for c in columns[1:])])


def screen(
    engine: Backend,
    rules: RuleBase,
    source: str,
    out: Path,
    table: str | None = None,
    **options: Any,
) -> Outcome:
    job = Job(
        backend=engine,
        rules=rules,
        rulesets=list(rules.rulesets.values()),
        out=out,
        source_name=Path(source).name,
        **options,
    )
    return run(job, engine.open(table or source))


def problem_columns(outcome: Outcome) -> dict[str, list[str]]:
    """Per id, the registry columns `.problems.csv` names (cells made unknown)."""
    assert outcome.problems_file is not None
    found: dict[str, list[str]] = {}
    with outcome.problems_file.open(encoding="utf-8") as handle:
        for line in csv.DictReader(handle):
            found.setdefault(line["id"], []).append(line["column"])
    return {ident: sorted(columns) for ident, columns in found.items()}


def check_against_oracle(
    rules: RuleBase,
    rows: Sequence[Mapping[str, str | None]],
    outcome: Outcome,
    *,
    strict: bool = False,
) -> None:
    expected = {f"p{i}": oracle(rules, row, strict=strict) for i, row in enumerate(rows)}
    rejected_rows = {r.row for r in outcome.rejected}
    assert rejected_rows == {i + 1 for i, e in enumerate(expected.values()) if e is None}
    actual = screened(rules, outcome)
    flagged = problem_columns(outcome)
    for ident, per in actual.items():
        per["problems"] = flagged.get(ident, [])
    assert set(actual) == {k for k, e in expected.items() if e is not None}
    for ident, per in actual.items():
        assert per == expected[ident], ident
    assert outcome.report["rows"] == len(rows)
    assert outcome.report["screened"] + outcome.report["rejected"]["count"] == len(rows)
    cells = sum(len(e["problems"]) for e in expected.values() if e is not None)
    assert outcome.report["problems"]["cells"] == cells


@pytest.fixture
def duckdb_engine() -> Iterator[DuckDBBackend]:
    engine = DuckDBBackend()
    yield engine
    engine.close()


def test_csv_cells_screen_exactly_as_the_api_decides(
    shipped_rules: RuleBase, tmp_path_factory: pytest.TempPathFactory
) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(csv_rows(), min_size=1, max_size=25), st.booleans())
    def run_case(rows: list[dict[str, str | None]], strict: bool) -> None:
        folder = tmp_path_factory.mktemp("csv")
        write_csv(folder / "cohort.csv", rows)
        engine = DuckDBBackend()
        try:
            outcome = screen(
                engine,
                shipped_rules,
                str(folder / "cohort.csv"),
                folder / "r.parquet",
                line_offset=1,
                strict=strict,
            )
        finally:
            engine.close()
        check_against_oracle(shipped_rules, rows, outcome, strict=strict)

    run_case()


ROWS: list[dict[str, str | None]] = [
    {"ssc_diagnosis": "yes", "ssc_subtype": "diffuse_cutaneous", "age_years": "45", "mrss": "20",
     "lvef_percent": "60", "ild_present": "yes", CREATININE: "80"},
    {"ssc_diagnosis": "no", "ssc_subtype": None, "age_years": "30", "mrss": None,
     "lvef_percent": "55", "ild_present": None, CREATININE: None},
    {"ssc_diagnosis": "true", "ssc_subtype": "limited_cutaneous", "age_years": "abc", "mrss": "10",
     "lvef_percent": "150", "ild_present": "no", CREATININE: "70"},
    {"ssc_diagnosis": "1", "ssc_subtype": "diffuse_cutaneous", "age_years": "50", "mrss": "25",
     "lvef_percent": None, "ild_present": "maybe", CREATININE: "90"},
    # dialysis implies renal replacement within 3 months (a catalogue derivation): the "no"
    # given is replaced, and the row screened
    {"ssc_diagnosis": "yes", "ssc_subtype": "diffuse_cutaneous", "age_years": "40", "mrss": "20",
     "lvef_percent": "60", "ild_present": "no", CREATININE: "90", "dialysis": "yes",
     "renal_replacement_last_3_months": "no"},
    # the same values, derived: nothing to correct
    {"ssc_diagnosis": "yes", "ssc_subtype": "diffuse_cutaneous", "age_years": "40", "mrss": "20",
     "lvef_percent": "60", "ild_present": "no", CREATININE: "90", "dialysis": "yes",
     "renal_replacement_last_3_months": None},
]  # fmt: skip
for _row in ROWS:
    _row.setdefault("dialysis", None)
    _row.setdefault("renal_replacement_last_3_months", None)
RENAL = "renal_replacement_last_3_months"


def said(outcome: Outcome) -> list[tuple[str, str]]:
    """`.problems.csv` as (where, the problem in words)."""
    assert outcome.problems_file is not None
    with outcome.problems_file.open(encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    return [
        (line["where"], sentence(line["column"], line["feature"], line["problem"], line["value"]))
        for line in lines
    ]


AGE_ABC = "age_years: 'abc' is not a number"
LVEF_150 = "lvef_percent: '150' is outside the plausible range 5–90 %"
ILD_MAYBE = "ild_present: 'maybe' is not yes/no (true/yes/y/1 or false/no/n/0)"


@pytest.mark.parametrize("strict", [False, True])
def test_bad_cells_are_unknown_and_reported_by_line_or_strictly_rejected(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path, strict: bool
) -> None:
    """Issue 20: a bad cell made the whole patient a rejected row. It is now that value
    unknown for that patient, the row screened and the cell reported by file:line, registry
    column and feature; strict mode rejects the row as before."""
    write_csv(tmp_path / "cohort.csv", ROWS)
    outcome = screen(
        duckdb_engine,
        shipped_rules,
        str(tmp_path / "cohort.csv"),
        tmp_path / "r.parquet",
        line_offset=1,
        strict=strict,
    )
    if strict:
        first = outcome.report["rejected"]["first"]
        assert [(r["where"], r["problems"]) for r in first] == [
            ("cohort.csv:4", f"{AGE_ABC}; {LVEF_150}"),
            ("cohort.csv:5", ILD_MAYBE),
        ]
        assert outcome.report["screened"] == 4
        assert said(outcome) == []
        by_column = outcome.report["rejected"]["by_column"]
    else:
        assert outcome.report["rejected"]["count"] == 0
        assert outcome.report["screened"] == 6
        assert said(outcome) == [
            ("cohort.csv:4", AGE_ABC),
            ("cohort.csv:4", LVEF_150),
            ("cohort.csv:5", ILD_MAYBE),
        ]
        assert outcome.report["problems"]["cells"] == 3
        assert outcome.report["problems"]["rows"] == 2
        by_column = outcome.report["problems"]["by_column"]
    assert [(c["column"], c["cells"], c["first"]) for c in by_column] == [
        ("age_years", 1, "cohort.csv:4"),
        ("ild_present", 1, "cohort.csv:5"),
        ("lvef_percent", 1, "cohort.csv:4"),
    ]
    funnel = outcome.report["rulesets"][0]["funnel"]
    assert (funnel["read"], funnel["rejected"], funnel["screened"]) == (
        (6, 2, 4) if strict else (6, 0, 6)
    )
    assert funnel["kept_unknown"] == (0 if strict else 2)
    # p4's "no renal replacement" beside dialysis: replaced and counted, not rejected.
    assert [(c["feature"], c["rows"]) for c in outcome.report["corrected"]] == [(RENAL, 1)]
    assert outcome.report["corrected"][0]["summary"] == (
        f"{RENAL}: given false in 1 row where dialysis implies true (current dialysis is renal"
        " replacement therapy within 3 months); the implied value was used"
    )
    # As written (json.dumps): the report's documented type, which refuses a key it does not
    # list; here with a correction, which the API tests' registries do not have.
    TypeAdapter(ScreeningReport).validate_json(json.dumps(outcome.report))
    # The ids are in the rejected and problems files and the results for the registry to
    # correct, never in the report.
    side = ".rejected.csv" if strict else ".problems.csv"
    listed = list(csv.DictReader(side_file(tmp_path / "r.parquet", side).open()))
    assert [(r["row"], r["id"]) for r in listed] == (
        [("3", "p2"), ("4", "p3")] if strict else [("3", "p2"), ("3", "p2"), ("4", "p3")]
    )
    assert "p2" not in json.dumps(outcome.report)
    assert "p4" not in json.dumps(outcome.report)
    check_against_oracle(shipped_rules, ROWS, outcome, strict=strict)


def test_one_pass_splits_each_batch_into_results_and_rejected_rows(
    shipped_rules: RuleBase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The verdicts query reads the source once and brings every row; each batch is split
    here. In batches of 16, with rejected rows scattered and two batches' worth in a row:
    every row comes out once, as a result or as a rejected row, the rejected ones in row
    order, and the progress counts every row against the count the engine gave first."""
    monkeypatch.setattr(backends, "BATCH_ROWS", 16)
    rows = [dict(ROWS[i % 2]) for i in range(200)]  # ROWS[0] and [1] are valid
    bad = {7, 50, 199, *range(100, 140)}
    for i in bad:
        rows[i] = dict(ROWS[2])  # age "abc", lvef 150
    write_csv(tmp_path / "cohort.csv", rows)
    seen: list[tuple[int, int]] = []
    engine = DuckDBBackend()
    try:
        outcome = screen(
            engine, shipped_rules, str(tmp_path / "cohort.csv"), tmp_path / "r.parquet",
            progress=lambda done, total: seen.append((done, total)), strict=True,
        )  # fmt: skip
    finally:
        engine.close()
    assert [r.row for r in outcome.rejected] == sorted(i + 1 for i in bad)
    assert len(seen) > 200 // 16
    assert seen[-1] == (200, 200)
    assert {total for _, total in seen} == {200}
    assert outcome.report["rows"] == 200
    check_against_oracle(shipped_rules, rows, outcome, strict=True)


@pytest.mark.parametrize("named", [True, False])
def test_duplicate_ids_are_rejected_and_the_results_keep_the_source_order(
    shipped_rules: RuleBase, named: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both rows of an id given twice are rejected (which is right, the registry must say).
    DuckDB reads the duplicated ids first and names them in the screening query, which then
    has no join and streams the rows in the source's order, also over several row groups
    read in parallel; past NAMED_DUPLICATES ids the query joins (the order is not kept).
    Eight ids: DuckDB would turn a list of six or more into a join of its own."""
    monkeypatch.setattr(backends, "NAMED_DUPLICATES", 10 if named else 0)
    n = 300_000
    ids = [f"p{i}" for i in range(n)]
    pairs = [(i * 37_000, i * 37_000 + 5) for i in range(8)]
    for first, second in pairs:
        ids[second] = ids[first]
    table = pa.table(
        {
            "id": ids,
            "ssc_diagnosis": [i % 3 != 0 for i in range(n)],
            "age_years": pa.array([float(20 + i % 60) for i in range(n)]),
        }
    )
    pq.write_table(table, tmp_path / "cohort.parquet", row_group_size=50_000)
    engine = DuckDBBackend()
    try:
        outcome = screen(
            engine, shipped_rules, str(tmp_path / "cohort.parquet"), tmp_path / "r.parquet"
        )
    finally:
        engine.close()
    duplicate = "id: duplicate (another row has the same id)"
    twice = sorted(i for pair in pairs for i in pair)
    assert [(r.row, r.problems) for r in outcome.rejected] == [(i + 1, duplicate) for i in twice]
    kept = [ident for i, ident in enumerate(ids) if i not in set(twice)]
    results = pq.read_table(outcome.results, columns=["id"]).column("id").to_pylist()
    assert results == kept if named else sorted(results) == sorted(kept)


def test_every_row_rejected_still_writes_the_results_columns(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    write_csv(tmp_path / "cohort.csv", [ROWS[2], ROWS[3]])
    outcome = screen(
        duckdb_engine,
        shipped_rules,
        str(tmp_path / "cohort.csv"),
        tmp_path / "r.parquet",
        strict=True,
    )
    results = pq.read_table(outcome.results)
    assert results.num_rows == 0
    assert results.column_names[0] == "id"
    assert column_name(shipped_rules.rulesets["hsct-ssc-astis"], STATUS) in results.column_names
    assert not {"_row", "_problems", "_valid"} & set(results.column_names)
    assert [r.row for r in outcome.rejected] == [1, 2]
    assert outcome.report["rows"] == 2
    assert outcome.report["screened"] == 0


def test_missing_value_codes_are_unknown_not_a_rejected_row_and_a_mapped_code_wins(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    """Issue 20: `n/a`, `NA`, `.` each rejected the whole patient. Read by the one cell grammar
    they are unknown (the patient stays in, undecided where the value decides); a code the
    mapping gives a meaning ("NA": not applicable, say) is the mapping's, not a missing one."""
    (tmp_path / "registry.csv").write_text(
        "PATNO,DX_SSC,SUBTYPE,EF\nA1,y,NA,n/a\nA2,NULL,.,60\n", encoding="utf-8"
    )
    (tmp_path / "mapping.yaml").write_text(
        "id: PATNO\ncolumns:\n  ssc_diagnosis: DX_SSC\n  ssc_subtype: SUBTYPE\n"
        "  lvef_percent: EF\n",
        encoding="utf-8",
    )
    source, out = str(tmp_path / "registry.csv"), tmp_path / "r.parquet"
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    outcome = screen(duckdb_engine, shipped_rules, source, out, mapping=mapping, line_offset=1)
    assert outcome.report["rejected"]["count"] == 0
    rows = {r["id"]: r for r in pq.read_table(outcome.results).to_pylist()}
    astis = shipped_rules.rulesets["hsct-ssc-astis"]
    assert rows["A1"][column_name(astis, "diffuse-cutaneous")] is None  # NA: unknown
    assert rows["A1"][column_name(astis, MISSING, "lvef_percent")] is True  # n/a: to measure
    assert rows["A2"][column_name(astis, STATUS)] == "indeterminate"  # NULL diagnosis
    coded = tmp_path / "coded.yaml"
    coded.write_text(
        "id: PATNO\ncolumns:\n  ssc_subtype: {column: SUBTYPE, values: {NA: limited_cutaneous}}\n",
        encoding="utf-8",
    )
    mapping = load_mapping(coded, shipped_rules.features)
    outcome = screen(duckdb_engine, shipped_rules, source, out, mapping=mapping, line_offset=1)
    rows = {r["id"]: r for r in pq.read_table(outcome.results).to_pylist()}
    assert rows["A1"][column_name(astis, "diffuse-cutaneous")] is False  # NA: limited


@pytest.mark.parametrize("source", ["csv", "parquet"])
def test_a_registrys_own_missing_codes_are_unknown_in_every_column_or_one(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path, source: str
) -> None:
    """`missing:` adds a registry's codes to the grammar's, for all columns or one; a numeric
    code is unknown, not a value outside the plausible range: in a Parquet DOUBLE column
    compared as a number, in a CSV as written (`-99`)."""
    ids, subtype, ef, mrss = ["A1", "A2", "A3"], ["U", "D", "D"], [-99.0, 60.0, 55.0], [30, -1, 0]
    path = tmp_path / f"registry.{source}"
    if source == "parquet":
        table = {"PATNO": ids, "SUBTYPE": subtype, "EF": ef, "MRSS": mrss}
        pq.write_table(pa.table(table), path)
    else:
        cells = zip(ids, subtype, [f"{e:g}" for e in ef], mrss, strict=True)  # -99, as written
        lines = "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in cells)
        path.write_text("PATNO,SUBTYPE,EF,MRSS\n" + lines)
    (tmp_path / "mapping.yaml").write_text(
        "id: PATNO\nmissing: [U, -99]\ncolumns:\n"
        "  ssc_subtype: {column: SUBTYPE, values: {D: diffuse_cutaneous}}\n"
        "  lvef_percent: EF\n  mrss: {column: MRSS, missing: [-1]}\n",
        encoding="utf-8",
    )
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    outcome = screen(
        duckdb_engine, shipped_rules, str(path), tmp_path / "r.parquet", mapping=mapping,
        line_offset=1 if source == "csv" else 0,
    )  # fmt: skip
    assert outcome.report["rejected"]["count"] == 0
    rows = {r["id"]: r for r in pq.read_table(outcome.results).to_pylist()}
    astis = shipped_rules.rulesets["hsct-ssc-astis"]
    assert rows["A1"][column_name(astis, "diffuse-cutaneous")] is None  # U
    assert rows["A1"][column_name(astis, MISSING, "lvef_percent")] is True  # -99
    assert rows["A2"][column_name(astis, MISSING, "mrss")] is True  # -1, MRSS's own code
    assert rows["A3"][column_name(astis, MISSING, "mrss")] is False  # 0 is a score


def test_a_numeric_missing_code_leaves_a_yes_no_column_alone(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    """A registry-wide `missing: [-99]` is compared with numbers only: a Parquet BOOLEAN
    column beside them is read as it is (a boolean compared with -99 is no SQL at all)."""
    path = tmp_path / "registry.parquet"
    table = {"PATNO": ["A1", "A2"], "DX": [True, None], "EF": [-99.0, 60.0]}
    pq.write_table(pa.table(table), path)
    (tmp_path / "mapping.yaml").write_text(
        "id: PATNO\nmissing: [-99]\ncolumns:\n  ssc_diagnosis: DX\n  lvef_percent: EF\n",
        encoding="utf-8",
    )
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    outcome = screen(
        duckdb_engine, shipped_rules, str(path), tmp_path / "r.parquet", mapping=mapping
    )
    assert outcome.report["rejected"]["count"] == 0
    rows = {r["id"]: r for r in pq.read_table(outcome.results).to_pylist()}
    astis = shipped_rules.rulesets["hsct-ssc-astis"]
    assert rows["A1"][column_name(astis, "ssc-diagnosis")] is True
    assert rows["A1"][column_name(astis, MISSING, "lvef_percent")] is True


CODED_MAPPING = """\
id: PAT_ID
missing: [U, -99]
decimal: ","
columns:
  ssc_diagnosis: {column: DX, values: {SSC: true, SLE: false}}
  sle_diagnosis: {column: DX, values: {SLE: true, SSC: false}}
  ild_present: {column: ILD, values: {1: true, 2: false, 9: null}}
  lvef_percent: LVEF
  dlco_percent_predicted: {column: DLCO, decimal: "."}
  mrss: {column: MRSS, values: {"<1": 0, "99": null}}
  ssc_subtype: {column: SUBTYPE, values: {D: diffuse_cutaneous, l: limited_cutaneous, X: null}}
  age_years: AGE
"""
CODED_CELLS = {
    "DX": ["SSC", "SLE", "ssc", " Sle ", "U", "", "OTHER", "NA", "true"],
    "ILD": ["1", "2", "9", "0", "yes", "3", "", "U", "-99"],
    "LVEF": ["61,5", "60", "60.5", "1,5e3", "abc", "-99", "U", "150", ",5", "55,", "4,9"],
    "DLCO": ["61,5", "60", "n/a", "-99", "70.25"],
    "MRSS": ["<1", "20", "99", "60", "x", " <1 ", "U"],
    "SUBTYPE": ["D", "l", "L", "X", "x", "diffuse_cutaneous", "Q", ""],
    "AGE": ["45", "45,5", "70", "-99"],
}


def coded_oracle(
    rules: RuleBase, columns: Sequence[Column], row: Mapping[str, str], *, strict: bool
) -> dict[str, Any] | None:
    """`oracle` for a coded registry: each cell read by the one cell grammar
    (`cells.read`, with the grammar the mapping gives its column), then given to the API
    alone."""
    raw: dict[str, Any] = {}
    problems: list[str] = []
    for column in columns:
        feature = column.feature
        read = cells.read(row[column.column], feature.type, column.grammar())
        if isinstance(read, cells.Unknown):
            continue
        try:
            if isinstance(read, cells.Problem):
                raise ValueError(read.message)
            normalise({feature.id: read}, rules.features)
        except (ValueError, InvalidInput):
            problems.append(column.column)
            continue
        raw[feature.id] = read
    if strict and problems:
        return None
    return _decided(rules, raw, problems)


def test_coded_cells_screen_as_the_cell_grammar_reads_them(
    shipped_rules: RuleBase, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The SQL the mapping's keys compile to (`values:` for booleans, numbers and enums, one
    column feeding two features, `missing:`, `decimal:` for the registry and one column) reads
    every cell as `cells.read` does, strict or not; each problem named by registry column."""
    folder = tmp_path_factory.mktemp("coded")
    (folder / "mapping.yaml").write_text(CODED_MAPPING, encoding="utf-8")
    mapping = load_mapping(folder / "mapping.yaml", shipped_rules.features)
    kinds = dict.fromkeys(["PAT_ID", *CODED_CELLS], RawKind.TEXT)
    columns = plan(kinds, shipped_rules.features, mapping).columns
    row_of = st.fixed_dictionaries({c: st.sampled_from(v) for c, v in CODED_CELLS.items()})

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(row_of, min_size=1, max_size=30), st.booleans())
    def run_case(rows: list[dict[str, str]], strict: bool) -> None:
        path = folder / "registry.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["PAT_ID", *CODED_CELLS])
            writer.writerows(
                [f"p{i}", *(row[c] for c in CODED_CELLS)] for i, row in enumerate(rows)
            )
        engine = DuckDBBackend()
        try:
            outcome = screen(
                engine, shipped_rules, str(path), folder / "r.parquet",
                mapping=mapping, line_offset=1, strict=strict,
            )  # fmt: skip
        finally:
            engine.close()
        expected = {
            f"p{i}": coded_oracle(shipped_rules, columns, row, strict=strict)
            for i, row in enumerate(rows)
        }
        assert {r.row for r in outcome.rejected} == {
            i + 1 for i, e in enumerate(expected.values()) if e is None
        }
        actual = screened(shipped_rules, outcome)
        flagged = problem_columns(outcome)
        for ident, per in actual.items():
            per["problems"] = flagged.get(ident, [])
        assert set(actual) == {k for k, e in expected.items() if e is not None}
        for ident, per in actual.items():
            assert per == expected[ident], json.dumps(rows[int(ident[1:])])

    run_case()


def test_one_registry_column_feeds_two_features_and_codes_map_every_type(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    (tmp_path / "registry.csv").write_text(
        "PAT_ID,DX,ILD,LVEF,DLCO,MRSS,SUBTYPE,AGE\n"
        'A1,SSC,1,"61,5","61,5",<1,D,45\n'
        "A2,SLE,9,U,60,99,X,-99\n",
        encoding="utf-8",
    )
    (tmp_path / "mapping.yaml").write_text(CODED_MAPPING, encoding="utf-8")
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    outcome = screen(
        duckdb_engine, shipped_rules, str(tmp_path / "registry.csv"), tmp_path / "r.parquet",
        mapping=mapping, line_offset=1,
    )  # fmt: skip
    rows = {r["id"]: r for r in pq.read_table(outcome.results).to_pylist()}
    astis = shipped_rules.rulesets["hsct-ssc-astis"]
    sle = shipped_rules.rulesets["car-t-sle"]
    assert rows["A1"][column_name(astis, "ssc-diagnosis")] is True
    assert rows["A1"][column_name(sle, "sle-diagnosis")] is False
    assert rows["A2"][column_name(astis, "ssc-diagnosis")] is False
    assert rows["A2"][column_name(sle, "sle-diagnosis")] is True
    assert rows["A1"][column_name(astis, "lvef-below-45")] is False  # 61,5 read as 61.5
    assert rows["A2"][column_name(astis, "lvef-below-45")] is None  # U
    assert rows["A1"][column_name(astis, "diffuse-cutaneous")] is True  # D
    assert rows["A2"][column_name(astis, "diffuse-cutaneous")] is None  # X: null
    # DLCO declares a decimal point: its "61,5" is the one problem, named with the hint.
    assert said(outcome) == [
        (
            "registry.csv:2",
            "DLCO (dlco_percent_predicted): '61,5' is not a number; "
            'a decimal comma is read only where a mapping declares decimal: ","',
        )
    ]
    assert outcome.report["columns"]["used"]["sle_diagnosis"] == "DX"


def test_malformed_mapping_keys_are_named_with_their_line(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    (tmp_path / "mapping.yaml").write_text(
        "decimal: comma\n"
        "strict: maybe\n"
        "columns:\n"
        "  ssc_diagnosis: {column: DX, values: {yes: true}}\n"
        '  sex: {column: SEX, decimal: ","}\n'
        "  mrss: {column: MRSS, values: [1, 2]}\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as caught:
        load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    assert [p.split("mapping.yaml:", 1)[-1] for p in caught.value.problems] == [
        '1: `decimal` is "," (a decimal comma: 61,5) or "." (61.5)',
        "2: `strict` is true or false",
        "4: the code true is no cell's text; quote it: 'true'",
        "5: sex is not a number; it has no decimal comma",
        "6: `values` maps registry codes to the feature's values",
    ]
    (tmp_path / "mapping.yaml").write_text(
        "columns:\n"
        "  ssc_diagnosis: {column: DX, values: {SSC: yes please}}\n"
        "  mrss: {column: MRSS, values: {'<1': true}}\n",
        encoding="utf-8",
    )
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    source = dict.fromkeys(["id", "DX", "MRSS"], RawKind.TEXT)
    with pytest.raises(MappingError) as caught:
        plan(source, shipped_rules.features, mapping)
    assert [p.split("mapping.yaml:", 1)[-1] for p in caught.value.problems] == [
        "2: ssc_diagnosis: values ['yes please'] are not true, false or null (a yes/no)",
        "3: mrss: values ['True'] are not numbers (or null)",
    ]


def test_a_missing_list_that_is_not_codes_is_named_with_its_line(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    (tmp_path / "mapping.yaml").write_text(
        "missing: U\ncolumns:\n  mrss: {column: MRSS, missing: [true]}\n", encoding="utf-8"
    )
    with pytest.raises(MappingError) as caught:
        load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    assert [p.split("mapping.yaml:", 1)[-1] for p in caught.value.problems] == [
        "1: `missing` lists the codes that mean unknown, e.g. [U, -99]",
        "3: `missing` lists the codes that mean unknown, e.g. [U, -99]",
    ]


def test_a_mapping_file_renames_columns_converts_units_and_codes(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    (tmp_path / "registry.csv").write_text(
        "PATNO,DX_SSC,SUBTYPE,AGE,CREA_MGDL,EF,NAME\n"
        "A1,Y,D,45,0.9,60,Jane\n"
        "A2,Y,L,70,1.2,40,John\n",
        encoding="utf-8",
    )
    (tmp_path / "mapping.yaml").write_text(
        "id: PATNO\n"
        "columns:\n"
        "  ssc_diagnosis: DX_SSC\n"
        "  ssc_subtype: {column: SUBTYPE, values: {D: diffuse_cutaneous, L: limited_cutaneous}}\n"
        "  age_years: AGE\n"
        "  serum_creatinine: {column: CREA_MGDL, unit: mg/dL}\n"
        "  lvef_percent: EF\n",
        encoding="utf-8",
    )
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    outcome = screen(
        duckdb_engine, shipped_rules, str(tmp_path / "registry.csv"), tmp_path / "r.parquet",
        mapping=mapping, line_offset=1,
    )  # fmt: skip
    assert outcome.report["rejected"]["count"] == 0
    assert outcome.report["columns"]["ignored"] == ["NAME"]
    assert outcome.report["columns"]["units"] == {"serum_creatinine": "mg/dL"}
    rows = {r["id"]: r for r in pq.read_table(outcome.results).to_pylist()}
    astis = shipped_rules.rulesets["hsct-ssc-astis"]
    assert rows["A1"][column_name(astis, "diffuse-cutaneous")] is True
    assert rows["A2"][column_name(astis, "diffuse-cutaneous")] is False
    assert rows["A2"][column_name(astis, EXCLUDED_BY)] == "diffuse-cutaneous"
    expected = normalise(
        {"ssc_diagnosis": True, "ssc_subtype": "diffuse_cutaneous", "age_years": 45,
         "serum_creatinine": {"value": 0.9, "unit": "mg/dL"}, "lvef_percent": 60},
        shipped_rules.features,
    )  # fmt: skip
    for ruleset in shipped_rules.rulesets.values():
        assert rows["A1"][column_name(ruleset, STATUS)] == decide(ruleset, expected).status.value


def test_mapping_problems_are_all_named_with_their_line(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    (tmp_path / "mapping.yaml").write_text(
        "columns:\n"
        "  lvef: EF\n"
        "  serum_creatinine: {column: CREA, unit: furlong}\n"
        "  ssc_diagnosis: {column: DX, unit: mg/dL}\n"
        "  sex: {column: SEX, values: {F: woman}}\n"
        "  age_years: AGE\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as caught:
        load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    assert caught.value.problems == [
        "mapping.yaml:2: unknown feature 'lvef'; see GET /v1/features"
    ] or caught.value.problems[0].endswith(
        "mapping.yaml:2: unknown feature 'lvef'; see GET /v1/features"
    )
    text = (tmp_path / "mapping.yaml").read_text(encoding="utf-8").replace("  lvef: EF\n", "")
    (tmp_path / "mapping.yaml").write_text(text, encoding="utf-8")
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    source = dict.fromkeys(["id", "CREA", "DX", "SEX"], RawKind.TEXT)
    with pytest.raises(MappingError) as caught:
        plan(source, shipped_rules.features, mapping)
    problems = [p.split("mapping.yaml:", 1)[-1] for p in caught.value.problems]
    assert problems[0] == (
        "2: serum_creatinine: 'furlong' is not a unit Eligo recognises; use mg/dL or µmol/L"
    )
    assert problems[1:] == [
        "3: ssc_diagnosis is not a number; it has no unit",
        "4: sex: values ['woman'] are not among ['female', 'male', 'other', 'unknown']",
        "5: age_years: no column 'AGE' in the source",
    ]


def test_without_a_mapping_every_column_must_be_a_feature(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    (tmp_path / "c.csv").write_text("id,lvef_percent,NAME,lvef_percent[%],age\np1,50,x,50,4\n")
    with pytest.raises(MappingError) as caught:
        screen(duckdb_engine, shipped_rules, str(tmp_path / "c.csv"), tmp_path / "r.parquet")
    advice = (
        "; give a mapping file to rename or leave out a registry's own columns "
        "(`eligo mapping init` drafts one)"
    )
    assert caught.value.problems == [
        f"c.csv: column 'NAME' is not a feature id (or `feature[unit]`){advice}",
        "c.csv: two columns give 'lvef_percent'",
        # the nearest catalogue id, as the API says it for a mistyped feature
        f"c.csv: column 'age' is not a feature id (or `feature[unit]`); did you mean "
        f"'age_years'?{advice}",
    ]
    assert not (tmp_path / "r.parquet").exists()


def test_a_postgresql_table_is_screened_inside_the_database(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    """Typed columns (DOUBLE PRECISION, BOOLEAN, TEXT) and text columns that need parsing."""
    with postgres_database() as url:
        engine = sa.create_engine(url)
        metadata = sa.MetaData()
        table = sa.Table(
            "registry",
            metadata,
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("ssc_diagnosis", sa.Boolean),
            sa.Column("ssc_subtype", sa.Text),
            sa.Column("age_years", sa.Double),
            sa.Column("mrss", sa.Integer),
            sa.Column("lvef_percent", sa.Text),
            sa.Column("ild_present", sa.Text),
            sa.Column(CREATININE, sa.Double),
            sa.Column("dialysis", sa.Boolean),
            sa.Column("renal_replacement_last_3_months", sa.Text),
        )
        metadata.create_all(engine)
        rows: list[dict[str, Any]] = [
            {"id": "p0", "ssc_diagnosis": True, "ssc_subtype": "diffuse_cutaneous",
             "age_years": 45.0, "mrss": 20, "lvef_percent": "60", "ild_present": "yes",
             CREATININE: 80.0},
            {"id": "p1", "ssc_diagnosis": False, "ssc_subtype": None, "age_years": 30.0,
             "mrss": None, "lvef_percent": "55", "ild_present": None, CREATININE: None},
            {"id": "p2", "ssc_diagnosis": True, "ssc_subtype": "limited_cutaneous",
             "age_years": 200.0, "mrss": 10, "lvef_percent": "abc", "ild_present": "no",
             CREATININE: 70.0},
            {"id": "p3", "ssc_diagnosis": True, "ssc_subtype": "diffuse_cutaneous",
             "age_years": 40.0, "mrss": 20, "lvef_percent": "60", "ild_present": "no",
             CREATININE: 80.0, "dialysis": True, "renal_replacement_last_3_months": "no"},
            {"id": "p4", "ssc_diagnosis": True, "ssc_subtype": "diffuse_cutaneous",
             "age_years": 40.0, "mrss": 20, "lvef_percent": "60", "ild_present": "no",
             CREATININE: 80.0, "dialysis": True, "renal_replacement_last_3_months": None},
        ]  # fmt: skip
        # An insert of many rows takes its columns from the first: give each every key.
        blank = dict.fromkeys(c.name for c in table.columns)
        with engine.begin() as connection:
            connection.execute(table.insert(), [{**blank, **row} for row in rows])
        engine.dispose()
        outcome = screen(
            DatabaseBackend(url), shipped_rules, url, tmp_path / "r.parquet", table="registry"
        )
    assert outcome.report["source"]["engine"] == "postgresql"
    assert outcome.rejected == []
    assert [text for _, text in said(outcome)] == [
        "age_years: '200' is outside the plausible range 0–120 years",
        "lvef_percent: 'abc' is not a number",
    ]
    assert [(c["feature"], c["rows"]) for c in outcome.report["corrected"]] == [(RENAL, 1)]
    expected: dict[str, dict[str, str | None]] = {
        "p0": {"ssc_diagnosis": "yes", "ssc_subtype": "diffuse_cutaneous", "age_years": "45",
               "mrss": "20", "lvef_percent": "60", "ild_present": "yes", CREATININE: "80"},
        "p1": {"ssc_diagnosis": "no", "ssc_subtype": None, "age_years": "30", "mrss": None,
               "lvef_percent": "55", "ild_present": None, CREATININE: None},
        "p3": {"ssc_diagnosis": "yes", "ssc_subtype": "diffuse_cutaneous", "age_years": "40",
               "mrss": "20", "lvef_percent": "60", "ild_present": "no", CREATININE: "80",
               "dialysis": "yes", RENAL: "no"},
        "p4": {"ssc_diagnosis": "yes", "ssc_subtype": "diffuse_cutaneous", "age_years": "40",
               "mrss": "20", "lvef_percent": "60", "ild_present": "no", CREATININE: "80",
               "dialysis": "yes"},
        "p2": {"ssc_diagnosis": "yes", "ssc_subtype": "limited_cutaneous", "age_years": "200",
               "mrss": "10", "lvef_percent": "abc", "ild_present": "no", CREATININE: "70"},
    }  # fmt: skip
    actual = screened(shipped_rules, outcome)
    for ident, columns in problem_columns(outcome).items():
        actual[ident]["problems"] = columns
    for per in actual.values():
        per.setdefault("problems", [])
    assert actual == {ident: oracle(shipped_rules, row) for ident, row in expected.items()}


def test_spark_screens_the_same_csv_as_duckdb(
    shipped_rules: RuleBase, spark: Any, tmp_path: Path
) -> None:
    write_csv(tmp_path / "cohort.csv", ROWS)
    seen: list[tuple[int, int]] = []
    outcome = screen(
        SparkBackend(spark), shipped_rules, str(tmp_path / "cohort.csv"), tmp_path / "r.parquet",
        line_offset=1, progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert outcome.report["source"]["engine"] == "spark"
    assert seen[-1] == (len(ROWS), len(ROWS))  # counted while the rows were numbered
    assert said(outcome) == [
        ("cohort.csv:4", AGE_ABC), ("cohort.csv:4", LVEF_150), ("cohort.csv:5", ILD_MAYBE)
    ]  # fmt: skip
    assert [(c["feature"], c["rows"]) for c in outcome.report["corrected"]] == [(RENAL, 1)]
    check_against_oracle(shipped_rules, ROWS, outcome)


# The first lines quote nothing; the last quotes a decimal comma. DuckDB's sniffer took `'` for
# the quote on exactly these lines, split `"1,5"` in two and moved every later cell of the line
# one column to the right: the diagnosis read "abc", the subtype nothing, creatinine the
# subtype's text.
QUOTED_LATE: list[dict[str, str | None]] = [
    {"mrss": None, "dlco_percent_predicted": None, "disease_duration_years": None,
     "ssc_diagnosis": None, "ssc_subtype": None, CREATININE: None},
    {"mrss": None, "dlco_percent_predicted": "NA", "disease_duration_years": "56.471",
     "ssc_diagnosis": "maybe", "ssc_subtype": None, CREATININE: "88.4"},
    {"mrss": "1,5", "dlco_percent_predicted": None, "disease_duration_years": "abc",
     "ssc_diagnosis": None, "ssc_subtype": "limited_cutaneous", CREATININE: None},
]  # fmt: skip


@pytest.mark.parametrize("engine_name", ["duckdb", "spark"])
def test_a_quoted_cell_stays_in_its_column_when_earlier_lines_quote_nothing(
    shipped_rules: RuleBase, engine_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    write_csv(tmp_path / "cohort.csv", QUOTED_LATE)
    assert '"1,5"' in (tmp_path / "cohort.csv").read_text(encoding="utf-8")
    engine: Backend = (
        SparkBackend(request.getfixturevalue("spark"))
        if engine_name == "spark"
        else DuckDBBackend()
    )
    outcome = screen(
        engine, shipped_rules, str(tmp_path / "cohort.csv"), tmp_path / "r.parquet",
        line_offset=1,
    )  # fmt: skip
    assert [(where, text.split(":")[0]) for where, text in said(outcome)] == [
        ("cohort.csv:3", "ssc_diagnosis"), ("cohort.csv:4", "mrss"),
        ("cohort.csv:4", "disease_duration_years"),
    ]  # fmt: skip
    check_against_oracle(shipped_rules, QUOTED_LATE, outcome)


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_a_csv_delimited_otherwise_screens_the_same(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, delimiter: str, tmp_path: Path
) -> None:
    rows = [*ROWS, *QUOTED_LATE]
    columns = {column for row in rows for column in row}
    rows = [{column: row.get(column) for column in sorted(columns)} for row in rows]
    write_csv(tmp_path / "cohort.csv", rows, delimiter)
    outcome = screen(
        duckdb_engine, shipped_rules, str(tmp_path / "cohort.csv"), tmp_path / "r.parquet",
        line_offset=1,
    )  # fmt: skip
    check_against_oracle(shipped_rules, rows, outcome)


def _parquet_rows() -> tuple[pa.Table, list[dict[str, str | None]]]:
    """Typed Parquet columns, and the same rows as CSV cells for the oracle."""
    table = pa.table(
        {
            "id": ["p0", "p1", "p2"],
            "ssc_diagnosis": [True, None, False],
            "ssc_subtype": ["diffuse_cutaneous", "limited_cutaneous", None],
            "age_years": [45.0, 61.5, float("nan")],
            "mrss": pa.array([20, 30, None], pa.int32()),
        }
    )
    cells: list[dict[str, str | None]] = [
        {"ssc_diagnosis": "true", "ssc_subtype": "diffuse_cutaneous", "age_years": "45",
         "mrss": "20"},
        {"ssc_diagnosis": None, "ssc_subtype": "limited_cutaneous", "age_years": "61.5",
         "mrss": "30"},
        {"ssc_diagnosis": "false", "ssc_subtype": None, "age_years": "abc", "mrss": None},
    ]  # fmt: skip
    return table, cells


@pytest.mark.parametrize("engine_name", ["duckdb", "spark"])
def test_typed_parquet_columns(
    shipped_rules: RuleBase, engine_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    table, cells = _parquet_rows()
    pq.write_table(table, tmp_path / "cohort.parquet")
    engine: Backend = (
        SparkBackend(request.getfixturevalue("spark"))
        if engine_name == "spark"
        else DuckDBBackend()
    )
    outcome = screen(
        engine, shipped_rules, str(tmp_path / "cohort.parquet"), tmp_path / "r.parquet"
    )
    # NaN reads "nan" in DuckDB and "NaN" in Spark.
    assert [(where, text.lower()) for where, text in said(outcome)] == [
        ("cohort.parquet: row 3", "age_years: 'nan' is not a number")
    ]
    check_against_oracle(shipped_rules, cells, outcome)


def test_ndjson_of_flat_feature_objects(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    lines = [
        {"id": "p0", "ssc_diagnosis": True, "ssc_subtype": "diffuse_cutaneous", "age_years": 45},
        {"id": "p1", "ssc_diagnosis": "perhaps", "age_years": 30},
    ]
    (tmp_path / "c.ndjson").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    outcome = screen(duckdb_engine, shipped_rules, str(tmp_path / "c.ndjson"), tmp_path / "r.csv")
    assert said(outcome) == [
        ("c.ndjson: row 2", "ssc_diagnosis: '\"perhaps\"' is not a boolean (JSON of another type)")
    ]
    results = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    assert [r["id"] for r in results] == ["p0", "p1"]
    assert results[0]["hsct-ssc-astis:diffuse-cutaneous"] == "true"
    assert results[1]["hsct-ssc-astis:ssc-diagnosis"] == ""  # unknown


def test_cancelling_keeps_no_results_file(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    write_csv(tmp_path / "cohort.csv", ROWS)
    with pytest.raises(Cancelled):
        screen(
            duckdb_engine, shipped_rules, str(tmp_path / "cohort.csv"), tmp_path / "r.parquet",
            cancelled=lambda: True,
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.csv"]


def test_an_unreadable_source_is_a_clear_error(
    duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(SourceError, match=r"unsupported format '\.txt'"):
        duckdb_engine.open(str(tmp_path / "c.txt"))
    with pytest.raises(SourceError, match="no such file"):
        duckdb_engine.open(str(tmp_path / "missing.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SourceError, match=r"^.*bad\.parquet: "):
        duckdb_engine.open(str(tmp_path / "bad.parquet"))


def test_a_ragged_line_past_the_header_check_is_an_error_naming_the_file(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    """DuckDB samples the start of a CSV to open it; a line with too many cells further on
    comes out only when the whole file is read, and must still fail the screening whole."""
    lines = ["id,age_years", *(f"p{i},{40 + i % 30}" for i in range(50_000)), "p-x,41,99,7"]
    (tmp_path / "late.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"^late\.csv: .*CSV Error on Line: 50002$") as raised:
        screen(duckdb_engine, shipped_rules, str(tmp_path / "late.csv"), tmp_path / "r.parquet")
    assert "p-x" not in str(raised.value)  # the first line of DuckDB's message: no cells
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.csv"]


def test_a_database_that_never_answers_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loopback server that accepts the connection and says nothing: the registry database
    behind a dead proxy. The pre-check and the worker must not wait on it for minutes."""
    monkeypatch.setattr(database, "CONNECT_SECONDS", 2)  # libpq's least
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        engine = DatabaseBackend(f"postgresql+psycopg://reader@127.0.0.1:{port}/registry")
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"^table 'registry': .*timeout"):
            engine.open("registry")
        assert time.monotonic() - started < 10
        engine.close()


BULK = Path(__file__).resolve().parents[1] / "fixtures" / "fhir" / "bulk-40"


def test_a_fhir_bulk_export_screens_as_map_bundle_decides(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    """Through `runner.screen`: the folder is mapped patient by patient, then screened; a
    resource `map_bundle` refuses keeps its patient out, named by file:line."""
    folder = tmp_path / "export"
    shutil.copytree(BULK, folder)
    observations = folder / "Observation.000.ndjson"
    lines = observations.read_text(encoding="utf-8").splitlines()
    lines.insert(1, "{not json")
    observations.write_text("\n".join(lines) + "\n", encoding="utf-8")
    on = date(2020, 10, 15)
    request = Request(source=str(folder), out=tmp_path / "r.parquet", as_of=on)
    outcome = run_screen(request, shipped_rules)
    problems = {r.where: r.problems for r in outcome.rejected}
    malformed = problems.pop(f"{observations}:2")
    assert malformed == "column 2: Expecting property name enclosed in double quotes"
    # Synthea's dead patients: refused as the API refuses them, at their Patient lines.
    patients = folder / "Patient.000.ndjson"
    lines = patients.read_text(encoding="utf-8").splitlines()
    dead = [i for i, line in enumerate(lines, start=1) if "deceasedDateTime" in line]
    assert problems == {
        f"{patients}:{i}": "deceasedDateTime: the patient is recorded as deceased; "
        "eligibility is not evaluated"
        for i in dead
    }
    cohort = read_bulk(BULK, shipped_rules.features, on)
    assert outcome.report["screened"] == len(cohort.patients) == 40 - len(dead) == 33
    rows = {r["id"]: r for r in pq.read_table(outcome.results).to_pylist()}
    for patient in cohort.patients:
        for ruleset in shipped_rules.rulesets.values():
            expected = decide(ruleset, patient.values).status.value
            assert rows[patient.ident][column_name(ruleset, STATUS)] == expected


def test_units_as_registries_write_them_and_completed_years(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    """Column units as laboratories print them (`pao2_mmhg[mmHg]`, `serum_creatinine[µmol/L]`)
    screen as the API reads the same quantities; a fractional age is rounded down to completed
    years as the API does, and flagged and counted as corrected; a fractional ECOG is a
    problem of that cell, as it is a 422: unknown, and reported."""
    cells = {"ssc_diagnosis": "yes", "pao2_mmhg[mmHg]": "86", "serum_creatinine[µmol/L]": "80"}
    rows: list[dict[str, str | None]] = [
        {**cells, "age_years": "65.5", "ecog": "1"},
        {**cells, "age_years": "66", "ecog": "1"},
        {**cells, "age_years": "40", "ecog": "1.5"},
    ]
    write_csv(tmp_path / "cohort.csv", rows)
    outcome = screen(
        duckdb_engine, shipped_rules, str(tmp_path / "cohort.csv"), tmp_path / "r.parquet"
    )
    api = {
        "ssc_diagnosis": True,
        "pao2_mmhg": {"value": 86, "unit": "mmHg"},
        "serum_creatinine": {"value": 80, "unit": "µmol/L"},
        "ecog": 1,
    }
    found = screened(shipped_rules, outcome)
    assert set(found) == {"p0", "p1", "p2"}
    for ident, age in (("p0", 65.5), ("p1", 66)):
        values = derive(
            normalise({**api, "age_years": age}, shipped_rules.features), shipped_rules.features
        )
        for ruleset in shipped_rules.rulesets.values():
            assert found[ident][ruleset.id][0] == decide(ruleset, values).status.value
        assert found[ident]["corrected"] == sorted(i for i, _ in corrections(values))
    assert found["p0"]["corrected"] == ["age_years"]
    assert found["p0"]["hsct-ssc-astis"][1] != found["p1"]["hsct-ssc-astis"][1]  # 65 and 66
    assert outcome.rejected == []
    assert said(outcome) == [
        ("cohort.csv: row 3", "ecog: '1.5' is not a whole number; ECOG has no fractions")
    ]
    unknown_ecog = {k: v for k, v in api.items() if k != "ecog"} | {"age_years": 40}
    values = derive(normalise(unknown_ecog, shipped_rules.features), shipped_rules.features)
    for ruleset in shipped_rules.rulesets.values():
        assert found["p2"][ruleset.id][0] == decide(ruleset, values).status.value
    (corrected,) = outcome.report["corrected"]
    assert (corrected["feature"], corrected["rows"], corrected["implied"]) == ("age_years", 1, None)
    assert corrected["summary"] == (
        "age_years: a fraction of years given in 1 row; age_years counts completed years, "
        "so the completed years were used"
    )
    assert outcome.report["columns"]["units"] == {
        "pao2_mmhg": "mm[Hg]",
        "serum_creatinine": "umol/L",
    }
    TypeAdapter(ScreeningReport).validate_json(json.dumps(outcome.report))


def test_a_mapping_takes_units_as_registries_write_them(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    (tmp_path / "mapping.yaml").write_text(
        "columns:\n"
        "  serum_creatinine: {column: CREA, unit: µmol/l}\n"
        "  pao2_mmhg: {column: PAO2, unit: mmHg}\n"
        "  age_years: {column: AGE, unit: yrs}\n"
        "  egfr: {column: GFR, unit: ml/min/1.73m2}\n",
        encoding="utf-8",
    )
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    source = dict.fromkeys(["id", "CREA", "PAO2", "AGE", "GFR"], RawKind.NUMBER)
    columns = {c.feature.id: c for c in plan(source, shipped_rules.features, mapping).columns}
    assert {f: c.unit for f, c in columns.items()} == {
        "serum_creatinine": "umol/L",
        "pao2_mmhg": "mm[Hg]",
        "age_years": "a",
        "egfr": "mL/min/{1.73_m2}",
    }
    assert columns["serum_creatinine"].linear.scale == pytest.approx(0.011312)
    (tmp_path / "mapping.yaml").write_text(
        "columns:\n  pao2_mmhg: {column: PAO2, unit: mm hgg}\n", encoding="utf-8"
    )
    mapping = load_mapping(tmp_path / "mapping.yaml", shipped_rules.features)
    with pytest.raises(MappingError) as caught:
        plan(source, shipped_rules.features, mapping)
    (problem,) = caught.value.problems
    assert problem.endswith(
        "pao2_mmhg: 'mm hgg' is not a unit Eligo recognises; use mmHg or kPa "
        "(nearest to what was sent: mmHg)"
    )


def test_a_value_out_of_range_is_told_the_range_in_its_columns_unit(
    shipped_rules: RuleBase, duckdb_engine: DuckDBBackend, tmp_path: Path
) -> None:
    """A creatinine column in µmol/L with 500000 in it: the range is said in µmol/L, as the
    registry wrote it, then in the catalogue's mg/dL (it said only "0.1–20 mg/dL")."""
    source = tmp_path / "c.csv"
    source.write_text("id,ssc_diagnosis,serum_creatinine[umol/L]\np1,yes,500000\np2,yes,80\n")
    outcome = screen(duckdb_engine, shipped_rules, str(source), tmp_path / "r.parquet")
    assert [text for _, text in said(outcome)] == [
        "serum_creatinine[umol/L] (serum_creatinine): '500000' is outside the plausible range "
        "8.84–1768 µmol/L (0.1–20 mg/dL)"
    ]
