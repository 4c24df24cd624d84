"""`eligo mapping init`: a starter mapping from a registry's own columns (issue 20, item 2).
A made-up registry export with its own names and codings, the shipped catalogue, and the
mapping file read back by the loader `eligo screen --mapping` uses."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.batch import codings
from app.batch.head import Limits
from app.batch.mapping import RawKind, load_mapping, plan
from app.batch.starter import SourceColumn, propose, read_columns, render, yaml_scalar
from app.engine.model import Feature, RuleBase
from benchmarks.starter_recall import compare, measure
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


# A registry's own codings (issue 20, item 2): -99 and U for unknown, decimal commas in most
# number columns (a point in CRP's), SPSS yes/no, choice abbreviations, a unit-like name
# (UPCR_G_G: gauss/gauss in UCUM), and a 999 that is a plausible prednisone dose.
CODED = """\
id,AGE,SEX,DISEASE_DURATION,PROT_24H,CRP_mgL,PREDNISONE,ILD,SMOKER,SSC_SUBSET,UPCR_G_G
P1,45,F,"8,5","0,1",1.5,10,1,Y,dcSSc,"0,06"
P2,-99,M,-99,"0,08",2.4,999,2,N,lcSSc,"0,2"
P3,61,U,"3,9",NA,-99,5,9,U,U,-99
P4,38,F,"12,25","1,5",12.0,0,2,N,ssSSc,"1,1"
"""

# What the registry's data dictionary says (as eligo synth's mapping would write it).
CODED_TRUTH = """\
id: id
missing: [U, "-99"]
columns:
  age_years: AGE
  sex: {column: SEX, values: {F: female, M: male}}
  disease_duration_years: {column: DISEASE_DURATION, decimal: ","}
  proteinuria_g_24h: {column: PROT_24H, decimal: ","}
  crp_mg_l: CRP_mgL
  prednisone_mg_day: PREDNISONE
  ild_present: {column: ILD, values: {"1": true, "2": false, "9": null}}
  current_smoker: SMOKER
  ssc_subtype: {column: SSC_SUBSET, values: {dcSSc: diffuse_cutaneous, lcSSc: limited_cutaneous, ssSSc: sine_scleroderma}}
  upcr_g_g: {column: UPCR_G_G, decimal: ","}
