"""FHIR R4 Bundles to features: real Synthea records and an SSc patient of our own."""

from __future__ import annotations

import copy
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.fhir.mapping import map_bundle
from tests.fhir.bundles import (
    SYNTHEA,
    WRITTEN_ON,
    alive_on,
    died_on,
    patient_of,
    resource,
    ssc_bundle,
)

TODAY = WRITTEN_ON


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name[:16])
def test_every_synthea_bundle_maps(path: Path, shipped_rules: RuleBase) -> None:
    mapped = map_bundle(json.loads(path.read_text()), shipped_rules.features, alive_on(path))
    assert mapped.patient_id is not None
    assert mapped.values["age_years"].provenance.resource == "Patient"  # no identifier
    assert mapped.values["ssc_diagnosis"].value is False  # no SSc on the problem list
    assert "indication_ssc" not in mapped.values
    for value in mapped.values.values():
        assert value.provenance.source == "fhir"


DECEASED = [path for path in SYNTHEA if died_on(path) is not None]


@pytest.mark.parametrize("path", DECEASED, ids=lambda p: p.name[:16])
def test_a_deceased_patient_is_refused_from_the_day_of_death(
    path: Path, shipped_rules: RuleBase
) -> None:
    """No verdict for a dead patient: refused like an impossible value, naming the field and
    not the date. The day before, the same record maps."""
    data = json.loads(path.read_text())
    died = died_on(path)
    assert died is not None
    for on in (died, died + timedelta(days=400)):
        with pytest.raises(InvalidInput) as raised:
            map_bundle(data, shipped_rules.features, on)
        (issue,) = [i for i in raised.value.issues if i.code == "deceased"]
        assert issue.field.endswith(".resource.deceasedDateTime")
        assert died.isoformat() not in issue.message
        assert str(died.year) not in issue.message
    map_bundle(data, shipped_rules.features, died - timedelta(days=1))


