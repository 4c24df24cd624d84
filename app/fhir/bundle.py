"""Read a FHIR R4 Bundle: check its envelope, keep the resources the rules can use, and validate
those with the FHIR R4B models of fhir.resources.

Only what can feed a feature is validated: the Patient, Conditions and Observations whose codes
are in the feature catalogue, and MedicationAdministrations, MedicationStatements and
MedicationRequests whose medication is. A Synthea record is mostly claims, encounters and
observations no rule uses; validating them all took 0.8 s for 1.5 MB and would judge data we
never read. Every problem is reported at once, each naming its place in the bundle.

A medication record names its drug inline (`medicationCodeableConcept`) or by reference to a
Medication resource, contained in the record (`#id`) or elsewhere in the bundle (its `fullUrl`
or `Medication/<id>`). References are resolved here, once, so the mapping and the minimised
bundle the audit trail keeps both see the drug's code inline. A reference to a Medication that
is not in the bundle cannot be identified; it is listed so the mapping can say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeAlias

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from app.engine.inputs import InputIssue, InvalidInput

CodeKey = tuple[str, str]  # (system, code)
MedicationUse: TypeAlias = MedicationAdministration | MedicationStatement | MedicationRequest
MEDICATION_USES = ("MedicationAdministration", "MedicationStatement", "MedicationRequest")


@dataclass(frozen=True, slots=True)
class Note:
    """Something in the bundle that was not used, and why."""

    resource: str
    feature: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "feature": self.feature, "reason": self.reason}


@dataclass
class Resources:
    """The usable resources of one bundle, each with its path (`fhir.entry[i].resource`)."""

    patient: tuple[str, Patient] | None = None
    conditions: list[tuple[str, Condition]] = field(default_factory=list)
    observations: list[tuple[str, Observation]] = field(default_factory=list)
    # each with the codes of its drug, resolved from a reference when it has one
    medications: list[tuple[str, MedicationUse, frozenset[CodeKey]]] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # `Type/id` whose drug is not here


def as_date(value: Any) -> date | None:
    """The day of a FHIR date or dateTime; None for none, or a partial date (`2024-05`)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        try:
            return date.fromisoformat(value[:10]) if len(value) >= 10 else None
        except ValueError:
            return None
    return None


def _codings(concept: Any) -> Iterable[CodeKey]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict):
            yield str(coding.get("system")), str(coding.get("code"))


def codes_of(resource: Mapping[str, Any]) -> Iterable[CodeKey]:
    return _codings(resource.get("code"))


def bundled_medications(data: Mapping[str, Any]) -> dict[str, Any]:
    """The code of each Medication resource in the bundle, under every reference naming it."""
    found: dict[str, Any] = {}
    entries = data.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Medication":
            continue
        if isinstance(entry.get("fullUrl"), str):
            found[entry["fullUrl"]] = resource.get("code")
        if isinstance(resource.get("id"), str):
            found[f"Medication/{resource['id']}"] = resource.get("code")
    return found


def medication_concept(resource: Mapping[str, Any], bundled: Mapping[str, Any]) -> Any:
    """The drug of a medication record: inline, or from the Medication it references (None
    when that Medication is not in the record or the bundle)."""
    if "medicationCodeableConcept" in resource:
        return resource["medicationCodeableConcept"]
    reference = resource.get("medicationReference")
    target = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(target, str):
        return None
    if not target.startswith("#"):
        return bundled.get(target)
    contained = resource.get("contained")
    for inner in contained if isinstance(contained, list) else []:
        is_medication = isinstance(inner, dict) and inner.get("resourceType") == "Medication"
        if is_medication and inner.get("id") == target[1:]:
            return inner.get("code")
    return None


def usable(
    resource: Mapping[str, Any], known: frozenset[CodeKey], bundled: Mapping[str, Any]
) -> bool:
    """Can a feature come from this resource: the Patient, or a Condition, Observation or
    medication record carrying a catalogue code. Decides both what is validated and what the
    record keeps."""
    kind = resource.get("resourceType")
    if kind == "Patient":
        return True
    if kind in MEDICATION_USES:
        codes = _codings(medication_concept(resource, bundled))
        return bool(known.intersection(codes))
    return kind in ("Condition", "Observation") and bool(known.intersection(codes_of(resource)))


def read_bundle(data: Any, known: frozenset[CodeKey], prefix: str = "fhir") -> Resources:
    """Raise InvalidInput naming every problem; return the usable resources."""
    issues: list[InputIssue] = []
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise InvalidInput([InputIssue(prefix, "not_a_bundle", "expected a FHIR Bundle resource")])
    entries = data.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidInput([InputIssue(f"{prefix}.entry", "wrong_type", "expected an array")])
    found = Resources()
    bundled = bundled_medications(data)
    for i, entry in enumerate(entries):
        path = f"{prefix}.entry[{i}].resource"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            issues.append(InputIssue(path, "missing", "each entry needs a resource object"))
            continue
        _take(resource, path, known, bundled, found=found, issues=issues)
    if issues:
        raise InvalidInput(issues)
    return found


