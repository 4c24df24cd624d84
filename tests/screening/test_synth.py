"""The synthetic registry cohort (`eligo synth`): deterministic, typed by the catalogue, every
value valid input that no catalogue derivation corrects, plausible missingness and
correlations, work-ups complete enough to decide (confirmations answered), and screening it
meets every status."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from numpy.typing import NDArray

from app.batch.cohort import read_cohort
from app.batch.runner import Request, screen
from app.batch.synth import BLOCK, MODELLED, check_catalogue, synthesize, write_parquet
from app.cli import synth as synth_cli
from app.engine.derive import corrections, derive
from app.engine.evaluate import Status
from app.engine.inputs import normalise
from app.engine.model import Feature, RuleBase
from app.engine.run import evaluate_all
from app.engine.schema import FeatureType
from tests.conftest import SHIPPED_RULES

# Independent of ELIGO_TEST_DATABASE: scripts/test.sh runs these in the SQLite pass only.
pytestmark = pytest.mark.one_pass

SAMPLE = 2_000  # patients evaluated by the Python engine
HSCT_SSC = (
    "hsct-ssc-assist",
    "hsct-ssc-astis",
    "hsct-ssc-ebmt-2025",
    "hsct-ssc-scot",
    "hsct-ssc-upside",
)


@pytest.fixture(scope="module")
def features(shipped_rules: RuleBase) -> dict[str, Feature]:
    return shipped_rules.features


@pytest.fixture(scope="module")
def cohort(features: dict[str, Feature]) -> pa.Table:
    return synthesize(30_000, features, seed=7)


@pytest.fixture(scope="module")
def sample(cohort: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = cohort.slice(0, SAMPLE).to_pylist()
    return rows


def _known(cohort: pa.Table, fid: str) -> NDArray[np.bool_]:
    return np.asarray(cohort[fid].is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _flag(cohort: pa.Table, fid: str) -> NDArray[np.bool_]:
    """True where the boolean is known and true."""
    return np.asarray(cohort[fid].fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _numbers(cohort: pa.Table, fid: str) -> NDArray[np.float64]:
    return np.asarray(cohort[fid].to_numpy(zero_copy_only=False), dtype=np.float64)  # NaN: null


def _labels(cohort: pa.Table, fid: str) -> NDArray[np.object_]:
    return np.asarray(cohort[fid].to_pylist(), dtype=object)


def test_the_same_seed_gives_the_same_table(features: dict[str, Feature]) -> None:
    first = synthesize(3_000, features, seed=5)
    assert first.equals(synthesize(3_000, features, seed=5))
    assert not first.equals(synthesize(3_000, features, seed=6))


def test_a_patient_depends_only_on_the_seed_and_its_position(
    features: dict[str, Feature], tmp_path: Path
) -> None:
    """A small cohort is the start of a large one, and a streamed write in any chunk size
    holds exactly the same rows."""
    large = synthesize(BLOCK + 500, features, seed=3)
    assert large.slice(0, 1_000).equals(synthesize(1_000, features, seed=3))
    path = tmp_path / "c.parquet"
    write_parquet(BLOCK + 500, features, path, seed=3, chunk=1_000)
    assert pq.read_table(path).equals(large)


def test_columns_and_types_follow_the_catalogue(
    cohort: pa.Table, features: dict[str, Feature]
) -> None:
    assert set(features) == MODELLED, "every catalogue feature has a model"
    assert cohort.column_names == ["id", *features]
    ids = cohort["id"].to_pylist()
    assert ids[:2] == ["P0000001", "P0000002"]
    assert len(set(ids)) == len(ids)
    expected = {FeatureType.NUMBER: pa.float64(), FeatureType.BOOLEAN: pa.bool_()}
    for fid, feature in features.items():
        kind = cohort.schema.field(fid).type
        if feature.type is FeatureType.ENUM:
            assert pa.types.is_dictionary(kind), fid
            assert kind.value_type == pa.string(), fid
        else:
            assert kind == expected[feature.type], fid


def test_every_value_is_within_its_range(cohort: pa.Table, features: dict[str, Feature]) -> None:
    for fid, feature in features.items():
        if feature.type is FeatureType.NUMBER and feature.spec.range is not None:
            bounds = pc.min_max(cohort[fid])
            low, high = feature.spec.range
            assert low <= bounds["min"].as_py() <= bounds["max"].as_py() <= high, fid
        if feature.type is FeatureType.ENUM:
            seen = set(cohort[fid].drop_null().to_pylist())
            assert seen <= set(feature.spec.values or ()), fid


def test_a_feature_without_a_model_gets_a_plain_marginal(features: dict[str, Feature]) -> None:
    """A catalogue may grow: a new feature gets a column without changing any other."""
    extra = Feature(features["crp_mg_l"].spec.model_copy(update={"id": "new_marker"}))
    grown = synthesize(2_000, {**features, "new_marker": extra}, seed=1)
    assert grown.drop_columns(["new_marker"]).equals(synthesize(2_000, features, seed=1))
    values = _numbers(grown, "new_marker")
    assert 0.2 < np.isnan(values).mean() < 0.4
    assert 0 <= np.nanmin(values) <= np.nanmax(values) <= 500


def _changed(features: dict[str, Feature], fid: str, **update: Any) -> dict[str, Feature]:
    """The catalogue with one feature's definition changed (as a local review might)."""
    return {**features, fid: Feature(features[fid].spec.model_copy(update=update))}


