"""FHIR Bulk Data exports: the 40-patient Synthea export, mapped by the API's own Bundle rules,
and damaged copies of it whose every problem is named at file:line."""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.batch.bulk import BulkCohort, BulkError, BulkPatient, read_bulk
from app.engine.derive import derive
from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.fhir.mapping import map_bundle
from tests.fhir.bundles import FIXTURES, WRITTEN_ON, resource, sle_bundle

# Independent of ELIGO_TEST_DATABASE: scripts/test.sh runs these in the SQLite pass only.
pytestmark = pytest.mark.one_pass

BULK = FIXTURES / "bulk-40"
TODAY = date(2026, 11, 22)
# Synthea's labs end in 2020-21: on this day several patients have an eGFR under 90 days old.
LAB_DAY = date(2020, 10, 15)
EGFR = "33914-3"
ABSENT = "no active, confirmed Condition in the record"
IV_G = "prior_cyclophosphamide_iv_g"


def _lines(name: str) -> list[dict[str, Any]]:
    with (BULK / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _owner(resource: dict[str, Any]) -> str | None:
    reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return reference.removeprefix("Patient/") if reference.startswith("Patient/") else None


def _records() -> dict[str, list[dict[str, Any]]]:
    """Every resource of the export by patient id, the Patient first: the whole record, as an
    API client would post it in a Bundle."""
    records = {p["id"]: [p] for p in _lines("Patient.000.ndjson")}
    for path in sorted(BULK.glob("*.ndjson")):
        if path.name.startswith("Patient."):
            continue
        for found in _lines(path.name):
            records[str(_owner(found))].append(found)
    return records


def _age(birth: str, on: date) -> int:
    born = date.fromisoformat(birth)
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _by_id(cohort: BulkCohort) -> dict[str, BulkPatient]:
    return {p.ident: p for p in cohort.patients}


def _dead() -> dict[int, str]:
    """The patients Synthea recorded as dead (all before LAB_DAY), by their line."""
    patients = enumerate(_lines("Patient.000.ndjson"), start=1)
    return {line: p["id"] for line, p in patients if "deceasedDateTime" in p}


@pytest.fixture(scope="module")
def cohort(shipped_rules: RuleBase) -> BulkCohort:
    return read_bulk(BULK, shipped_rules.features, TODAY)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A copy of the export to damage, its dead patients alive (so that the only problems are
    those a test makes)."""
    folder = Path(shutil.copytree(BULK, tmp_path / "export"))
    patients = _lines("Patient.000.ndjson")
    for patient in patients:
        patient.pop("deceasedDateTime", None)
    lines = "".join(json.dumps(p) + "\n" for p in patients)
    (folder / "Patient.000.ndjson").write_text(lines, encoding="utf-8")
    return folder


# --- the real export --------------------------------------------------------------------------


def test_every_patient_of_the_export_is_read(cohort: BulkCohort) -> None:
    patients = _lines("Patient.000.ndjson")
    dead = _dead()
    assert (len(patients), len(dead)) == (40, 7)
    alive = [p["id"] for p in patients if p["id"] not in dead.values()]
    assert [p.ident for p in cohort.patients] == alive
    assert [p.where for p in cohort.patients] == [
        f"{BULK / 'Patient.000.ndjson'}:{line}" for line in range(1, 41) if line not in dead
    ]
    # The dead are refused as the API refuses them, each at its Patient line, by no date.
    assert [(p.where, p.patient, p.code) for p in cohort.problems] == [
        (f"{BULK / 'Patient.000.ndjson'}:{line}", ident, "deceased") for line, ident in dead.items()
    ]
    assert {p.message for p in cohort.problems} == {
        "deceasedDateTime: the patient is recorded as deceased; eligibility is not evaluated"
    }
    assert cohort.excluded == 7
    lines = sum(len(_lines(p.name)) for p in BULK.glob("*.ndjson"))
    assert (cohort.files, cohort.lines, cohort.resources) == (7, lines, lines)
    # the Patients and the few resources carrying a catalogue code: a small part of the export
    assert 40 < cohort.used < lines / 10


def test_demographics_and_absent_diagnoses(cohort: BulkCohort, shipped_rules: RuleBase) -> None:
    """At 2026-11-22 every Synthea lab is older than its window: what is left is age and sex,
    and `false` for the diagnoses the catalogue says a record would carry (SSc, SLE)."""
    absent = {f.id for f in shipped_rules.features.values() if f.spec.absent_in_record == "false"}
    assert absent == {"ssc_diagnosis", "sle_diagnosis"}
    read = _by_id(cohort)
    for patient in _lines("Patient.000.ndjson"):
        if patient["id"] in _dead().values():
            continue
        values = read[patient["id"]].values
        assert set(values) == {"age_years", "sex"} | absent
        assert values["age_years"].value == _age(patient["birthDate"], TODAY)
        assert values["age_years"].provenance.resource == "Patient"  # no identifier
        assert values["sex"].value == patient["gender"]
        for feature in absent:
            assert values[feature].value is False
            assert values[feature].provenance.resource == ABSENT
    stale = {n.feature for p in cohort.patients for n in p.skipped if "days old" in n.reason}
    assert {"egfr", "serum_creatinine"} <= stale  # (the only echo is a dead patient's)


def test_values_are_map_bundle_on_the_whole_record(shipped_rules: RuleBase) -> None:
    """The same record as one Bundle of all its resources (claims, immunisations and all):
    reading the export must give exactly what the API gives (mapped, then derived)."""
    cohort = read_bulk(BULK, shipped_rules.features, LAB_DAY)
    assert {p.code for p in cohort.problems} == {"deceased"}
    read = _by_id(cohort)
    for ident, record in _records().items():
        entries = [{"resource": r} for r in record]
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        if ident in _dead().values():
            with pytest.raises(InvalidInput, match="deceased"):
                map_bundle(bundle, shipped_rules.features, LAB_DAY)
            assert ident not in read
            continue
        expected = map_bundle(bundle, shipped_rules.features, LAB_DAY)
        assert read[ident].values == derive(expected.values, shipped_rules.features)
        assert read[ident].given == expected.values  # what a screening derives again
        assert read[ident].skipped == expected.skipped
        assert read[ident].values["age_years"].value == _age(record[0]["birthDate"], LAB_DAY)


def test_egfr_in_either_synthea_unit(shipped_rules: RuleBase) -> None:
    """Synthea writes eGFR as `mL/min/{1.73_m2}` and as `mL/min`: both are the canonical
    `mL/min/{1.73_m2}`, the same number. The expected values come from the NDJSON here: the
    latest 33914-3 of the last 90 days, the first of a day when there are several."""
    expected: dict[str, tuple[str, float, str]] = {}
    for found in _lines("Observation.000.ndjson"):
        if found["code"]["coding"][0]["code"] != EGFR:
            continue
        day = found["effectiveDateTime"][:10]
        fresh = LAB_DAY - timedelta(days=90) <= date.fromisoformat(day) <= LAB_DAY
        patient = str(_owner(found))
        if fresh and (patient not in expected or day > expected[patient][0]):
            quantity = found["valueQuantity"]
            expected[patient] = (day, quantity["value"], quantity["code"])
    assert {unit for _, _, unit in expected.values()} == {"mL/min", "mL/min/{1.73_m2}"}
    read = _by_id(read_bulk(BULK, shipped_rules.features, LAB_DAY))
    got = {i: p.values["egfr"] for i, p in read.items() if "egfr" in p.values}
    assert set(got) == set(expected)
    for patient, (day, number, unit) in expected.items():
        assert got[patient].value == pytest.approx(number)
        assert (got[patient].unit, got[patient].given_unit) == ("mL/min/{1.73_m2}", unit)
        assert got[patient].provenance.date == day


# --- medication records naming their drug by reference ------------------------------------------


def _write_export(bundle: dict[str, Any], folder: Path, *, skip: str = "") -> Path:
    """A Bulk Data export of one bundle: one file per resource type."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] != skip:
            by_type[entry["resource"]["resourceType"]].append(json.dumps(entry["resource"]))
    folder.mkdir()
    for kind, lines in by_type.items():
        (folder / f"{kind}.000.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _bulk_sle() -> dict[str, Any]:
    """The SLE patient with references as a Bulk export writes them, `Type/id`."""
    bundle = sle_bundle()
    resource(bundle, "cyc-5")["medicationReference"]["reference"] = "Medication/med-cyc"
    return bundle


def test_medications_named_by_reference(shipped_rules: RuleBase, tmp_path: Path) -> None:
    bundle = _bulk_sle()
    cohort = read_bulk(_write_export(bundle, tmp_path / "x"), shipped_rules.features, WRITTEN_ON)
    expected = map_bundle(bundle, shipped_rules.features, WRITTEN_ON)
    assert cohort.problems == []
    (patient,) = cohort.patients
    assert patient.values == derive(expected.values, shipped_rules.features)
    assert patient.values[IV_G].value == 3.0  # six IV doses of 500 mg, two named by reference


def test_a_medication_missing_from_the_export(shipped_rules: RuleBase, tmp_path: Path) -> None:
    """A record naming a Medication the export lacks may be cyclophosphamide: as in a Bundle,
    the IV total is unknown, never the sum of the four others."""
    bundle = _bulk_sle()
    folder = _write_export(bundle, tmp_path / "x", skip="Medication")
    (patient,) = read_bulk(folder, shipped_rules.features, WRITTEN_ON).patients
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Medication"]
    expected = map_bundle(bundle, shipped_rules.features, WRITTEN_ON)
    assert IV_G not in patient.values
    values = derive(expected.values, shipped_rules.features)
    assert (patient.values, patient.skipped) == (values, expected.skipped)


def test_urn_uuid_patient_references(shipped_rules: RuleBase, tmp_path: Path) -> None:
    bundle = _bulk_sle()
    expected = map_bundle(bundle, shipped_rules.features, WRITTEN_ON)
    urn = copy.deepcopy(bundle)
    for entry in urn["entry"]:
        if "subject" in entry["resource"]:
            entry["resource"]["subject"]["reference"] = "urn:uuid:sle-1"
    cohort = read_bulk(_write_export(urn, tmp_path / "x"), shipped_rules.features, WRITTEN_ON)
    assert cohort.problems == []
    assert cohort.patients[0].values == derive(expected.values, shipped_rules.features)


# --- bad input: every problem at file:line ------------------------------------------------------


def _rewrite(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _append(path: Path, *resources: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in resources)


def _read(folder: Path, rules: RuleBase, on: date = TODAY) -> BulkCohort:
    return read_bulk(folder, rules.features, on)


def test_malformed_json(export: Path, shipped_rules: RuleBase) -> None:
    conditions = export / "Condition.000.ndjson"
    _rewrite(conditions, 3, '{"resourceType": "Condition", "id": ')
    _rewrite(export / "Procedure.000.ndjson", 5, "[1, 2]")
    _rewrite(export / "Procedure.000.ndjson", 6, "")  # a blank line is nothing
    cohort = _read(export, shipped_rules)
    assert [(p.where, p.patient, p.code) for p in cohort.problems] == [
        (f"{conditions}:3", None, "malformed_json"),
        (f"{export / 'Procedure.000.ndjson'}:5", None, "not_a_resource"),
    ]
    assert "column" in cohort.problems[0].message
    # whose it was cannot be told: nobody is excluded, the caller sees an unattributed problem
    assert len(cohort.patients) == 40


def test_a_resource_of_the_wrong_type(export: Path, shipped_rules: RuleBase) -> None:
    condition = _lines("Condition.000.ndjson")[0]
    procedures = export / "Procedure.000.ndjson"
    _append(procedures, condition)
    cohort = _read(export, shipped_rules)
    (problem,) = cohort.problems
    line = len(_lines("Procedure.000.ndjson")) + 1
    assert (problem.where, problem.code) == (f"{procedures}:{line}", "wrong_type")
    assert problem.message == "a 'Condition' resource in a file of Procedure resources"
    assert problem.patient == _owner(condition)  # part of their record is unread: excluded
    assert problem.patient not in _by_id(cohort)
    assert (len(cohort.patients), cohort.excluded) == (39, 1)


def test_an_observation_of_no_known_patient(export: Path, shipped_rules: RuleBase) -> None:
    orphan = _lines("Observation.000.ndjson")[0]
    orphan["subject"] = {"reference": "Patient/no-such-patient"}
    observations = export / "Observation.000.ndjson"
    _append(observations, orphan)
    cohort = _read(export, shipped_rules)
    (problem,) = cohort.problems
    assert problem.where == f"{observations}:{len(_lines('Observation.000.ndjson')) + 1}"
    assert (problem.patient, problem.code) == ("no-such-patient", "unknown_patient")
    assert "no-such-patient" not in problem.message
    assert len(cohort.patients) == 40


def test_an_impossible_lvef_excludes_its_patient(export: Path, shipped_rules: RuleBase) -> None:
    """An LVEF of 150 % in a second Observation file (line 2): the patient is left out, and
    the problem names the line, as the API names the field."""
    patient = _lines("Patient.000.ndjson")[4]["id"]
    lvef = {
        "resourceType": "Observation",
        "id": "lvef-150",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "10230-1"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-01",
        "valueQuantity": {"value": 150, "unit": "%", "system": "http://unitsofmeasure.org"},
    }
    height = _lines("Observation.000.ndjson")[0]
    second = export / "Observation.001.ndjson"
    _append(second, height, lvef)
    cohort = _read(export, shipped_rules)
    (problem,) = cohort.problems
    assert (problem.where, problem.patient, problem.code) == (
        f"{second}:2",
        patient,
        "out_of_range",
    )
    assert problem.message.startswith("value[x]: lvef_percent: 150 % is outside")
    assert patient not in problem.message
    assert patient not in _by_id(cohort)
    assert (len(cohort.patients), cohort.excluded, cohort.files) == (39, 1, 8)


def test_a_patient_twice(export: Path, shipped_rules: RuleBase) -> None:
    patients = export / "Patient.000.ndjson"
    first = _lines("Patient.000.ndjson")[0]
    _append(patients, first)
    cohort = _read(export, shipped_rules)
    (problem,) = cohort.problems
    assert (problem.where, problem.patient, problem.code) == (
        f"{patients}:41",
        first["id"],
        "duplicate_patient",
    )
    assert problem.message == f"the same Patient id as at {patients}:1"
    assert len(cohort.patients) == 39


def test_a_usable_observation_naming_no_patient(export: Path, shipped_rules: RuleBase) -> None:
    egfr = next(
        o for o in _lines("Observation.000.ndjson") if o["code"]["coding"][0]["code"] == EGFR
    )
    del egfr["subject"]
    observations = export / "Observation.000.ndjson"
    _append(observations, egfr)
    (problem,) = _read(export, shipped_rules).problems
    assert (problem.patient, problem.code) == (None, "no_patient")
    assert problem.where.startswith(f"{observations}:")


def test_exports_that_cannot_be_read(tmp_path: Path, shipped_rules: RuleBase) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(BulkError, match=f"^{re.escape(str(missing))}: no such folder"):
        _read(missing, shipped_rules)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text("{}", encoding="utf-8")
    with pytest.raises(BulkError, match=f"^{re.escape(str(empty))}: no \\*.ndjson files$"):
        _read(empty, shipped_rules)
    (empty / "Observation.000.ndjson.gz").write_bytes(b"")
    with pytest.raises(BulkError, match=re.escape("(compressed .ndjson.gz files are not read)")):
        _read(empty, shipped_rules)
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    (unnamed / "output-1.ndjson").write_text("{}\n", encoding="utf-8")
    with pytest.raises(BulkError, match="does not start with a FHIR R4 resource type"):
        _read(unnamed, shipped_rules)


def test_a_file_that_is_not_utf8(export: Path, shipped_rules: RuleBase) -> None:
    conditions = export / "Condition.000.ndjson"
    data = conditions.read_bytes().splitlines(keepends=True)
    data[1] = '{"resourceType": "Condition", "id": "é"}\n'.encode("latin-1")
    conditions.write_bytes(b"".join(data))
    with pytest.raises(BulkError, match=f"^{re.escape(str(conditions))}:2: not UTF-8 text"):
        _read(export, shipped_rules)
