"""`eligo mapping init`: a starter mapping from a registry's own columns (issue 20, item 2).
A made-up registry export with its own names and codings, the shipped catalogue, and the
mapping file read back by the loader `eligo screen --mapping` uses."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.batch.head import Limits
from app.batch.mapping import RawKind, load_mapping, plan
from app.batch.starter import SourceColumn, propose, read_columns, render, yaml_scalar
from app.engine.model import RuleBase
from tests.e2e.helpers import run_eligo

REGISTRY = """\
PATNR,Age,Gender,LVEF (%),CREA_umol,DLCO,mRSS,Smoker,SSc subtype,Pregnant,BMI,Centre
A1,45,F,60,80,55,25,N,dcSSc,no,22.1,Leiden
A2,52,M,n/a,110,48,18,Y,lcSSc,no,27.9,Paris
A3,61,F,55,,62,<1,y,dcSSc,NA,24,Leiden
"""


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.csv"
    path.write_text(REGISTRY)
    return path


def test_columns_are_proposed_by_name_and_values_with_why(
    registry: Path, shipped_rules: RuleBase
) -> None:
    starter = propose(read_columns(registry, Limits()), shipped_rules.features)
    assert starter.key == "PATNR"  # its values are all different, and not numbers
    by_column = {p.column.name: p for p in starter.proposals}
    assert {c: p.feature.id for c, p in by_column.items()} == {
        "Age": "age_years",
        "Gender": "sex",  # by its values: F and M are codes of sex's female and male
        "LVEF (%)": "lvef_percent",
        "CREA_umol": "serum_creatinine",  # "crea" abbreviates, "umol" says µmol/L
        "DLCO": "dlco_percent_predicted",
        "mRSS": "mrss",
        "Smoker": "current_smoker",
        "SSc subtype": "ssc_subtype",
        "Pregnant": "pregnant",
    }
    assert dict(by_column["Gender"].codes) == {"F": "female", "M": "male"}
    assert by_column["CREA_umol"].unit == "µmol/L"
    assert by_column["LVEF (%)"].unit is None  # the feature's own unit: nothing to convert
    # Abbreviations of one value each (their shared "cSSc" tried without), said in a note.
    assert dict(by_column["SSc subtype"].codes) == {
        "dcSSc": "diffuse_cutaneous",
        "lcSSc": "limited_cutaneous",
    }
    assert by_column["SSc subtype"].unread == ()
    assert "read as abbreviations" in by_column["SSc subtype"].notes[0]
    assert by_column["mRSS"].unread == ("<1",)  # a number's code: left to the analyst
    assert by_column["Smoker"].unread == ()  # N, Y, y are yes/no words
    assert "numbers 55–60" in by_column["LVEF (%)"].why  # n/a is a missing-value code
    assert [c.name for c in starter.unmatched] == ["BMI", "Centre"]


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("CREA_CLEA_ML_MIN", None),  # the canonical mL/min: no unit to declare
        ("CREA_CLEA_ML_S", "mL/s"),
        ("CREA_CLEA_ML", None),  # "ml" starts mL/min and mL/s alike: none proposed
    ],
)
def test_a_unit_is_proposed_only_where_the_names_words_single_it_out(
    name: str, unit: str | None, shipped_rules: RuleBase, tmp_path: Path
) -> None:
    """A clearance in mL/min must never be proposed as mL/s because both spell "ml" first
    (found screening eligo synth's registry codings: a value 60 times off)."""
    path = tmp_path / "clearance.csv"
    path.write_text(f"id,{name}\nA1,85\nA2,60\n")
    starter = propose(read_columns(path, Limits()), shipped_rules.features)
    [proposal] = [p for p in starter.proposals if p.column.name == name]
    assert proposal.feature.id == "creatinine_clearance_ml_min"
    assert proposal.unit == unit


def test_the_file_is_a_mapping_eligo_screen_takes_as_written(
    registry: Path, shipped_rules: RuleBase, tmp_path: Path
) -> None:
    features = shipped_rules.features
    text = render(propose(read_columns(registry, Limits()), features), "registry.csv", date.today())
    path = tmp_path / "starter.yaml"
    path.write_text(text)
    mapping = load_mapping(path, features)
    assert mapping.key == "PATNR"
    header = REGISTRY.splitlines()[0].split(",")
    planned = plan(dict.fromkeys(header, RawKind.TEXT), features, mapping)
    assert {c.feature.id for c in planned.columns} >= {"sex", "serum_creatinine", "mrss"}
    assert set(planned.ignored) == {"BMI", "Centre"}
    assert "sex: {column: Gender, values: {F: female, M: male}}  # its values are" in text
    assert "# mRSS: <1 will not read as mRSS: recode or check them" in text
    assert "# SSc subtype: read as abbreviations" in text
    assert "#   Centre: values Leiden, Paris" in text


def test_a_source_in_the_catalogues_own_names_maps_column_for_column(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    """A Parquet file named as FEATURES.md says (eligo synth's kind): every column found."""
    path = tmp_path / "cohort.parquet"
    table = pa.table(
        {"id": ["p1", "p2"], "lvef_percent": [60.0, 55.0], "ssc_diagnosis": [True, False]}
    )
    pq.write_table(table, path)
    starter = propose(read_columns(path, Limits()), shipped_rules.features)
    assert starter.key == "id"
    assert [(p.column.name, p.feature.id, p.why.split(";")[0]) for p in starter.proposals] == [
        ("lvef_percent", "lvef_percent", "named as the feature"),
        ("ssc_diagnosis", "ssc_diagnosis", "named as the feature"),
    ]
    assert starter.proposals[1].column.values == ("true", "false")


@pytest.mark.parametrize("name", ["yes", "Null", "a: b", "x, y", "#tag", " padded", 'say "hi"'])
def test_column_names_are_written_so_that_yaml_reads_them_back(
    name: str, shipped_rules: RuleBase, tmp_path: Path
) -> None:
    mrss = SourceColumn(name, ("12",))
    starter = propose([SourceColumn("id", ("p1",)), mrss], shipped_rules.features)
    text = render(starter, "s.csv", date.today())
    assert f"#   {name}: values 12" in text  # no feature by that name: listed, not mapped
    path = tmp_path / "m.yaml"
    path.write_text(f"columns:\n  mrss: {{column: {yaml_scalar(name)}}}\n")
    assert load_mapping(path, shipped_rules.features).wanted["mrss"].column == name


def test_the_command_writes_a_new_file_only_and_names_a_bad_source(
    registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "starter.yaml"
    first = run_eligo("mapping", "init", str(registry), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert out.read_text().startswith("# A starter mapping for registry.csv")
    again = run_eligo("mapping", "init", str(registry), "--out", str(out))
    assert again.returncode == 2
    assert f"{out}: exists" in again.stderr
    printed = run_eligo("mapping", "init", str(registry))
    assert printed.stdout == out.read_text()
    odd = tmp_path / "registry.xlsx"
    odd.write_bytes(b"PK")
    refused = run_eligo("mapping", "init", str(odd))
    assert refused.returncode == 2
    assert "unsupported format '.xlsx'" in refused.stderr
    assert "Traceback" not in refused.stderr