def test_units_and_whole_numbers_are_read_from_the_catalogue(
    features: dict[str, Feature],
) -> None:
    """A catalogue that keeps creatinine in umol/L and haemoglobin in g/L gets the same
    patients in those units (converted by the engine's UCUM converter), and a feature the
    catalogue makes a whole number gets whole numbers: every value is one `normalise` takes
    under that catalogue, which it would refuse had synth kept its own copy of the unit."""
    changed = _changed(features, "serum_creatinine", unit="umol/L", range=(8.0, 1800.0))
    changed = _changed(changed, "hemoglobin_g_dl", unit="g/L", range=(20.0, 250.0))
    changed = _changed(changed, "crp_mg_l", integer="exact")
    plain, converted = synthesize(3_000, features, seed=2), synthesize(3_000, changed, seed=2)
    # The same patients, rounded in the catalogue's unit rather than in the model's.
    for fid, scale, half_step in (
        ("serum_creatinine", 88.4017, 0.005),
        ("hemoglobin_g_dl", 10, 0.05),
    ):
        before, after = _numbers(plain, fid), _numbers(converted, fid)
        assert np.array_equal(np.isnan(before), np.isnan(after)), fid
        assert np.nanmax(np.abs(after / scale - before)) <= 1.2 * half_step, fid
    crp = _numbers(converted, "crp_mg_l")
    assert np.array_equal(crp[~np.isnan(crp)], np.round(crp[~np.isnan(crp)]))
    assert not np.array_equal(crp, _numbers(plain, "crp_mg_l"), equal_nan=True)
    unchanged = [
        f for f in features if f not in ("serum_creatinine", "hemoglobin_g_dl", "crp_mg_l")
    ]
    assert converted.select(unchanged).equals(plain.select(unchanged))
    for row in converted.slice(0, 500).to_pylist():
        normalise({k: v for k, v in row.items() if k != "id"}, changed)  # raises if refused


def test_enum_values_are_read_from_the_catalogue(features: dict[str, Feature]) -> None:
    """The column holds the catalogue's values in its order, a new value included; each
    patient keeps the value the model drew."""
    reordered = ["unknown", "other", "male", "female", "not_stated"]
    changed = _changed(features, "sex", values=reordered)
    plain, written = synthesize(2_000, features, seed=8), synthesize(2_000, changed, seed=8)
    assert written.schema.field("sex").type == plain.schema.field("sex").type
    assert written["sex"].combine_chunks().dictionary.to_pylist() == reordered
    assert written["sex"].to_pylist() == plain["sex"].to_pylist()


