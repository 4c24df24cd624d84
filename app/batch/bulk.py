"""Read a FHIR Bulk Data export (a folder of NDJSON files) into per-patient feature values.

The semantics are the API's, not a second mapping: each patient's resources are put into one
Bundle-shaped dict and given to `app.fhir.mapping.map_bundle`, so freshness windows, catalogue
codes, UCUM conversion and the medication derivations cannot drift between a Bundle posted to
the API and the same record screened from a registry export.

Streaming, and memory proportional to the useful data: every line is parsed and checked (a
damaged export must not go unnoticed), but only the resources a feature can come from
(`app.fhir.bundle.usable`, with the same `known` codes as `map_bundle`) are kept. Most of an
export (Synthea: 96 % of the Observations) feeds no feature.

Files are read in this order, so each line can be judged when it is read:
- `Medication.*`: medication records may name their drug by reference, and whether a record is
  usable depends on the Medication it names. The code of every Medication is kept, and the
  whole resource of those with a catalogue code, to be put into the bundles that need it.
- `Patient.*`: the patients, so a resource naming a patient with no Patient resource is found.
- the others, in name order (`Observation.2` before `Observation.10`): a line belongs to the
  patient its `subject` (or `patient`) names, as `Patient/<id>` or `urn:uuid:<id>`.

Bad input is never dropped in silence. A malformed line, a line that is not a resource, a
resource in the file of another type, a resource naming a patient with no Patient resource, a
usable resource naming no patient and every issue `map_bundle` raises are problems at
file:line. A patient with a problem is excluded from `patients`: a record read in part could
be judged eligible on what is left. A value the record gives against a catalogue derivation is
not a problem: `derive` replaces it with the implied value, as the API does (the screening
counts it as corrected). A problem no patient can be tied to (a malformed line) may hide any
patient's data; the caller decides whether the cohort is complete enough.

Nothing is logged here: patient identifiers are data for the caller, never for a log. Messages
name files and lines, not patients; `BulkProblem.patient` carries the id separately.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from app import strict_json
from app.batch.backends import SourceError
from app.engine.derive import derive
from app.engine.inputs import FeatureValue, InputIssue, InvalidInput
from app.engine.model import Feature
from app.fhir import medication
from app.fhir.bundle import MEDICATION_USES, Note, codes_of, medication_concept, usable
from app.fhir.mapping import code_index, map_bundle

__all__ = ["BulkCohort", "BulkError", "BulkPatient", "BulkProblem", "read_bulk"]

# `Patient/<id>` (relative or absolute) or `urn:uuid:<id>`; a FHIR id is [A-Za-z0-9-.]{1,64}.
_PATIENT = re.compile(r"^(?:(?:.*/)?Patient/|urn:uuid:)([A-Za-z0-9.\-]{1,64})$")
_ENTRY = re.compile(r"^fhir\.entry\[(\d+)\](?:\.resource)?\.?(.*)$")
_FIRST = ("Medication", "Patient")  # read before the other files; see the module docstring

Entry = tuple[str, dict[str, Any]]  # (file:line, resource)


class BulkError(SourceError):
    """The export cannot be read at all (no folder, no NDJSON file, not UTF-8); the message
    starts with the path. A source error, so that `eligo screen` handles it without importing
    this module (and the FHIR models) for every other source."""


@dataclass(frozen=True, slots=True)
class BulkProblem:
    where: str  # file:line of the offending resource
    patient: str | None  # the patient id the data ties the problem to, if any
    code: str  # stable: malformed_json, not_a_resource, wrong_type, no_patient, ...
    message: str  # names no patient


@dataclass
class BulkPatient:
    ident: str  # the Patient resource id: to pseudonymise, never to log
    where: str  # file:line of the Patient resource
    values: dict[str, FeatureValue]  # as the API uses them: mapped, then derived
    skipped: list[Note] = field(default_factory=list)  # resources not used, and why
    given: dict[str, FeatureValue] = field(default_factory=dict)  # mapped, before derivations


@dataclass
class BulkCohort:
    patients: list[BulkPatient] = field(default_factory=list)
    problems: list[BulkProblem] = field(default_factory=list)
    files: int = 0
    lines: int = 0  # non-blank lines read
    resources: int = 0  # lines that were resources of their file's type
    used: int = 0  # resources kept for the patients' bundles (Patients, Medications included)
    excluded: int = 0  # patients with a Patient resource left out for a problem


def read_bulk(folder: Path, features: Mapping[str, Feature], today: date) -> BulkCohort:
    """Raise BulkError when the export cannot be read; report everything else as problems."""
    reader = _Reader(features)
    files = _files(folder)
    for path in files:
        reader.read(path)
    cohort = reader.map(today)
    cohort.files = len(files)
    return cohort


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise BulkError(f"{folder}: {what}")
    files = [p for p in folder.glob("*.ndjson") if p.is_file()]
    if not files:
        compressed = any(folder.glob("*.ndjson.gz"))
        note = " (compressed .ndjson.gz files are not read)" if compressed else ""
        raise BulkError(f"{folder}: no *.ndjson files{note}")
    for path in files:
        _type_of(path)  # every name checked before anything is read
    return sorted(files, key=_order)


def _type_of(path: Path) -> str:
    """The resource type a file holds, from its name (`Observation.000.ndjson`): Bulk Data
    puts one type per file, and a line of another type means the export is not what it says."""
    kind = path.name.split(".", 1)[0]
    try:
        get_fhir_model_class(kind)
    except (ValueError, KeyError):
        raise BulkError(
            f"{path}: the name does not start with a FHIR R4 resource type "
            "(expected <Type>.ndjson or <Type>.<n>.ndjson)"
        ) from None
    return kind


def _order(path: Path) -> tuple[int, list[str | int]]:
    kind = _type_of(path)
    rank = _FIRST.index(kind) if kind in _FIRST else len(_FIRST)
    parts = re.split(r"(\d+)", path.name)  # text and digits alternate: comparable
    return rank, [int(p) if p.isdigit() else p for p in parts]


class _Reader:
    """The state of one export's reading: what was kept, per patient, and what was wrong."""

    def __init__(self, features: Mapping[str, Feature]) -> None:
        self.features = features
        # exactly as map_bundle computes it, so `usable` keeps what map_bundle would use
        self.known = frozenset(code_index(features)) | medication.codes_of_derived(features)
        self.drug_codes: dict[str, Any] = {}  # `Medication/<id>`, `urn:uuid:<id>` -> its code
        self.drugs: dict[str, Entry] = {}  # the same keys -> Medications with a catalogue code
        self.records: dict[str, list[Entry]] = {}  # patient id -> its Patient, then the rest
        self.cohort = BulkCohort()

    def problem(self, where: str, patient: str | None, code: str, message: str) -> None:
        self.cohort.problems.append(BulkProblem(where, patient, code, message))

    def read(self, path: Path) -> None:
        kind = _type_of(path)
        for where, resource in self.lines(path):
            found = resource.get("resourceType")
            if found != kind:
                message = f"a {found!r} resource in a file of {kind} resources"
                self.problem(where, _owner(resource), "wrong_type", message)
                continue
            self.cohort.resources += 1
            self.take(where, resource)

    def lines(self, path: Path) -> Iterator[Entry]:
        """Each non-blank line that is a JSON object with a resourceType, with its file:line.
        Read as bytes and split on LF only: that is NDJSON, and a decoding error then names
        its line."""
        try:
            with path.open("rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    where = f"{path}:{number}"
                    text = _decode(raw, where)
                    if text.strip():
                        self.cohort.lines += 1
                        resource = self.parse(text, where)
                        if resource is not None:
                            yield where, resource
        except OSError as exc:
            raise BulkError(f"{path}: cannot read: {exc.strerror}") from None

    def parse(self, text: str, where: str) -> dict[str, Any] | None:
        try:
            data = strict_json.loads(text)
        except json.JSONDecodeError as exc:
            self.problem(where, None, "malformed_json", f"column {exc.colno}: {exc.msg}")
            return None
        except ValueError as exc:  # NaN, Infinity
            self.problem(where, None, "malformed_json", str(exc))
            return None
        except RecursionError:
            self.problem(where, None, "malformed_json", "nested too deeply to read")
            return None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            message = "expected a FHIR resource: a JSON object with a resourceType"
            self.problem(where, None, "not_a_resource", message)
            return None
        return data

    def take(self, where: str, resource: dict[str, Any]) -> None:
        kind = resource["resourceType"]
        if kind == "Medication":
            self.medication(where, resource)
        elif kind == "Patient":
            self.patient(where, resource)
        else:
            self.patient_data(where, resource, kind)

    def medication(self, where: str, resource: dict[str, Any]) -> None:
        ident = resource.get("id")
        if not isinstance(ident, str):
            return  # nothing can reference it
        code = resource.get("code")
        useful = bool(self.known.intersection(codes_of(resource)))
        for key in (f"Medication/{ident}", f"urn:uuid:{ident}"):
            self.drug_codes[key] = code
            if useful:
                self.drugs[key] = (where, resource)
        self.cohort.used += useful

    def patient(self, where: str, resource: dict[str, Any]) -> None:
        ident = resource.get("id")
        if not isinstance(ident, str) or not ident:
            self.problem(where, None, "no_id", "a Patient resource without an id")
        elif ident in self.records:
            first = self.records[ident][0][0]
            self.problem(where, ident, "duplicate_patient", f"the same Patient id as at {first}")
        else:
            self.records[ident] = [(where, resource)]
            self.cohort.used += 1

    def patient_data(self, where: str, resource: dict[str, Any], kind: str) -> None:
        keep = usable(resource, self.known, self.drug_codes) or self.unresolved(resource)
        owner = _owner(resource)
        if owner is None:
            if keep:  # a value a feature could come from, and nobody to give it to
                message = f"this {kind} could give a feature but names no patient (subject)"
                self.problem(where, None, "no_patient", message)
        elif owner not in self.records:
            message = f"the patient this {kind} names has no Patient resource in the export"
            self.problem(where, owner, "unknown_patient", message)
        elif keep:
            self.records[owner].append((where, resource))
            self.cohort.used += 1

    def unresolved(self, resource: dict[str, Any]) -> bool:
        """A medication record whose Medication is not in the export: map_bundle must see it,
        because it makes the dose totals unknown (it may be cyclophosphamide)."""
        return (
            resource.get("resourceType") in MEDICATION_USES
            and "medicationReference" in resource
            and medication_concept(resource, self.drug_codes) is None
        )

    def map(self, today: date) -> BulkCohort:
        """Map each patient's bundle; the records are released as they are mapped."""
        cohort = self.cohort
        problems = {p.patient for p in cohort.problems if p.patient is not None}
        for ident in list(self.records):
            entries = self.records.pop(ident)
            entries += self.referenced_drugs(entries)
            patient = self.map_one(ident, entries, today)
            if patient is not None and ident not in problems:
                cohort.patients.append(patient)
            else:
                cohort.excluded += 1
        return cohort

    def referenced_drugs(self, entries: list[Entry]) -> list[Entry]:
        """The Medications a patient's records name, each once, to add to their bundle."""
        found: dict[str, Entry] = {}
        for _, resource in entries:
            reference = resource.get("medicationReference")
            target = reference.get("reference") if isinstance(reference, dict) else None
            if isinstance(target, str) and target in self.drugs:
                where, drug = self.drugs[target]
                found[where] = (where, drug)
        return list(found.values())

    def map_one(self, ident: str, entries: list[Entry], today: date) -> BulkPatient | None:
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [_entry(resource) for _, resource in entries],
        }
        try:
            mapped = map_bundle(bundle, self.features, today)
        except InvalidInput as exc:
            for issue in exc.issues:
                where, message = _located(issue, [w for w, _ in entries])
                self.problem(where, ident, issue.code, message)
            return None
        # Derived as the API derives after mapping. A screening reads `given`: its SQL stage
        # derives the same values again, and flags a value given that one implied replaces.
        values = derive(mapped.values, self.features)
        return BulkPatient(ident, entries[0][0], values, mapped.skipped, dict(mapped.values))


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BulkError(f"{where}: not UTF-8 text ({exc.reason})") from None