"""  # noqa: E501


def test_a_registrys_codings_are_proposed_each_with_a_comment(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    path = tmp_path / "coded.csv"
    path.write_text(CODED)
    starter = propose(read_columns(path, Limits()), shipped_rules.features)
    by_column = {p.column.name: p for p in starter.proposals}
    assert len(by_column) == 10
    assert dict(starter.missing.codes) == {
        "-99": ("AGE", "DISEASE_DURATION", "CRP_mgL", "UPCR_G_G"),  # outside each feature's range
        "U": ("SEX", "SMOKER", "SSC_SUBSET"),  # none of sex's values (its `unknown` is one)
    }
    assert "999" not in starter.missing.codes  # 999 mg prednisone is within its range
    assert "999 is a plausible value in PREDNISONE" in starter.missing.doubtful["999"]
    assert starter.decimal == ","  # three number columns of four with decimals write a comma
    assert by_column["CRP_mgL"].decimal == "."
    assert by_column["DISEASE_DURATION"].decimal is None  # the registry's, said once at the top
    assert dict(by_column["ILD"].codes) == {"1": True, "2": False, "9": None}
    assert by_column["UPCR_G_G"].unit is None  # G/G: the feature's own g/g in capitals
    assert all(p.unread == () for p in by_column.values())
    text = render(starter, "coded.csv", date.today())
    assert 'missing: ["-99", U]  # the registry\'s codes for unknown, seen in:' in text
    assert "#   -99: 4 column(s): AGE, DISEASE_DURATION, CRP_mgL, UPCR_G_G" in text
    assert "# Not declared missing: 999 is a plausible value in PREDNISONE" in text
    assert '\ndecimal: ","  # most number columns' in text
    assert 'crp_mg_l: {column: CRP_mgL, decimal: "."}' in text
    assert 'ild_present: {column: ILD, values: {"1": true, "2": false, "9": null}}' in text
    assert "# ILD: 1 = yes, 2 = no, 9 = unknown is SPSS's convention" in text
    assert (
        "# SEX: U is declared missing (no value, as `missing:` says), not read as the choice "
        "unknown" in text
    )
    assert "# SSC_SUBSET: read as abbreviations" in text


def test_the_starter_reads_a_coded_registry_as_its_dictionary_does(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    """Screening's own validation (DuckDB) of every row gives the same values with the
    starter's mapping as with the dictionary's."""
    features = shipped_rules.features
    source, truth, starter = tmp_path / "coded.csv", tmp_path / "t.yaml", tmp_path / "s.yaml"
    source.write_text(CODED)
    truth.write_text(CODED_TRUTH)
    proposed = propose(read_columns(source, Limits()), features)
    starter.write_text(render(proposed, source.name, date.today()))
    found = compare(source, truth, starter, features)
    assert found.same_column == found.proposed == frozenset(load_mapping(truth, features).wanted)
    assert dict(found.differ) == {}


# Differences the starter leaves to the analyst, listed in its file as values that will not
# read: mRSS's number code "<1" (0) and sex's X (unknown), which abbreviates no value.
# Codes the starter leaves unread for the analyst (each named in a "will not read as" line):
# the diagnosis column's combined or uncertain codes ("SSC (SLE NK)") included.
LEFT_TO_THE_ANALYST = {
    "mrss": "<1",
    "sex": "X",
    "ssc_diagnosis": "NK)",  # "SSC (SLE NK)", "NOT SSC (SLE NK)", …: which one the sample has
    "sle_diagnosis": "NK)",
}


def test_on_a_synthetic_registry_the_starter_reads_what_its_true_mapping_reads(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    """eligo synth's registry codings: before issue 20's codings the starter proposed 28 of
    the true mapping's 90 features (21 reading the same values; 102 features since the third
    pass over the December review); every proposal is the true column, and reads each row's
    value as the true mapping does but for the codes above."""
    found = measure(400, 3, tmp_path, shipped_rules.features)
    assert found.truth == len(shipped_rules.features) == 102
    assert len(found.proposed) >= 60
    assert found.same_column == found.proposed  # never another column than the true one
    assert set(found.differ) <= set(LEFT_TO_THE_ANALYST)
    text = (tmp_path / "starter.yaml").read_text()
    for feature, code in LEFT_TO_THE_ANALYST.items():
        if feature in found.differ:
            unread = re.compile(rf": [^\n]*{re.escape(code)}[^\n]* will not read as")
            assert unread.search(text), feature
    # The one diagnosis column gives both indications (else no patient is not_indicated).
    assert "  ssc_diagnosis: {column: DX, values: {" in text
    assert "  sle_diagnosis: {column: DX, values: {" in text


@pytest.mark.parametrize(
    ("values", "mark", "doubt"),
    [
        (["8,5", "12", "-99"], ",", ""),
        (["8.5", "12"], ".", ""),
        (["12", "7"], None, ""),
        (["8,5", "1.5"], None, "both decimal commas (8,5) and points (1.5)"),
        (["1,500", "2,250"], None, "may be thousands"),
    ],
)
def test_a_decimal_mark_is_proposed_only_where_the_values_leave_one(
    values: list[str], mark: str | None, doubt: str
) -> None:
    found, why = codings.decimal(values)
    assert found == mark
    assert doubt in why
    assert bool(why) == bool(doubt)


def test_a_code_is_mapped_by_abbreviation_only_when_exactly_one_value_fits() -> None:
    allowed = ["diffuse_cutaneous", "limited_cutaneous", "sine_scleroderma"]
    found, several = codings.abbreviated(["dcSSc", "lcSSc", "ssSSc"], allowed)
    assert found == dict(zip(["dcSSc", "lcSSc", "ssSSc"], allowed, strict=True))
    assert not codings.abbreviates("ss", "diffuse_cutaneous")  # each word gives its first letter
    found, several = codings.abbreviated(["lc"], ["left_chamber", "lower_cusp", "right"])
    assert found == {}
    assert several == ["lc (left_chamber or lower_cusp)"]


@pytest.mark.parametrize(
    ("values", "codes"),
    [
        (["1", "2", "9"], {"1": True, "2": False, "9": None}),
        (["2", "1"], {"1": True, "2": False}),
        (["1", "9"], None),  # no 2: nothing says 1 is yes
        (["0", "1", "2"], None),  # 0/1 with a 2: not SPSS's coding
    ],
)
def test_spss_yes_no_needs_both_1_and_2(values: list[str], codes: dict[str, object]) -> None:
    assert codings.spss_yes_no(values) == codes


def test_a_name_that_fits_several_features_says_so_or_is_left_to_the_analyst(
    shipped_rules: RuleBase,
) -> None:
    """ILD fits five ild_ features by name: the closest is proposed, the others named in its
    comment; two features it fits exactly alike get neither, and both are listed."""
    features = shipped_rules.features
    ild = SourceColumn("ILD", ("1", "2", "9"))
    starter = propose([SourceColumn("id", ("p1", "p2")), ild], features)
    [proposal] = starter.proposals
    assert proposal.feature.id == "ild_present"
    others = (
        "ild_progressive_12m, ild_pft_decline_12m, ild_progression_on_ct, ild_onset_or_worsening_6m"
    )
    assert f"fits {others} as well: check" in proposal.why
    twins = {
        name: Feature(features["mrss"].spec.model_copy(update={"id": name}))
        for name in ("skin_score_ab", "skin_score_cd")
    }
    skin = SourceColumn("SKIN_SCORE", ("12", "30"))
    starter = propose([SourceColumn("id", ("p1", "p2")), skin], twins)
    assert starter.proposals == ()
    assert dict(starter.tied) == {"SKIN_SCORE": ("skin_score_ab", "skin_score_cd")}
    text = render(starter, "s.csv", date.today())
    assert "fits skin_score_ab and skin_score_cd alike: yours to decide" in text


def test_one_column_of_disease_codes_gives_both_diagnoses(shipped_rules: RuleBase) -> None:
    """`DX: SSC, SLE, SSC+SLE, OTHER`: both indication features from it, the plain codes read
    (SSC+SLE as both), OTHER left to the analyst; a source that has a yes/no column for one
    diagnosis, or a column naming one disease only, gets no such proposal."""
    features = shipped_rules.features
    key = SourceColumn("id", ("1", "2", "3", "4"), unique=True)
    dx = SourceColumn("DX", ("SSC", "SLE", "ssc + sle", "OTHER"))
    found = {p.feature.id: p for p in propose([key, dx], features).proposals}
    assert dict(found["ssc_diagnosis"].codes) == {"SSC": True, "SLE": False, "ssc + sle": True}
    assert dict(found["sle_diagnosis"].codes) == {"SSC": False, "SLE": True, "ssc + sle": True}
    assert found["ssc_diagnosis"].unread == found["sle_diagnosis"].unread == ("OTHER",)
    ssc_only = SourceColumn("DX", ("SSC", "dcSSc"))
    assert not {p.feature.id for p in propose([key, ssc_only], features).proposals} & {
        "ssc_diagnosis",
        "sle_diagnosis",
    }
    subsets = SourceColumn("DIAG", ("dcSSc", "lcSSc", "SLE"))  # SSc by its subsets' codes
    found = {p.feature.id: p for p in propose([key, subsets], features).proposals}
    assert dict(found["ssc_diagnosis"].codes) == {"dcSSc": True, "lcSSc": True, "SLE": False}
    named = SourceColumn("ssc_diagnosis", ("yes", "no"))
    proposed = {p.feature.id: p.column.name for p in propose([key, named, dx], features).proposals}
    assert proposed.get("ssc_diagnosis") == "ssc_diagnosis"
    assert "sle_diagnosis" not in proposed