@pytest.mark.parametrize(
    ("fid", "update", "message"),
    [
        # No conversion from mg/dL to mmHg: creatinine would be written under a wrong unit.
        ("serum_creatinine", {"unit": "mm[Hg]"}, r"'serum_creatinine'.*'mg/dL'.*'mm\[Hg\]'"),
        # A value the model draws that the catalogue renamed: no value to write it as.
        (
            "ssc_subtype",
            {"values": ["diffuse_cutaneous", "limited_cutaneous", "ssc_sine_scleroderma"]},
            r"'ssc_subtype'.*no \['sine_scleroderma'\]",
        ),
        ("sex", {"type": FeatureType.BOOLEAN, "values": None}, r"'sex'.*enum.*boolean"),
    ],
)
def test_a_catalogue_the_model_cannot_write_is_refused(
    features: dict[str, Feature], fid: str, update: dict[str, Any], message: str
) -> None:
    changed = _changed(features, fid, **update)
    with pytest.raises(ValueError, match=message):
        check_catalogue(changed)
    with pytest.raises(ValueError, match=message):
        synthesize(10, changed)


def test_every_patient_is_valid_input(
    sample: list[dict[str, Any]], features: dict[str, Feature]
) -> None:
    for row in sample:
        raw = {k: v for k, v in row.items() if k != "id"}
        # normalise raises InvalidInput on any bad value; derive replaces none given
        assert corrections(derive(normalise(raw, features), features)) == [], row["id"]


def test_missingness_is_feature_specific_and_correlated(cohort: pa.Table) -> None:
    ssc, sle = _flag(cohort, "ssc_diagnosis"), _flag(cohort, "sle_diagnosis")
    no_ssc = _known(cohort, "ssc_diagnosis") & ~ssc
    no_sle = _known(cohort, "sle_diagnosis") & ~sle
    for fid in ("age_years", "sex", "ssc_diagnosis", "sle_diagnosis"):
        assert _known(cohort, fid).mean() > 0.98, fid
    assert 0.75 < _known(cohort, "serum_creatinine").mean() < 0.97
    assert _known(cohort, "mpap_mmhg").mean() < 0.2  # right-heart catheterisation
    # Disease-specific features are missing for the other disease.
    assert _known(cohort, "mrss")[ssc].mean() > 0.7
    assert not _known(cohort, "mrss")[no_ssc].any()
    assert not _known(cohort, "ssc_subtype")[no_ssc].any()
    assert _known(cohort, "sledai_2k")[sle].mean() > 0.6
    assert not _known(cohort, "sledai_2k")[no_sle].any()
    # A patient without lung function tests lacks both FVC and DLCO.
    fvc, dlco = _known(cohort, "fvc_percent_predicted"), _known(cohort, "dlco_percent_predicted")
    assert dlco[fvc].mean() > 0.85
    assert dlco[~fvc].mean() < 0.05
    # Catheterisation is done when pulmonary hypertension calls for it.
    pah, mpap = _flag(cohort, "pah_diagnosis"), _known(cohort, "mpap_mmhg")
    assert mpap[pah].mean() > 0.5
    assert mpap[~pah].mean() < 0.1


def test_the_registry_mix(cohort: pa.Table) -> None:
    ssc, sle = _flag(cohort, "ssc_diagnosis"), _flag(cohort, "sle_diagnosis")
    assert 0.5 < ssc.mean() < 0.6
    assert 0.37 < (sle & ~ssc).mean() < 0.43
    assert 0.02 < (~ssc & ~sle).mean() < 0.08
    assert 0.75 < (_labels(cohort, "sex") == "female").mean() < 0.95