def _owner(resource: Mapping[str, Any]) -> str | None:
    """The id of the patient a resource is about: a Patient's own, or the one its `subject`
    or (Immunization, AllergyIntolerance, ...) `patient` names; None when it names none."""
    if resource.get("resourceType") == "Patient":
        ident = resource.get("id")
        return ident if isinstance(ident, str) and ident else None
    for key in ("subject", "patient"):
        reference = resource.get(key)
        target = reference.get("reference") if isinstance(reference, dict) else None
        match = _PATIENT.match(target) if isinstance(target, str) else None
        if match:
            return match[1]
    return None


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    """A bundle entry. A Medication gets the reference records name it by as its fullUrl,
    so `urn:uuid:` references resolve as `Medication/<id>` ones do."""
    if resource.get("resourceType") == "Medication":
        return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
    return {"resource": resource}


def _located(issue: InputIssue, places: list[str]) -> tuple[str, str]:
    """`fhir.entry[3].resource.valueQuantity` -> (the file:line entry 3 came from,
    `valueQuantity: <message>`). An issue of the whole bundle is placed at the Patient."""
    match = _ENTRY.match(issue.field)
    if match is None or int(match[1]) >= len(places):
        return places[0], issue.message
    rest = match[2]
    return places[int(match[1])], f"{rest}: {issue.message}" if rest else issue.message
