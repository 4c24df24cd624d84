"""Cohort files for `eligo rules diff --cohort`: typed by the catalogue, errors at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.batch import cohort
from app.batch.cohort import CohortError, read_cohort
from app.engine.model import RuleBase


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_csv_cells_are_typed_by_the_catalogue(golden_rules: RuleBase, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "c.csv",
        "id,has_disease,score,subtype,serum_creatinine[umol/L],organ_a\n"
        "p1,yes,1,diffuse,150,1\n"
        "\n"
        "p2,FALSE,,limited,,0\n",
    )
    p1, p2 = read_cohort(path, golden_rules.features)
    assert p1.features == {
        "has_disease": True,
        "score": 1.0,
        "subtype": "diffuse",
        "serum_creatinine": {"value": 150.0, "unit": "umol/L"},
        "organ_a": True,
    }
    assert (p2.ident, p2.where, p2.features) == (
        "p2",
        f"{path}:4",
        {"has_disease": False, "subtype": "limited", "organ_a": False},
    )


def test_jsonl_rows_are_the_api_input(golden_rules: RuleBase, tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "c.jsonl",
        '{"id": "a", "features": {"lvef_percent": 50}}\n\n{"id": 7, "features": {}}\n',
    )
    a, seven = read_cohort(path, golden_rules.features)
    assert (a.features, seven.ident, seven.where) == ({"lvef_percent": 50}, "7", f"{path}:3")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.csv", "", "c.csv:1: empty file"),
        ("c.csv", "id,lvef\n", "c.csv:1: column 2: unknown feature 'lvef'"),
        ("c.csv", "id,lvef percent\n", "c.csv:1: column 2 'lvef percent' is not a feature"),
        ("c.csv", "score\n1\n", "c.csv:1: no `id` column"),
        ("c.csv", "id,score,score\n", "c.csv:1: duplicate column(s) score"),
        ("c.csv", "id,score\np1,1,2\n", "c.csv:2: 3 cells, the header has 2"),
        ("c.csv", "id,has_disease\np1,maybe\n", "c.csv:2: has_disease: 'maybe' is not yes/no"),
        ("c.csv", "id,score\np1,high\n", "c.csv:2: score: 'high' is not a number"),
        ("c.csv", "id,score\np1,61,5\n", "c.csv:2: 3 cells, the header has 2"),
        ("c.csv", 'id,score\np1,"61,5"\n', "c.csv:2: score: '61,5' has a decimal comma"),
        ("c.csv", "id,score\np1,1_000\n", "c.csv:2: score: '1_000' is not a number"),
        ("c.csv", "id,score\np1,inf\n", "c.csv:2: score: 'inf' is not a number"),
        ("c.csv", "id,score\n,1\n", "c.csv:2: empty id"),
        ("c.csv", "id,score\np1,1\np1,2\n", "c.csv:3: duplicate id (first at"),
        ("c.jsonl", '{"id": "a", "features": {}}\n{"id": "b", ', "c.jsonl:2:13: malformed JSON"),
        ("c.jsonl", '{"id": "a", "features": {"x": NaN}}\n', "c.jsonl:1: NaN"),
        ("c.jsonl", '{"id": "a"}\n', 'c.jsonl:1: expected {"id": ..., "features": {...}}'),
        ("c.jsonl", '{"id": true, "features": {}}\n', "c.jsonl:1: id must be"),
        ("c.jsonl", '{"id": 1, "features": {}, "x": 1}\n', "c.jsonl:1: unexpected key(s) ['x']"),
        (
            "c.jsonl",
            '{"id": 1, "features": ' + "[" * 3000 + "]" * 3000 + "}\n",
            "c.jsonl:1: arrays and objects nest deeper than 32",
        ),
        ("c.jsonl", '{"id": "a\\u0000", "features": {}}\n', "c.jsonl:1: id: contains U+0000"),
        ("c.parquet", "", "c.parquet: unsupported cohort format"),
        ("c.csv", b"id,score\n\xff\xfe,1\n", "c.csv: not UTF-8 text"),
    ],
)
def test_bad_cohort_files_name_the_line(
    golden_rules: RuleBase, tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(CohortError) as error:
        read_cohort(path, golden_rules.features)
    assert str(error.value).startswith(f"{tmp_path}/")
    assert message in str(error.value)


def test_a_missing_file_is_an_error(golden_rules: RuleBase, tmp_path: Path) -> None:
    with pytest.raises(CohortError, match="cannot read"):
        read_cohort(tmp_path / "none.csv", golden_rules.features)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_row_limit_counts_patients_not_the_header(
    golden_rules: RuleBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setattr(cohort, "MAX_ROWS", 3)
    rows = [f"p{i}" for i in range(4)]
    if suffix == ".csv":
        lines = ["id,age_years", *(f"{r},40" for r in rows)]
    else:
        lines = [f'{{"id": "{r}", "features": {{"age_years": 40}}}}' for r in rows]
    path = tmp_path / f"c{suffix}"
    path.write_text("\n".join(lines[:-1]) + "\n")
    assert [p.ident for p in read_cohort(path, golden_rules.features)] == rows[:3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CohortError, match="more than 3 rows"):
        read_cohort(path, golden_rules.features)


def test_cells_read_by_the_one_grammar_as_eligo_screen_reads_them(
    golden_rules: RuleBase, tmp_path: Path
) -> None:
    """Missing-value codes are unknown and y/n are booleans, as in `eligo screen` (issue 20:
    `rules diff --cohort` read booleans differently)."""
    path = _write(tmp_path, "c.csv", "id,has_disease,score\np1,Y,NA\np2,n,.\np3,,n/a\n")
    p1, p2, p3 = read_cohort(path, golden_rules.features)
    assert (p1.features, p2.features, p3.features) == (
        {"has_disease": True},
        {"has_disease": False},
        {},
    )