def test_features_go_together_plausibly(cohort: pa.Table) -> None:
    subtype = _labels(cohort, "ssc_subtype")
    mrss = _numbers(cohort, "mrss")
    assert np.nanmean(mrss[subtype == "diffuse_cutaneous"]) > 8 + np.nanmean(
        mrss[subtype == "limited_cutaneous"]
    )
    ild, known_ild = _flag(cohort, "ild_present"), _known(cohort, "ild_present")
    assert (
        (ild[subtype == "diffuse_cutaneous"]).mean() > (ild[subtype == "limited_cutaneous"]).mean()
    )
    for fid in ("fvc_percent_predicted", "dlco_percent_predicted"):
        values = _numbers(cohort, fid)
        assert np.nanmean(values[ild]) < np.nanmean(values[known_ild & ~ild]) - 10, fid
    pah = _flag(cohort, "pah_diagnosis")
    no_pah = _known(cohort, "pah_diagnosis") & ~pah
    mpap, dlco = _numbers(cohort, "mpap_mmhg"), _numbers(cohort, "dlco_percent_predicted")
    assert np.nanmean(mpap[pah]) > np.nanmean(mpap[no_pah]) + 10
    assert np.nanmean(dlco[pah]) < np.nanmean(dlco[no_pah])
    active, inactive = _flag(cohort, "disease_active"), _known(cohort, "disease_active")
    sledai = _numbers(cohort, "sledai_2k")
    assert np.nanmean(sledai[active]) > np.nanmean(sledai[inactive & ~active]) + 5


def test_nephritis_and_kidney_function_agree(cohort: pa.Table) -> None:
    sle = _flag(cohort, "sle_diagnosis")
    nephritis_class = _labels(cohort, "lupus_nephritis_class")
    class_iv, no_biopsy = nephritis_class == "IV", sle & (nephritis_class == None)  # noqa: E711
    protein = _numbers(cohort, "proteinuria_g_24h")
    creatinine, egfr = _numbers(cohort, "serum_creatinine"), _numbers(cohort, "egfr")
    assert np.nanmedian(protein[class_iv]) > 5 * np.nanmedian(protein[no_biopsy])
    assert np.nanmedian(creatinine[class_iv]) > np.nanmedian(creatinine[no_biopsy])
    assert np.nanmedian(egfr[class_iv]) < np.nanmedian(egfr[no_biopsy])
    clearance = _numbers(cohort, "creatinine_clearance_ml_min")
    both = ~np.isnan(creatinine) & ~np.isnan(egfr) & ~np.isnan(clearance)
    assert np.corrcoef(np.log(creatinine[both]), np.log(egfr[both]))[0, 1] < -0.8
    assert np.corrcoef(np.log(egfr[both]), np.log(clearance[both]))[0, 1] > 0.7


def test_derived_features_agree_with_what_they_derive_from(cohort: pa.Table) -> None:
    """Never a value its derivation would correct, and the derived value is often given where
    its cause is."""
    pairs = [
        ("dialysis", "renal_replacement_last_3_months"),
        ("active_malignancy", "history_of_malignancy"),
    ]
    for cause, derived in pairs:
        both = _known(cohort, cause) & _known(cohort, derived)
        assert not (_flag(cohort, cause) & both & ~_flag(cohort, derived)).any(), derived
        assert (_flag(cohort, cause) & both).sum() > 10, cause
    dose = np.nan_to_num(_numbers(cohort, "prior_cyclophosphamide_iv_g")) > 0
    alkylating = _known(cohort, "prior_alkylating_or_irradiation")
    assert not (dose & alkylating & ~_flag(cohort, "prior_alkylating_or_irradiation")).any()