def _take(
    resource: dict[str, Any],
    path: str,
    known: frozenset[CodeKey],
    bundled: Mapping[str, Any],
    *,
    found: Resources,
    issues: list[InputIssue],
) -> None:
    kind = resource.get("resourceType")
    try:
        model = get_fhir_model_class(str(kind))
    except (ValueError, KeyError):
        issues.append(
            InputIssue(
                f"{path}.resourceType", "unknown_type", f"{kind!r} is not a FHIR R4 resource"
            )
        )
        return
    drug = medication_concept(resource, bundled) if kind in MEDICATION_USES else None
    if kind in MEDICATION_USES and drug is None and "medicationReference" in resource:
        ident = resource.get("id")
        found.unresolved.append(f"{kind}/{ident}" if isinstance(ident, str) else path)
    if not usable(resource, known, bundled):
        return  # no feature can come from it
    try:
        parsed = model.model_validate(resource)
    except ValidationError as exc:
        for error in exc.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in error["loc"] if p != "__root__")
            issues.append(InputIssue(f"{path}.{where}".rstrip("."), "fhir", str(error["msg"])))
        return
    _file(parsed, path, drug, found, issues)


def _file(parsed: Any, path: str, drug: Any, found: Resources, issues: list[InputIssue]) -> None:
    if isinstance(parsed, Patient):
        if found.patient is not None:
            issues.append(InputIssue(path, "two_patients", "a bundle describes one patient"))
        found.patient = (path, parsed)
    elif isinstance(parsed, Condition):
        found.conditions.append((path, parsed))
    elif isinstance(parsed, Observation):
        found.observations.append((path, parsed))
    elif isinstance(parsed, MedicationAdministration | MedicationStatement | MedicationRequest):
        found.medications.append((path, parsed, frozenset(_codings(drug))))


# What the mapping reads, per resource type: all a replay needs, and nothing that names or
# locates the patient (names, identifiers, narrative, notes, references to other resources).
KEPT = {
    "Patient": ("resourceType", "birthDate", "gender"),
    "Condition": (
        "resourceType",
        "id",
        "clinicalStatus",
        "verificationStatus",
        "code",
        "onsetDateTime",
        "recordedDate",
    ),
    "Observation": (
        "resourceType",
        "id",
        "status",
        "code",
        "effectiveDateTime",
        "effectivePeriod",
        "issued",
        "valueQuantity",
        "valueInteger",
        "valueBoolean",
        "dataAbsentReason",
    ),
    "MedicationAdministration": (
        "resourceType",
        "id",
        "status",
        "effectiveDateTime",
        "effectivePeriod",
        "dosage",
    ),
    "MedicationStatement": (
        "resourceType",
        "id",
        "status",
        "effectiveDateTime",
        "effectivePeriod",
        "dosage",
    ),
    "MedicationRequest": (
        "resourceType",
        "id",
        "status",
        "intent",
        "doNotPerform",
        "authoredOn",
        "dosageInstruction",
    ),
}
# Inside a dosage, only route, dose and timing: its free text may name the people involved.
DOSAGE_KEPT = ("route", "dose", "doseAndRate", "timing")
# Required in R4 but not read: a placeholder instead of a reference to the patient.
SUBJECT = {"display": "the patient"}


def minimise(data: dict[str, Any], known: frozenset[CodeKey]) -> dict[str, Any]:
    """The bundle as the audit trail keeps it: only the resources a feature can come from,
    only the elements the mapping reads. Call it on a bundle `read_bundle` accepted."""
    bundled = bundled_medications(data)
    entries = []
    for entry in data.get("entry", []):
        resource = entry["resource"]
        if usable(resource, known, bundled):
            entries.append({"resource": _minimal(resource, bundled)})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _minimal(resource: dict[str, Any], bundled: Mapping[str, Any]) -> dict[str, Any]:
    kind = resource["resourceType"]
    kept = {k: resource[k] for k in KEPT[kind] if k in resource}
    if kind == "Condition":
        kept["subject"] = SUBJECT
    if kind in MEDICATION_USES:
        kept["subject"] = SUBJECT
        kept["medicationCodeableConcept"] = medication_concept(resource, bundled)  # inline
        for key in ("dosage", "dosageInstruction"):
            if key in kept:
                kept[key] = _dosage(kept[key])
    return kept


def _dosage(dosage: Any) -> Any:
    if isinstance(dosage, list):
        return [_dosage(d) for d in dosage]
    return {k: v for k, v in dosage.items() if k in DOSAGE_KEPT}