def test_a_patient_recorded_dead_without_a_date_is_refused(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    patient = patient_of(bundle)
    patient["deceasedBoolean"] = False
    assert map_bundle(bundle, shipped_rules.features, TODAY).values["ssc_diagnosis"].value
    patient["deceasedBoolean"] = True
    with pytest.raises(InvalidInput, match=r"deceasedBoolean: the patient is recorded as deceased"):
        map_bundle(bundle, shipped_rules.features, TODAY)


def test_egfr_in_either_synthea_unit_is_the_same_number(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    egfr = resource(bundle, "obs-8")
    egfr["valueQuantity"].update(unit="mL/min", code="mL/min")
    as_ml_min = map_bundle(bundle, shipped_rules.features, TODAY).values["egfr"]
    assert as_ml_min.value == 85
    assert as_ml_min.given_unit == "mL/min"
    assert as_ml_min.unit == "mL/min/{1.73_m2}"


def test_the_ssc_patient(shipped_rules: RuleBase) -> None:
    mapped = map_bundle(ssc_bundle(), shipped_rules.features, TODAY)
    values = {k: v.value for k, v in mapped.values.items()}
    assert values["age_years"] == 46  # born 1980-03-15: completed years
    assert values["sex"] == "female"
    assert values["ssc_diagnosis"] is True
    assert values["sle_diagnosis"] is False
    assert values["ild_present"] is True
    assert values["mrss"] == 25  # local code system
    assert values["lvef_percent"] == 60  # the 2021 echo does not count
    assert mapped.values["lvef_percent"].provenance.resource == "Observation/obs-4"
    assert mapped.values["lvef_percent"].provenance.date == "2026-09-01"
    assert values["serum_creatinine"] == pytest.approx(80 / 88.42, rel=1e-3)
    skipped = {(n.resource, n.feature) for n in mapped.skipped}
    assert ("Observation/obs-5", "lvef_percent") in skipped


def test_age_counts_completed_years(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    resource(bundle, "ssc-1")["birthDate"] = "1980-11-23"
    assert map_bundle(bundle, shipped_rules.features, TODAY).values["age_years"].value == 45
    resource(bundle, "ssc-1")["birthDate"] = "1980-11-22"
    assert map_bundle(bundle, shipped_rules.features, TODAY).values["age_years"].value == 46


def test_an_old_value_is_not_used_at_all(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    resource(bundle, "obs-4")["effectiveDateTime"] = "2024-01-01"
    mapped = map_bundle(bundle, shipped_rules.features, TODAY)
    assert "lvef_percent" not in mapped.values


def test_contradictory_conditions_leave_the_feature_unknown(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    refuted = copy.deepcopy(resource(bundle, "cond-2"))
    refuted["id"] = "cond-9"
    refuted["verificationStatus"]["coding"][0]["code"] = "refuted"
    bundle["entry"].append({"resource": refuted})
    mapped = map_bundle(bundle, shipped_rules.features, TODAY)
    assert "ild_present" not in mapped.values
    assert any("contradicted by Condition/cond-9" in n.reason for n in mapped.skipped)


def test_resolved_or_unconfirmed_conditions_do_not_count(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    resource(bundle, "cond-2")["clinicalStatus"]["coding"][0]["code"] = "resolved"
    assert "ild_present" not in map_bundle(bundle, shipped_rules.features, TODAY).values
    resource(bundle, "cond-1")["verificationStatus"]["coding"][0]["code"] = "provisional"
    values = map_bundle(bundle, shipped_rules.features, TODAY).values
    assert values["ssc_diagnosis"].value is False


def test_an_observation_without_a_value_is_skipped_with_its_reason(
    shipped_rules: RuleBase,
) -> None:
    bundle = ssc_bundle()
    dlco = resource(bundle, "obs-2")
    del dlco["valueQuantity"]
    dlco["dataAbsentReason"] = {"text": "patient unable to perform"}
    mapped = map_bundle(bundle, shipped_rules.features, TODAY)
    assert "dlco_percent_predicted" not in mapped.values
    assert any("patient unable to perform" in n.reason for n in mapped.skipped)


def _issues(data: Any, rules: RuleBase) -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as error:
        map_bundle(data, rules.features, TODAY)
    return [(i.field, i.code) for i in error.value.issues]


def test_bad_bundles_name_the_place(shipped_rules: RuleBase) -> None:
    assert _issues({"resourceType": "Patient"}, shipped_rules) == [("fhir", "not_a_bundle")]
    assert _issues([], shipped_rules) == [("fhir", "not_a_bundle")]
    assert _issues({"resourceType": "Bundle", "entry": {}}, shipped_rules) == [
        ("fhir.entry", "wrong_type")
    ]
    bundle = ssc_bundle()
    bundle["entry"].append({"resource": {"resourceType": "Spaceship", "id": "x"}})
    bundle["entry"].append({"fullUrl": "urn:uuid:x"})
    assert _issues(bundle, shipped_rules) == [
        ("fhir.entry[11].resource.resourceType", "unknown_type"),
        ("fhir.entry[12].resource", "missing"),
    ]


def test_unusable_values_are_errors_that_name_the_resource(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    resource(bundle, "obs-2")["valueQuantity"].update(unit="kg", code="kg")  # DLCO in kg
    resource(bundle, "obs-4")["valueQuantity"]["value"] = 400  # LVEF 400 %
    issues = _issues(bundle, shipped_rules)
    assert issues == [
        ("fhir.entry[4].resource.value[x]", "unit"),
        ("fhir.entry[6].resource.value[x]", "out_of_range"),
    ]


def test_resources_that_are_not_valid_fhir_name_the_field(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    resource(bundle, "obs-6")["effectiveDateTime"] = "yesterday"
    resource(bundle, "obs-7")["valueQuantity"]["value"] = "eighty"
    issues = _issues(bundle, shipped_rules)
    fields = [field for field, _ in issues]
    assert any(f.startswith("fhir.entry[8].resource.effectiveDateTime") for f in fields), issues
    assert any(f.startswith("fhir.entry[9].resource.valueQuantity") for f in fields), issues
    assert {code for _, code in issues} == {"fhir"}


def test_a_future_birth_date_is_an_error(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    resource(bundle, "ssc-1")["birthDate"] = "2030-01-01"
    assert _issues(bundle, shipped_rules) == [("fhir.entry[0].resource.birthDate", "future")]


def test_display_text_never_decides(shipped_rules: RuleBase) -> None:
    bundle = ssc_bundle()
    condition = resource(bundle, "cond-1")
    condition["code"]["coding"][0]["code"] = "000000"  # display still says Systemic sclerosis
    assert map_bundle(bundle, shipped_rules.features, TODAY).values["ssc_diagnosis"].value is False


@pytest.mark.parametrize("path", SYNTHEA[:2], ids=lambda p: p.name[:16])
def test_the_minimised_bundle_maps_to_the_same_values(path: Path, shipped_rules: RuleBase) -> None:
    """What the audit trail keeps is enough to replay: same values, no identifiers."""
    on = alive_on(path)
    data = json.loads(path.read_text())
    mapped = map_bundle(data, shipped_rules.features, on)
    again = map_bundle(mapped.minimised, shipped_rules.features, on)
    assert again.values == mapped.values
    kept = json.dumps(mapped.minimised)
    patient = patient_of(data)
    assert patient["id"] not in kept
    assert patient["name"][0]["family"] not in kept
    assert len(kept) < len(path.read_text()) / 20


def test_haemoglobin_of_a_synthea_record_maps_by_its_loinc_code(shipped_rules: RuleBase) -> None:
    """Added for ASTIS's early inflammatory branch (Hb below 11 g/dL): LOINC 718-7 in a real
    Synthea record, within its 90-day window, in g/dL."""
    path = next(p for p in SYNTHEA if p.name.startswith("Martina"))
    bundle = json.loads(path.read_text())
    value = map_bundle(bundle, shipped_rules.features, date(2020, 9, 15)).values["hemoglobin_g_dl"]
    assert value.value == pytest.approx(15.48, abs=0.005)
    assert value.given_unit == "g/dL"
    assert value.provenance.date is not None
    assert value.provenance.date.startswith("2020-08-29")
    later = map_bundle(bundle, shipped_rules.features, date(2021, 1, 1)).values
    assert "hemoglobin_g_dl" not in later  # 125 days old: no longer counts


def test_total_bilirubin_in_umol_per_l_converts_with_its_molar_mass(
    shipped_rules: RuleBase,
) -> None:
    """1975-2 reported in µmol/L: 34 µmol/L (Greco 2024's limit) is 1.988 mg/dL."""
    bundle = ssc_bundle()
    observation = resource(bundle, "obs-8")
    observation["code"] = {"coding": [{"system": "http://loinc.org", "code": "1975-2"}]}
    observation["valueQuantity"] = {
        "value": 34,
        "unit": "umol/L",
        "system": "http://unitsofmeasure.org",
        "code": "umol/L",
    }
    value = map_bundle(bundle, shipped_rules.features, TODAY).values["bilirubin_total_mg_dl"]
    assert value.value == pytest.approx(1.988, abs=0.0005)
    assert (value.given_value, value.given_unit) == (34, "umol/L")
    assert "egfr" not in map_bundle(bundle, shipped_rules.features, TODAY).values