def test_work_ups_know_the_contraindications_and_answer_the_confirmations(
    cohort: pa.Table,
) -> None:
    """A fluid challenge is done only in an HSCT work-up: those patients have the general
    contraindications known, and the confirmations answered, mostly favourably; a registry
    records confirmations for few others."""
    workup = _known(cohort, "pasp_fluid_challenge_mmhg")
    assert 200 < workup.sum() < 0.06 * len(workup)
    for fid in ("pregnant", "active_infection", "active_malignancy"):
        assert _known(cohort, fid)[workup].all(), fid
    for fid in ("severe_comorbidity", "hsct_fitness_confirmed", "major_organ_damage"):
        assert _known(cohort, fid)[workup].mean() > 0.9, fid
        assert _known(cohort, fid)[~workup].mean() < 0.25, fid
    fit = _flag(cohort, "hsct_fitness_confirmed")[workup & _known(cohort, "hsct_fitness_confirmed")]
    assert 0.6 < fit.mean() < 0.95
    severe = _flag(cohort, "severe_comorbidity")[workup & _known(cohort, "severe_comorbidity")]
    assert severe.mean() < 0.15


def test_the_new_features_go_together_plausibly(cohort: pa.Table) -> None:
    ild, known_ild = _flag(cohort, "ild_present"), _known(cohort, "ild_present")
    progressive = _flag(cohort, "ild_progressive_12m")
    assert not (progressive & known_ild & ~ild).any()
    assert 0.1 < progressive[ild & _known(cohort, "ild_progressive_12m")].mean() < 0.6
    sex = _labels(cohort, "sex")
    hb = _numbers(cohort, "hemoglobin_g_dl")
    assert np.nanmean(hb[sex == "male"]) > np.nanmean(hb[sex == "female"]) + 1
    dialysis = _flag(cohort, "dialysis")
    assert np.nanmean(hb[dialysis]) < np.nanmean(hb[~dialysis]) - 1.5
    crp, esr = _numbers(cohort, "crp_mg_l"), _numbers(cohort, "esr_mm_h")
    both = ~np.isnan(crp) & ~np.isnan(esr)
    assert np.corrcoef(np.log(crp[both] + 1), np.log(esr[both]))[0, 1] > 0.3
    # One measurement in two units: total bilirubin is 1.2 mg/dL (the upper limit) per ULN.
    total_bilirubin = _numbers(cohort, "bilirubin_total_mg_dl")
    as_uln = 1.2 * _numbers(cohort, "bilirubin_x_uln")
    both = ~np.isnan(total_bilirubin) & (as_uln >= 0.1)
    assert np.allclose(total_bilirubin[both], as_uln[both], atol=0.02)
    pasp, challenged = _numbers(cohort, "pasp_mmhg"), _numbers(cohort, "pasp_fluid_challenge_mmhg")
    assert (
        challenged[~np.isnan(pasp) & ~np.isnan(challenged)]
        >= pasp[~np.isnan(pasp) & ~np.isnan(challenged)] - 0.5
    ).all()
    other = _numbers(cohort, "other_immunosuppressant_months")
    total = _numbers(cohort, "immunosuppressant_months_incl_gc")
    measured = ~np.isnan(other) & ~np.isnan(total)
    assert (total[measured] >= other[measured] - 0.05).all()
    since = _numbers(cohort, "months_since_last_iv_cyclophosphamide")
    courses = _numbers(cohort, "prior_cyclophosphamide_iv_courses")
    assert not (~np.isnan(since) & (courses == 0)).any()  # never given: no "since"
    trunk = _flag(cohort, "trunk_skin_involvement")
    subtype = _labels(cohort, "ssc_subtype")
    assert (
        trunk[subtype == "diffuse_cutaneous"].mean()
        > 5 * trunk[subtype == "limited_cutaneous"].mean()
    )


