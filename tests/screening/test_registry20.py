"""Issue 20's registry as an analyst made it: 20 patients with the registry's own column names
and codings (a diagnosis column feeding two features, SPSS-style 1/2 booleans, `n/a`, `U` and
`-99` for unknown, decimal commas), one truly bad cell (LVEF `abc`) and one id given twice.

No patient is lost for a bad cell: the LVEF is unknown for that patient, who is screened, and
the cell is named by registry column, feature and line; only the id given twice is rejected
(both its rows: the registry must say which is right). The funnel starts at the rows read.
`eligo screen --strict` rejects the bad cell's row as well, as before issue 20.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from app.batch.mapping import load_mapping
from app.batch.runner import Request, screen, side_file
from app.cli.screen import screen_command
from app.engine.model import RuleBase
from app.engine.result_columns import STATUS, column_name
from tests.conftest import SHIPPED_RULES

pytestmark = pytest.mark.one_pass

FIXTURE = Path(__file__).parent / "fixtures" / "registry20"
DUPLICATE = "duplicate (another row has the same id)"


def _lines(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_20_patient_registry_loses_no_patient_for_a_bad_cell(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    shutil.copy(FIXTURE / "registry.csv", tmp_path / "registry.csv")
    mapping = load_mapping(FIXTURE / "mapping.yaml", shipped_rules.features)
    out = tmp_path / "results.parquet"
    outcome = screen(Request(str(tmp_path / "registry.csv"), out, mapping=mapping), shipped_rules)
    report = outcome.report
    assert (report["rows"], report["screened"], report["rejected"]["count"]) == (20, 18, 2)
    assert report["rejected"]["by_column"] == [
        {"column": "PAT_ID", "feature": "", "problem": DUPLICATE, "cells": 2,
         "first": "registry.csv:20"},
    ]  # fmt: skip
    assert [(r.where, r.problems) for r in outcome.rejected] == [
        ("registry.csv:20", f"PAT_ID: {DUPLICATE}"),
        ("registry.csv:21", f"PAT_ID: {DUPLICATE}"),
    ]
    # The one bad cell, by registry column and feature; every other code read as declared.
    assert report["problems"] == {
        "cells": 1,
        "rows": 1,
        "by_column": [
            {"column": "LVEF", "feature": "lvef_percent", "problem": "not a number",
             "cells": 1, "first": "registry.csv:8"},
        ],
    }  # fmt: skip
    assert _lines(side_file(out, ".problems.csv")) == [
        {"row": "7", "where": "registry.csv:8", "id": "R007", "column": "LVEF",
         "feature": "lvef_percent", "value": "abc", "problem": "not a number"},
    ]  # fmt: skip
    for entry in report["rulesets"]:
        funnel = entry["funnel"]
        assert (funnel["read"], funnel["rejected"], funnel["kept_unknown"]) == (20, 2, 1)
        assert funnel["screened"] == 18
        assert sum(entry["counts"].values()) == 18
    # R007 is screened, its LVEF unknown: never eligible for want of it.
    rows = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    assert set(rows) == {f"R{i:03d}" for i in range(1, 19)}
    astis = shipped_rules.rulesets["hsct-ssc-astis"]
    assert rows["R007"][column_name(astis, "lvef-below-45")] is None
    assert rows["R007"][column_name(astis, STATUS)] != "eligible"
    # The diagnosis column fed both features: the SLE patients are not indicated for SSc.
    assert rows["R006"][column_name(astis, STATUS)] == "not_indicated"
    text = json.dumps(report)
    assert not any(f"R{i:03d}" in text for i in range(1, 20))  # counts only, no id
    svg = (side_file(out, ".funnels") / "hsct-ssc-astis.svg").read_text(encoding="utf-8")
    assert "Rows read: 20" in svg
    assert "Rows rejected: 2" in svg
    assert ">• duplicate id (2)</text>" in svg  # why, in the rejected box (issue 20)
    assert "a bad cell in" not in svg  # kept in, not a reason to reject
    assert "1 row with a bad cell kept in, that value unknown" in svg
    page = side_file(out, ".report.html").read_text(encoding="utf-8")
    assert "<p>Rejected because: duplicate id (2).</p>" in page
    assert "<p>1 cell in 1 row could not be read and was taken as unknown" in page


def test_strict_rejects_the_bad_cells_row_as_before(tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "registry.csv", tmp_path / "registry.csv")
    out = tmp_path / "results.csv"
    args = [str(tmp_path / "registry.csv"), "--out", str(out), "--mapping"]
    args += [str(FIXTURE / "mapping.yaml"), "--rules-dir", str(SHIPPED_RULES), "--strict"]
    result = CliRunner().invoke(screen_command, args)
    assert result.exit_code == 0, result.output
    assert "rows read 20; rejected 3; screened 17" in result.output
    assert "registry.csv:8: LVEF (lvef_percent): 'abc' is not a number" in result.output
    rejected = _lines(side_file(out, ".rejected.csv"))
    assert [(r["where"], r["id"]) for r in rejected] == [
        ("registry.csv:8", "R007"),
        ("registry.csv:20", "R019"),
        ("registry.csv:21", "R019"),
    ]
    assert _lines(side_file(out, ".problems.csv")) == []
    report = json.loads(side_file(out, ".report.json").read_text(encoding="utf-8"))
    assert report["problems"]["cells"] == 0
    page = side_file(out, ".report.html").read_text(encoding="utf-8")
    assert "<p>Rejected because: duplicate id (2); a bad cell in LVEF (1).</p>" in page
    assert "were taken as unknown" not in page  # strict: no cell read as unknown, nothing said
    funnel = report["rulesets"][0]["funnel"]
    assert (funnel["read"], funnel["rejected"], funnel["screened"]) == (20, 3, 17)
    # The rejected box names both reasons: the id given twice, and (strict) the bad cell.
    svg = (side_file(out, ".funnels") / "hsct-ssc-astis.svg").read_text(encoding="utf-8")
    assert ">• duplicate id (2)</text>" in svg
    assert ">• a bad cell in LVEF (1)</text>" in svg


def test_eligo_screen_prints_the_cells_read_as_unknown_by_registry_column(tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "registry.csv", tmp_path / "registry.csv")
    out = tmp_path / "results.parquet"
    args = [str(tmp_path / "registry.csv"), "--out", str(out), "--mapping"]
    args += [str(FIXTURE / "mapping.yaml"), "--rules-dir", str(SHIPPED_RULES)]
    result = CliRunner().invoke(screen_command, args)
    assert result.exit_code == 0, result.output
    assert "rows read 20; rejected 2; screened 18" in result.output
    assert "1 cell in 1 row read as unknown" in result.output
    assert "  LVEF (lvef_percent): not a number: 1 cell, first at registry.csv:8" in result.output
    assert "R007" not in result.output  # counts and places, no id
