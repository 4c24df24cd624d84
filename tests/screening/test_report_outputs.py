"""The screening's outputs for people (issue 20, item 4): the HTML report, the CSV tables,
Table 1, the long-format results and the summary on stdout, from real screenings of a
synthetic registry and of small hand-made ones (DuckDB, real files)."""

from __future__ import annotations

import copy
import csv
import json
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from pydantic import TypeAdapter

from app.batch.funnel import funnel_svg
from app.batch.report import ScreeningReport
from app.batch.report_html import report_html
from app.batch.report_tables import tables
from app.batch.runner import Outcome, Request, long_file, screen, side_file
from app.batch.synth import synthesize
from app.batch.table1 import quartiles
from app.cli.screen import screen_command
from app.engine.model import RuleBase
from app.engine.result_columns import EXCLUDED_BY, MISSING, STATUS, TO_CONFIRM, column_name
from tests.conftest import SHIPPED_RULES

pytestmark = pytest.mark.one_pass

# Ids no count could produce: found anywhere in a report, they leaked.
ID_PREFIX = "PSEUDO-7Q"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, shipped_rules: RuleBase) -> Path:
    """300 synthetic patients with recognisable ids as a CSV: two cells spoilt (an age out
    of range, a sex that is no choice: read as unknown, the rows kept and the cells reported)
    and two rows giving one id (both rejected)."""
    table = synthesize(300, shipped_rules.features, seed=7)
    ids = [f"{ID_PREFIX}{i:05d}" for i in range(table.num_rows)]
    table = table.set_column(0, "id", pa.array(ids, pa.string()))
    path = tmp_path_factory.mktemp("cohort") / "registry.csv"
    pa_csv.write_csv(table, str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    age, sex = header.index('"age_years"'), header.index('"sex"')
    twin = lines[11].split(",")[0]
    for line_no, (column, cell) in ((5, (age, "999")), (9, (sex, '"martian"')), (13, (0, twin))):
        cells = lines[line_no - 1].split(",")
        cells[column] = cell
        lines[line_no - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def screened(cohort: Path, shipped_rules: RuleBase) -> Outcome:
    out = cohort.with_name("results.csv")
    return screen(Request(source=str(cohort), out=out, long=True), shipped_rules)


def _outputs(outcome: Outcome) -> dict[str, str]:
    """Every file the screening wrote for people (not the results, which carry the ids)."""
    found = {
        "report.html": side_file(outcome.results, ".report.html").read_text(encoding="utf-8"),
        "report.json": side_file(outcome.results, ".report.json").read_text(encoding="utf-8"),
    }
    for path in sorted(side_file(outcome.results, ".tables").iterdir()):
        found[path.name] = path.read_text(encoding="utf-8-sig")
    for path in sorted(side_file(outcome.results, ".funnels").iterdir()):
        found[path.name] = path.read_text(encoding="utf-8")
    return found


def test_no_patient_id_reaches_the_report_its_page_or_its_tables(screened: Outcome) -> None:
    assert screened.report["rejected"]["count"] == 2  # the rejected rows are named, by line
    outputs = _outputs(screened)
    assert {"report.html", "protocols.csv", "criteria.csv", "table1.csv"} <= set(outputs)
    for name, text in outputs.items():
        assert ID_PREFIX not in text, name
    # ... while the results and the rejected rows do carry them, for the registry
    assert ID_PREFIX in screened.results.read_text(encoding="utf-8")
    assert ID_PREFIX in screened.rejected_file.read_text(encoding="utf-8")
    assert screened.report["problems"]["cells"] == 2  # reported by column, the ids in the file
    assert screened.problems_file is not None
    assert ID_PREFIX in screened.problems_file.read_text(encoding="utf-8")


def test_the_page_is_self_contained_and_holds_every_section(screened: Outcome) -> None:
    page = side_file(screened.results, ".report.html").read_text(encoding="utf-8")
    assert "<title>Eligo screening report</title>" in page
    assert "<h1>Screening report</h1>" in page
    # nothing fetched from elsewhere, nothing run (the funnels' url(#…) are their own markers)
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\((?!#)|src=", page)
    assert not re.search(r'href="(?!#)', page)
    report = screened.report
    assert f"{report['rows']:,} read, 2 rejected, {report['screened']:,} screened" in page
    assert "registry.csv:5" in page
    assert "registry.csv:9" in page
    assert "<p>Rejected because: duplicate id (2).</p>" in page
    for ruleset in report["rulesets"]:
        assert f'id="rs-{ruleset["id"]}"' in page
        # the same drawing as the .svg file, inline, its rejected box naming why
        assert funnel_svg(ruleset, report["rejected"]) in page
        assert ">• duplicate id (2)</text>" in funnel_svg(ruleset, report["rejected"])
    assert page.count("<svg") == len(report["rulesets"])
    assert "Table 1: the screened cohort" in page
    assert "Needs local clinical review" in page  # the shipped rule sets are drafts


def test_the_report_matches_its_typed_definition(screened: Outcome) -> None:
    TypeAdapter(ScreeningReport).validate_python(screened.report, strict=True)


def test_table_1_describes_the_screened_rows_only_in_canonical_values(
    screened: Outcome, cohort: Path
) -> None:
    table = screened.report["table1"]
    assert table["screened"] == screened.report["screened"] == 298
    rows = {r["feature"]: r for r in table["rows"]}
    assert list(rows)[:3] == ["age_years", "sex", "ssc_diagnosis"]
    # the oracle: the CSV itself, without the two rejected lines (one id twice), the two
    # spoilt cells missing (age 999, sex martian)
    with cohort.open(encoding="utf-8") as file:
        records = [r for i, r in enumerate(csv.DictReader(file), start=2) if i not in (12, 13)]
    ages = [float(a) for r in records if (a := r["age_years"]) and a != "999"]
    q1, median, q3 = statistics.quantiles(ages, n=4, method="inclusive")
    age = rows["age_years"]
    assert (age["known"], age["missing"]) == (len(ages), len(records) - len(ages))
    assert (age["q1"], age["median"], age["q3"]) == pytest.approx((q1, median, q3), abs=0.01)
    sexes = Counter(r["sex"] for r in records if r["sex"] not in ("", "martian"))
    assert {c["value"]: c["patients"] for c in rows["sex"]["categories"]} == {
        v: sexes.get(v, 0) for v in ("female", "male", "other", "unknown")
    }
    ssc = Counter(r["ssc_diagnosis"] for r in records if r["ssc_diagnosis"])
    assert rows["ssc_diagnosis"]["categories"] == [
        {"value": "yes", "patients": ssc["true"]},
        {"value": "no", "patients": ssc["false"]},
    ]


def test_table_1_reads_values_after_their_unit_and_codes(
    tmp_path: Path, shipped_rules: RuleBase
) -> None:
    """A creatinine column in µmol/L is described in the catalogue's mg/dL; a missing-value
    code is missing, not a value; a cell that does not read is missing too (its row stays in);
    a rejected row is not in it."""
    source = tmp_path / "registry.csv"
    source.write_text(
        "id,ssc_diagnosis,serum_creatinine[umol/L],age_years\n"
        "a,true,88.4,40\nb,true,176.8,50\nc,false,NA,60\nd,true,265.2,abc\ne,true,,30\n"
        ",true,353.6,70\n",
        encoding="utf-8",
    )
    outcome = screen(Request(source=str(source), out=tmp_path / "r.parquet"), shipped_rules)
    rows = {r["feature"]: r for r in outcome.report["table1"]["rows"]}
    creatinine = rows["serum_creatinine"]
    assert creatinine["unit"] == "mg/dL"
    assert outcome.report["rejected"]["count"] == 1  # the row without an id
    funnels = side_file(outcome.results, ".funnels")
    assert ">• no id (1)</text>" in (funnels / "hsct-ssc-astis.svg").read_text(encoding="utf-8")
    assert (creatinine["known"], creatinine["missing"]) == (3, 2)  # 1, 2 and 3 mg/dL
    assert (creatinine["q1"], creatinine["median"], creatinine["q3"]) == (1.5, 2.0, 2.5)
    assert (rows["age_years"]["known"], rows["age_years"]["missing"]) == (4, 1)  # d's abc
    assert rows["age_years"]["median"] == 45.0
    assert "table1:" not in " ".join(pq.read_schema(outcome.results).names)


@pytest.mark.parametrize(
    "values",
    [[3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 4.0, 2.0, 9.5], [0.25] * 3 + [7.75] * 4 + [100.0]],
)
def test_quartiles_from_counts_are_the_inclusive_quartiles(values: list[float]) -> None:
    expected = (
        statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    )
    assert quartiles(Counter(values)) == pytest.approx(tuple(expected))
    assert quartiles(Counter()) == (None, None, None)


def test_the_csv_tables_hold_the_reports_counts(screened: Outcome) -> None:
    folder = side_file(screened.results, ".tables")
    report = screened.report

    def read(name: str) -> list[dict[str, str]]:
        with (folder / name).open(encoding="utf-8-sig", newline="") as file:
            return list(csv.DictReader(file))

    protocols = read("protocols.csv")
    assert [p["Protocol id"] for p in protocols] == [r["id"] for r in report["rulesets"]]
    for row, ruleset in zip(protocols, report["rulesets"], strict=True):
        assert int(row["Eligible"]) == ruleset["counts"]["eligible"]
        assert int(row["Indeterminate"]) == ruleset["counts"]["indeterminate"]
        assert int(row["Screened"]) == report["screened"]
    criteria = read("criteria.csv")
    first = report["rulesets"][0]["criteria"][0]
    assert criteria[0]["Criterion"] == first["title"]
    assert int(criteria[0]["Not met"]) == first["not_met"]
    funnel = [f for f in read("funnels.csv") if f["Protocol id"] == report["rulesets"][0]["id"]]
    assert [f["Step"] for f in funnel[:4]] == ["read", "rejected", "kept_unknown", "screened"]
    assert [int(f["Patients"]) for f in funnel[:4]] == [300, 2, 2, report["screened"]]
    assert report["screened"] == 298
    assert funnel[-1]["Step"] == "indeterminate"
    ages = [r for r in read("table1.csv") if r["Feature id"] == "age_years"]
    assert float(ages[0]["Median"]) == report["table1"]["rows"][0]["median"]


def test_the_long_format_has_one_row_per_patient_and_rule_set(
    screened: Outcome, shipped_rules: RuleBase
) -> None:
    assert (
        screened.long
        == long_file(screened.results)
        == screened.results.with_name("results.long.csv")
    )
    with screened.long.open(encoding="utf-8", newline="") as file:
        long = list(csv.DictReader(file))
    with screened.results.open(encoding="utf-8", newline="") as file:
        wide = {r["id"]: r for r in csv.DictReader(file)}
    rulesets = {r.id: r for r in shipped_rules.rulesets.values()}
    assert len(long) == len(wide) * len(rulesets)
    assert list(long[0]) == [
        "id", "ruleset", "status", "first_reason_id", "first_reason", "missing", "to_confirm"
    ]  # fmt: skip
    for row in long:
        ruleset = rulesets[row["ruleset"]]
        patient = wide[row["id"]]
        assert row["status"] == patient[column_name(ruleset, STATUS)]
        assert row["first_reason_id"] == patient[column_name(ruleset, EXCLUDED_BY)]
        titles = {c.id: c.title for c in ruleset.deciding}
        assert row["first_reason"] == titles.get(row["first_reason_id"], "")
        for kind in (MISSING, TO_CONFIRM):
            prefix = column_name(ruleset, kind, "")
            flagged = [k.removeprefix(prefix) for k, v in patient.items() if k.startswith(prefix)]
            flagged = [f for f in flagged if patient[prefix + f] == "true"]
            assert row[kind] == ";".join(flagged)


def test_the_long_format_follows_parquet_results(tmp_path: Path, shipped_rules: RuleBase) -> None:
    source = tmp_path / "registry.csv"
    source.write_text("id,ssc_diagnosis,age_years\n007,true,40\n008,false,50\n", encoding="utf-8")
    request = Request(source=str(source), out=tmp_path / "r.parquet", long=True)
    outcome = screen(request, shipped_rules)
    assert outcome.long == tmp_path / "r.long.parquet"
    long = pq.read_table(outcome.long)
    assert long.num_rows == 2 * len(shipped_rules.rulesets)
    assert set(long.column("id").to_pylist()) == {"007", "008"}  # ids as written
    assert not (tmp_path / "r.long.csv").exists()
    plain = screen(Request(source=str(source), out=tmp_path / "p.parquet"), shipped_rules)
    bare = tmp_path / "bare.csv"
    bare.write_text("id,ecog\na,1\n", encoding="utf-8")  # no Table 1 feature
    none = screen(Request(source=str(bare), out=tmp_path / "n.parquet"), shipped_rules)
    assert none.report["table1"] == {"screened": 1, "rows": []}
    page = side_file(none.results, ".report.html").read_text(encoding="utf-8")
    assert "table1-title" not in page
    assert not (side_file(none.results, ".tables") / "table1.csv").exists()
    assert plain.long is None
    assert not (tmp_path / "p.long.parquet").exists()


def test_parquet_results_declare_the_columns_never_null(
    cohort: Path, tmp_path: Path, shipped_rules: RuleBase
) -> None:
    """Statuses and the missing and to-confirm flags are required Parquet columns (a reader
    may rely on it); a criterion, NULL when unknown, and the criterion that excluded first,
    NULL when none did, are not."""
    outcome = screen(Request(source=str(cohort), out=tmp_path / "r.parquet"), shipped_rules)
    table = pq.read_table(outcome.results)
    required = {f.name for f in table.schema if not f.nullable}
    for ruleset in shipped_rules.rulesets.values():
        flags = [
            n
            for n in table.column_names
            if n.startswith(
                (column_name(ruleset, MISSING, ""), column_name(ruleset, TO_CONFIRM, ""))
            )
        ]
        assert flags
        assert {column_name(ruleset, STATUS), *flags} <= required
        optional = [
            column_name(ruleset, EXCLUDED_BY),
            *(column_name(ruleset, c.id) for c in (*ruleset.deciding, *ruleset.cautions)),
        ]
        assert not required & set(optional)
        assert any(table.column(n).null_count for n in optional)  # NULLs where they belong
    assert table.num_rows > 0


def _with_other_parts(report: dict[str, Any]) -> dict[str, Any]:
    """The report with the keys other parts of the screening add (item 1's problems, item
    3's bounds and overlap), in the contract's shapes, and a hostile title."""
    report = copy.deepcopy(report)
    report["problems"] = {
        "cells": 7,
        "rows": 5,
        "by_column": [
            {
                "column": "LVEF<%>",
                "feature": "lvef_percent",
                "problem": "not a number: '61,5'",
                "cells": 4,
                "first": "registry.csv:3",
            }
        ],
    }
    for i, ruleset in enumerate(report["rulesets"]):
        ruleset["bounds"] = {
            "eligible": ruleset["counts"]["eligible"],
            "best_case": 1000 + i,
            "data_gaps_only": 20 + i,
            "confirmations_only": 3,
            "gaps_and_confirmations": 4,
            "unlock": [
                {"feature": "mpap_mmhg", "label": "Mean PAP", "kind": "missing", "patients": 31}
            ],
        }
    report["overlap"] = [
        {
            "therapy": "hsct",
            "indication": "ssc",
            "rulesets": ["hsct-ssc-astis", "hsct-ssc-scot"],
            "eligible": [{"rulesets": ["hsct-ssc-astis", "hsct-ssc-scot"], "patients": 12345}],
            "best_case": [{"rulesets": ["hsct-ssc-astis"], "patients": 678}],
        }
    ]
    report["rulesets"][0]["title"] = "<script>alert(1)</script> & co"
    return report


def test_problems_bounds_and_overlap_are_drawn_when_the_report_has_them(
    screened: Outcome,
) -> None:
    report = _with_other_parts(screened.report)
    page = report_html(report, {})
    assert "LVEF&lt;%&gt;" in page
    assert "not a number: &#x27;61,5&#x27;" in page
    assert "Cells read as unknown, by registry column" in page
    assert "1,000" in page
    assert "Best case" in page
    assert "Mean PAP" in page
    assert "Overlap between protocols" in page
    assert "12,345" in page
    assert "hsct-ssc-astis ∩ hsct-ssc-scot" in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    found = tables(report)
    assert found["problems_by_column"][1] == [
        ["LVEF<%>", "lvef_percent", "not a number: '61,5'", 4, "registry.csv:3"]
    ]
    assert found["protocols"][1][0][-4:] == [1000, 20, 3, 4]
    assert found["overlap"][1][0] == ["hsct", "ssc", "hsct-ssc-astis & hsct-ssc-scot", 12345, 0]
    assert found["unlock"][1][0][1:] == ["mpap_mmhg", "Mean PAP", "missing", 31]
    # the screening's own report has the overlap (the shipped rule sets hold several
    # protocols of one therapy for one indication); a report from before these parts has none
    assert "Overlap between protocols" in report_html(screened.report, {})
    older = {k: v for k, v in screened.report.items() if k not in ("overlap", "problems")}
    older["rulesets"] = [
        {k: v for k, v in r.items() if k != "bounds"} for r in screened.report["rulesets"]
    ]
    bare = report_html(older, {})
    assert "Overlap between protocols" not in bare
    assert "registry column" not in bare


def test_the_summary_goes_to_stdout_and_names_every_file(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    args = [str(cohort), "--out", str(out), "--rules-dir", str(SHIPPED_RULES)]
    result = CliRunner().invoke(screen_command, [*args, "--no-progress", "--long"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "rows read 300; rejected 2; screened 298"
    assert lines[1].startswith(f"  {cohort.name}:12: id: duplicate")
    assert "age_years (age_years): " in result.stdout
    assert f"first at {cohort.name}:5" in result.stdout  # the cell, by column, kept in
    report = json.loads(side_file(out, ".report.json").read_text(encoding="utf-8"))
    astis = next(r for r in report["rulesets"] if r["id"] == "hsct-ssc-astis")
    row = next(line for line in lines if line.startswith("hsct-ssc-astis "))
    assert row.split()[1:] == [f"{astis['counts'][s]:,}" for s in astis["counts"]]
    for name, path in [
        ("results:", out),
        ("long:", tmp_path / "r.long.parquet"),
        ("report:", side_file(out, ".report.html")),
        ("tables:", f"{side_file(out, '.tables')}/"),
        ("rejected:", side_file(out, ".rejected.csv")),
    ]:
        assert f"{name:9} {path}" in lines
        assert Path(str(path).rstrip("/")).exists()


def test_a_source_without_a_diagnosis_column_is_warned_about(tmp_path: Path) -> None:
    """A registry of SSc patients with no `sle_diagnosis` column: under the SLE rule sets no
    patient can be not_indicated, so every one is counted undecided there. The report names the
    unread diagnosis and its rule sets, the summary warns before the counts it distorts, and
    the HTML report says it at the top; a source that gives both diagnoses gets no warning."""
    source = tmp_path / "ssc-only.csv"
    source.write_text("id,ssc_diagnosis,age_years\nA,true,45\nB,true,52\n", encoding="utf-8")
    out = tmp_path / "r.parquet"
    args = [str(source), "--out", str(out), "--rules-dir", str(SHIPPED_RULES), "--no-progress"]
    result = CliRunner().invoke(screen_command, args)
    assert result.exit_code == 0, result.output
    report = json.loads(side_file(out, ".report.json").read_text(encoding="utf-8"))
    sle_sets = sorted(r["id"] for r in report["rulesets"] if r["indication"] == "sle")
    unread = report["indications_unread"]
    assert [(u["feature"], sorted(u["rulesets"])) for u in unread] == [("sle_diagnosis", sle_sets)]
    for ruleset in report["rulesets"]:
        if ruleset["id"] in sle_sets:  # the distortion the warning is about
            assert ruleset["counts"]["not_indicated"] == 0
    warning = next(line for line in result.stdout.splitlines() if line.startswith("warning: "))
    assert "no column gives sle_diagnosis" in warning
    assert result.stdout.index("warning: ") < result.stdout.index("rule set ")
    html = side_file(out, ".report.html").read_text(encoding="utf-8")
    assert "Diagnosis not in the source:" in html
    TypeAdapter(ScreeningReport).validate_json(json.dumps(report))

    both = tmp_path / "both.csv"
    both.write_text("id,ssc_diagnosis,sle_diagnosis\nA,true,false\n", encoding="utf-8")
    out = tmp_path / "both.parquet"
    result = CliRunner().invoke(
        screen_command,
        [str(both), "--out", str(out), "--rules-dir", str(SHIPPED_RULES), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "warning: " not in result.stdout
    report = json.loads(side_file(out, ".report.json").read_text(encoding="utf-8"))
    assert report["indications_unread"] == []