def test_screening_meets_every_status(
    sample: list[dict[str, Any]], shipped_rules: RuleBase
) -> None:
    """Most SSc patients are ruled out, some stay undecided, a few are eligible: mostly those
    in an HSCT work-up, whose records are complete."""
    statuses: dict[str, Counter[Status]] = defaultdict(Counter)
    rulesets = [shipped_rules.rulesets[ident] for ident in HSCT_SSC]
    for row in sample:
        raw = {k: v for k, v in row.items() if k != "id"}
        values = derive(normalise(raw, shipped_rules.features), shipped_rules.features)
        for decision in evaluate_all(rulesets, values):
            statuses[decision.ruleset.id][decision.status] += 1
    for ident in HSCT_SSC:
        assert set(statuses[ident]) - {Status.ELIGIBLE} == set(Status) - {Status.ELIGIBLE}, ident
        assert statuses[ident][Status.ELIGIBLE] < 0.05 * SAMPLE, ident


def test_every_rule_set_finds_eligible_patients_in_a_registry(
    shipped_rules: RuleBase, tmp_path: Path
) -> None:
    """Screened as a registry is (DuckDB, 100,000 patients): under every shipped rule set some
    patients are eligible, with every confirmation answered, and some undecided patients
    await nothing but a clinician's confirmation where a rule set asks for one."""
    cohort = tmp_path / "cohort.parquet"
    write_parquet(100_000, shipped_rules.features, cohort, seed=11)
    outcome = screen(Request(source=str(cohort), out=tmp_path / "r.parquet"), shipped_rules)
    assert outcome.report["rejected"]["count"] == 0  # no value out of range
    assert outcome.report["corrected"] == []  # no value given against a derivation
    for entry in outcome.report["rulesets"]:
        counts = entry["counts"]
        assert counts["eligible"] > 0, entry["id"]
        assert counts["eligible"] < 0.02 * 100_000, entry["id"]
        assert counts["indeterminate"] > counts["eligible"], entry["id"]
    awaited = [e for e in outcome.report["rulesets"] if e["to_confirm"]]
    assert awaited
    assert sum(e["to_confirm_only"] for e in awaited) > 0


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(synth_cli.synth, [*args, "--rules-dir", str(SHIPPED_RULES)])


def test_cli_writes_parquet(tmp_path: Path, features: dict[str, Feature]) -> None:
    out = tmp_path / "cohort.parquet"
    result = _invoke("--n", "300", "--out", str(out), "--seed", "4")
    assert result.exit_code == 0, result.output
    assert f"wrote 300 synthetic patients to {out}" in result.stderr
    assert pq.read_table(out).equals(synthesize(300, features, seed=4))
    assert [p.name for p in tmp_path.iterdir()] == ["cohort.parquet"]  # no temporary left


def test_cli_writes_csv_that_the_cohort_reader_takes(
    tmp_path: Path, features: dict[str, Feature]
) -> None:
    out = tmp_path / "cohort.csv"
    result = CliRunner().invoke(synth_cli.synth, ["--n", "200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pacsv.read_csv(out)
    assert table.num_rows == 200
    assert table.column_names == ["id", *features]
    for patient in read_cohort(out, features):
        normalise(patient.features, features)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0", "--out", "x.parquet"], "--n"),
        (["--n", "100000001", "--out", "x.parquet"], "--n"),
        (["--n", "10", "--out", "x.txt"], "unsupported output format '.txt'"),
        (["--n", "10", "--out", "no/such/dir/x.csv"], "does not exist"),
        (["--n", "10", "--out", "x.csv", "--seed", "-1"], "--seed"),
        (["--out", "x.csv"], "--n"),
    ],
)
def test_cli_rejects_bad_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_a_failed_write_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unwritable target (simulated: tests may run as root, who can write anywhere) exits
    2 with the reason, leaves no temporary file and does not touch an existing output."""

    def refuse(_n: int, _features: object, path: Path, **_: object) -> None:
        path.write_bytes(b"partial")
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setitem(synth_cli.WRITERS, ".parquet", refuse)
    out = tmp_path / "cohort.parquet"
    out.write_bytes(b"old")
    result = _invoke("--n", "10", "--out", str(out))
    assert result.exit_code == 2
    assert "cannot write: Permission denied" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["cohort.parquet"]
    assert out.read_bytes() == b"old"
