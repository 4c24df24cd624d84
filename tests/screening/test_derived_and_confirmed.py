"""Catalogue derivations and clinician confirmations in a screening, on every engine.

A small rule directory of its own (tests/screening/rules: a derived feature with two
derivations, one derived from dialysis, two confirmations, a fragment), so that these tests
mean the same however the shipped rule sets are re-encoded. Each row is screened on DuckDB
(CSV), PostgreSQL (a table) and Spark (CSV) and held to the API's path, `derive(normalise(...))`
then `decide`; a row that gives a value against a derivation is screened with the implied
value (as `derive` replaces it), flagged `corrected:<feature>` in the results where
`derive.corrections` lists it, and counted in the report without its id (a FHIR Bulk record
alike); the report keeps the values to measure apart from the confirmations a clinician must
give.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.batch.backends import Backend, DuckDBBackend, SparkBackend
from app.batch.bulk import read_bulk
from app.batch.database import DatabaseBackend
from app.batch.funnel import funnel_svg
from app.batch.runner import Job, Outcome, Request, run
from app.batch.runner import screen as run_screen
from app.cli.screen import screen_command
from app.engine.derive import corrections, derive
from app.engine.evaluate import Decision, Result, decide
from app.engine.inputs import normalise
from app.engine.load import load_rules
from app.engine.model import CriterionKind, RuleBase
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

RULES_DIR = Path(__file__).resolve().parent / "rules"
COLUMNS = (
    "has_disease",
    "age_years",
    "lvef_percent",
    "pregnant",
    "dialysis",
    "dose_g[mg]",
    "doses",
    "prior_agent",
    "renal_replacement",
    "severe_comorbidity",
    "fitness_confirmed",
)
CLEAN: dict[str, str | None] = {
    "has_disease": "yes",
    "age_years": "40",
    "lvef_percent": "60",
    "pregnant": "no",
    "dialysis": "no",
    "dose_g[mg]": "0",
    "doses": "0",
    "prior_agent": "no",
    "renal_replacement": "no",
    "severe_comorbidity": "no",
    "fitness_confirmed": "yes",
}
UNCONFIRMED = {"severe_comorbidity": None, "fitness_confirmed": None}
ROWS: list[dict[str, str | None]] = [
    CLEAN,  # p0: eligible everywhere
    {**CLEAN, **UNCONFIRMED},  # p1: awaits only the confirmations
    {**CLEAN, **UNCONFIRMED, "lvef_percent": None},  # p2: and LVEF to measure
    {**CLEAN, "dose_g[mg]": "3000"},  # p3: 3 g given, yet "no prior agent": corrected
    {**CLEAN, "dialysis": "yes", "renal_replacement": None},  # p4: derived renal replacement
    {**CLEAN, "doses": "2", "prior_agent": None},  # p5: derived prior agent
    {**CLEAN, "pregnant": "yes"},  # p6: the fragment's exclusion
    {**CLEAN, "dialysis": "yes", "doses": "1"},  # p7: two values corrected
    {**CLEAN, "severe_comorbidity": None},  # p8: awaits one confirmation
]
CORRECTED = {"p3": ["prior_agent"], "p7": ["prior_agent", "renal_replacement"]}
PRIOR_AGENT = (
    "prior_agent: given false in 2 rows where dose_g > 0 g or doses > 0 implies true (a dose"
    " given is the agent given; a course given is the agent given); the implied value was used"
)
RENAL_REPLACEMENT = (
    "renal_replacement: given false in 1 row where dialysis implies true (dialysis is renal"
    " replacement); the implied value was used"
)


@pytest.fixture(scope="module")
def rules() -> RuleBase:
    return load_rules(RULES_DIR)


def _api_value(column: str, cell: str) -> Any:
    if cell in {"yes", "no"}:
        return cell == "yes"
    return {"value": float(cell), "unit": "mg"} if column == "dose_g[mg]" else float(cell)


def oracle(rules: RuleBase, row: Mapping[str, str | None]) -> dict[str, Any]:
    """The API's answer per rule set (status, excluded_by, missing, to_confirm), and under
    `corrected` the features whose given value `derive` replaced."""
    raw = {c.split("[")[0]: _api_value(c, v) for c, v in row.items() if v is not None}
    values = derive(normalise(raw, rules.features), rules.features)
    answer: dict[str, Any] = {r.id: _answer(decide(r, values)) for r in rules.rulesets.values()}
    return {**answer, "corrected": sorted(ident for ident, _ in corrections(values))}


def _answer(decision: Decision) -> tuple[Any, ...]:
    fails = {CriterionKind.EXCLUSION: Result.MET}
    first = next(
        (
            r.criterion.id
            for r in decision.criteria
            if r.result is fails.get(r.criterion.kind, Result.NOT_MET)
        ),
        None,
    )
    return (decision.status.value, first, list(decision.missing), list(decision.to_confirm))


def screened(rules: RuleBase, outcome: Outcome) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for row in pq.read_table(outcome.results).to_pylist():
        found[row["id"]] = {
            r.id: (
                row[column_name(r, STATUS)],
                row[column_name(r, EXCLUDED_BY)],
                _flagged(row, column_name(r, MISSING, "")),
                _flagged(row, column_name(r, TO_CONFIRM, "")),
            )
            for r in rules.rulesets.values()
        }
        found[row["id"]]["corrected"] = _flagged(row, corrected_column(""))
    return found


def _flagged(row: Mapping[str, Any], prefix: str) -> list[str]:
    return sorted(n.removeprefix(prefix) for n, v in row.items() if n.startswith(prefix) and v)


def write_csv(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *COLUMNS])
        for i, row in enumerate(ROWS):
            writer.writerow([f"p{i}", *(row[c] or "" for c in COLUMNS)])


def postgres_table(url: str) -> None:
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    columns = [sa.Column(c, sa.Text) for c in COLUMNS]
    table = sa.Table("registry", metadata, sa.Column("id", sa.Text, primary_key=True), *columns)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"id": f"p{i}", **row} for i, row in enumerate(ROWS)])
    engine.dispose()


def _screen(engine: Backend, rules: RuleBase, source: str, out: Path, **options: Any) -> Outcome:
    job = Job(
        backend=engine,
        rules=rules,
        rulesets=list(rules.rulesets.values()),
        out=out,
        source_name=Path(source).name,
        **options,
    )
    return run(job, engine.open(source))


@pytest.fixture(params=["duckdb", "postgres", "spark"])
def outcome(
    request: pytest.FixtureRequest, rules: RuleBase, tmp_path: Path
) -> Iterator[tuple[str, Outcome]]:
    out = tmp_path / "r.parquet"
    if request.param == "postgres":
        with postgres_database() as url:
            postgres_table(url)
            yield "row ", _screen(DatabaseBackend(url), rules, "registry", out)
        return
    write_csv(tmp_path / "cohort.csv")
    engine: Backend = (
        SparkBackend(request.getfixturevalue("spark"))
        if request.param == "spark"
        else DuckDBBackend()
    )
    try:
        yield (
            "cohort.csv:",
            _screen(engine, rules, str(tmp_path / "cohort.csv"), out, line_offset=1),
        )
    finally:
        engine.close()


def test_each_row_screens_as_derive_then_decide(
    rules: RuleBase, outcome: tuple[str, Outcome]
) -> None:
    _, found = outcome
    expected = {f"p{i}": oracle(rules, row) for i, row in enumerate(ROWS)}
    assert {i: e["corrected"] for i, e in expected.items() if e["corrected"]} == CORRECTED
    assert screened(rules, found) == expected
    confirming = rules.rulesets["confirming"]
    assert expected["p4"]["confirming"][:2] == ("ineligible", "renal-replacement")
    assert expected["p5"]["confirming"][:2] == ("ineligible", "prior-agent")
    # screened with the implied value: the dose given rules the patient out
    assert expected["p3"]["confirming"][:2] == ("ineligible", "prior-agent")
    assert expected["p7"]["plain"][:2] == ("ineligible", "renal-replacement")
    assert confirming.confirmations == {"severe_comorbidity", "fitness_confirmed"}


def test_a_value_given_against_a_derivation_is_replaced_and_counted(
    outcome: tuple[str, Outcome],
) -> None:
    """p3 and p7 are screened with the implied values, not rejected; the report counts the
    corrections per derived feature, with no patient id."""
    _, found = outcome
    assert found.rejected == []
    assert found.report["screened"] == len(ROWS)
    assert found.report["rejected"]["count"] == 0
    assert found.report["corrected"] == [
        {
            "feature": "prior_agent",
            "label": "Prior agent",
            "rows": 2,
            "given": False,
            "implied": True,
            "derivations": [
                {"when": "dose_g > 0 g", "because": "a dose given is the agent given"},
                {"when": "doses > 0", "because": "a course given is the agent given"},
            ],
            "summary": PRIOR_AGENT,
        },
        {
            "feature": "renal_replacement",
            "label": "Renal replacement in 3 months",
            "rows": 1,
            "given": False,
            "implied": True,
            "derivations": [{"when": "dialysis", "because": "dialysis is renal replacement"}],
            "summary": RENAL_REPLACEMENT,
        },
    ]
    # The ids are only in the results, for the registry to correct its source.
    assert not re.search(r'"p\d"', json.dumps(found.report))
    with found.rejected_file.open(encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == []
    columns = pq.read_schema(found.results).names
    assert columns[:3] == ["id", "corrected:prior_agent", "corrected:renal_replacement"]


def test_the_report_keeps_values_to_measure_apart_from_confirmations(
    outcome: tuple[str, Outcome],
) -> None:
    _, found = outcome
    report = found.report
    per = {r["id"]: r for r in report["rulesets"]}
    confirming, plain = per["confirming"], per["plain"]
    assert confirming["missing"] == [
        {"feature": "lvef_percent", "label": "LVEF", "patients": 1}  # p2
    ]
    assert confirming["to_confirm"] == [
        {
            "feature": "severe_comorbidity",
            "label": "Severe comorbidity",
            "question": "Does the patient have a severe concomitant disease the protocol excludes?",
            "proceeds_when": False,
            "patients": 3,  # p1, p2, p8
        },
        {
            "feature": "fitness_confirmed",
            "label": "Fitness confirmed",
            "question": "Has a fitness assessment found no contraindication?",
            "proceeds_when": True,
            "patients": 2,  # p1, p2
        },
    ]
    assert confirming["to_confirm_only"] == 2  # p1 and p8: nothing to measure
    assert confirming["funnel"]["to_confirm_only"] == 2
    assert confirming["counts"]["indeterminate"] == 3
    assert plain["missing"] == [{"feature": "lvef_percent", "label": "LVEF", "patients": 1}]
    assert plain["to_confirm"] == []
    assert plain["to_confirm_only"] == 0
    assert [(m["feature"], m["patients"]) for m in report["missing"]] == [("lvef_percent", 1)]
    assert [(c["feature"], c["patients"]) for c in report["to_confirm"]] == [
        ("severe_comorbidity", 3),
        ("fitness_confirmed", 2),
    ]


def test_an_included_criterion_says_where_it_comes_from(outcome: tuple[str, Outcome]) -> None:
    _, found = outcome
    entry = next(r for r in found.report["rulesets"] if r["id"] == "confirming")
    step = next(s for s in entry["funnel"]["steps"] if s["criterion"] == "pregnancy")
    assert step["origin"]["fragment"] == "general"
    assert step["origin"]["applies_to"] == "all test therapies"
    assert step["excluded"] == 1  # p6
    own = next(s for s in entry["funnel"]["steps"] if s["criterion"] == "lvef")
    assert own["origin"] is None
    criterion = next(c for c in entry["criteria"] if c["id"] == "pregnancy")
    assert criterion["origin"] == step["origin"]
    svg = funnel_svg(entry)
    assert "Exclusion met: Pregnancy" in svg
    assert "shared criterion, applies to all test therapies" in svg
    assert "2 awaiting only a clinician's confirmation" in svg


def test_the_cli_names_confirmations_apart_from_missing_values(tmp_path: Path) -> None:
    write_csv(tmp_path / "cohort.csv")
    out = tmp_path / "r.parquet"
    args = [str(tmp_path / "cohort.csv"), "--out", str(out), "--rules-dir", str(RULES_DIR)]
    result = CliRunner().invoke(screen_command, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    measure = lines.index("values missing most (to measure), patients:")
    confirm = lines.index("awaiting a clinician's confirmation (not a measurement), patients:")
    assert lines[measure + 1 : confirm] == [
        "  confirming: lvef_percent for 1",
        "  plain: lvef_percent for 1",
    ]
    assert lines[confirm + 1] == (
        "  confirming: severe_comorbidity for 3, fitness_confirmed for 2;"
        " 2 await nothing but confirmations"
    )
    assert lines[0] == f"rows read {len(ROWS)}; rejected 0; screened {len(ROWS)}"
    corrected = lines.index("values given that were corrected (corrected:<feature>):")
    assert lines[corrected + 1 : corrected + 3] == [f"  {PRIOR_AGENT}", f"  {RENAL_REPLACEMENT}"]


# --- FHIR Bulk: derived as the API derives after mapping ----------------------------------------

DIALYSIS_CODE = {"system": "http://snomed.info/sct", "code": "108241001", "display": "Dialysis"}


def _bulk_rules(folder: Path) -> RuleBase:
    """The test catalogue with codes: dialysis from a Condition, and renal replacement false
    when the problem list lacks it (so a record can contradict the derivation)."""
    shutil.copytree(RULES_DIR, folder)
    text = (folder / "features.yaml").read_text(encoding="utf-8")
    dialysis = "description: On dialysis now., group: kidney"
    assert dialysis in text
    text = text.replace(dialysis, f"{dialysis}, codes: [{json.dumps(DIALYSIS_CODE)}]")
    derived = "    group: kidney\n    derive:\n"
    assert derived in text
    text = text.replace(derived, '    group: kidney\n    absent_in_record: "false"\n    derive:\n')
    (folder / "features.yaml").write_text(text, encoding="utf-8")
    return load_rules(folder)


def _condition(ident: str, patient: str, coding: dict[str, str]) -> dict[str, Any]:
    status = "http://terminology.hl7.org/CodeSystem/condition-"
    return {
        "resourceType": "Condition",
        "id": ident,
        "clinicalStatus": {"coding": [{"system": f"{status}clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": f"{status}ver-status", "code": "confirmed"}]},
        "code": {"coding": [coding]},
        "subject": {"reference": f"Patient/{patient}"},
    }


def test_a_bulk_record_given_against_a_derivation_is_corrected(tmp_path: Path) -> None:
    """p1's record has dialysis but no renal replacement on its problem list (which this
    catalogue reads as "no"): screened with renal replacement true, as the API derives it,
    and counted as corrected. p2 has neither: screened, with nothing derived."""
    rules = _bulk_rules(tmp_path / "rules")
    export = tmp_path / "export"
    export.mkdir()
    patients = [
        {"resourceType": "Patient", "id": p, "birthDate": "1980-01-01"} for p in ("p1", "p2")
    ]
    (export / "Patient.000.ndjson").write_text("\n".join(map(json.dumps, patients)) + "\n")
    condition = _condition("c1", "p1", DIALYSIS_CODE)
    (export / "Condition.000.ndjson").write_text(json.dumps(condition) + "\n")
    cohort = read_bulk(export, rules.features, date(2026, 1, 1))
    assert cohort.problems == []
    read = {p.ident: p for p in cohort.patients}
    assert read["p1"].given["renal_replacement"].value is False
    assert read["p1"].values["renal_replacement"].value is True
    assert [ident for ident, _ in corrections(read["p1"].values)] == ["renal_replacement"]
    outcome = run_screen(Request(source=str(export), out=tmp_path / "r.parquet"), rules)
    assert outcome.rejected == []
    assert outcome.report["screened"] == 2
    assert [(c["feature"], c["rows"]) for c in outcome.report["corrected"]] == [
        ("renal_replacement", 1)
    ]
    rows = {r["id"]: r for r in pq.read_table(outcome.results).to_pylist()}
    assert rows["p1"][corrected_column("renal_replacement")] is True
    assert rows["p2"][corrected_column("renal_replacement")] is False
    assert rows["p1"][column_name(rules.rulesets["plain"], "renal-replacement")] is True
    assert rows["p2"][column_name(rules.rulesets["plain"], "renal-replacement")] is False
