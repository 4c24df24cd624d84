"""Read a FHIR R4 Bundle: check its envelope, keep the resources the rules can use, and validate
those with the FHIR R4B models of fhir.resources.

Only what can feed a feature is validated: the Patient, and Conditions and Observations whose
codes are in the feature catalogue. A Synthea record is mostly claims, encounters and
observations no rule uses; validating them all took 0.8 s for 1.5 MB and would judge data we
never read. Every problem is reported at once, each naming its place in the bundle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from app.engine.inputs import InputIssue, InvalidInput

CodeKey = tuple[str, str]  # (system, code)


@dataclass
class Resources:
    """The usable resources of one bundle, each with its path (`fhir.entry[i].resource`)."""

    patient: tuple[str, Patient] | None = None
    conditions: list[tuple[str, Condition]] = field(default_factory=list)
    observations: list[tuple[str, Observation]] = field(default_factory=list)


def codes_of(resource: Mapping[str, Any]) -> Iterable[CodeKey]:
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict):
            yield str(coding.get("system")), str(coding.get("code"))


def usable(resource: Mapping[str, Any], known: frozenset[CodeKey]) -> bool:
    """Can a feature come from this resource: the Patient, or a Condition or Observation
    carrying a catalogue code. Decides both what is validated and what the record keeps."""
    kind = resource.get("resourceType")
    if kind == "Patient":
        return True
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
    for i, entry in enumerate(entries):
        path = f"{prefix}.entry[{i}].resource"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            issues.append(InputIssue(path, "missing", "each entry needs a resource object"))
            continue
        _take(resource, path, known, found, issues)
    if issues:
        raise InvalidInput(issues)
    return found


def _take(
    resource: dict[str, Any],
    path: str,
    known: frozenset[CodeKey],
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
    if not usable(resource, known):
        return  # no feature can come from it
    try:
        parsed = model.model_validate(resource)
    except ValidationError as exc:
        for error in exc.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in error["loc"] if p != "__root__")
            issues.append(InputIssue(f"{path}.{where}".rstrip("."), "fhir", str(error["msg"])))
        return
    if isinstance(parsed, Patient):
        if found.patient is not None:
            issues.append(InputIssue(path, "two_patients", "a bundle describes one patient"))
        found.patient = (path, parsed)
    elif isinstance(parsed, Condition):
        found.conditions.append((path, parsed))
    elif isinstance(parsed, Observation):
        found.observations.append((path, parsed))


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
}


def minimise(data: dict[str, Any], known: frozenset[CodeKey]) -> dict[str, Any]:
    """The bundle as the audit trail keeps it: only the resources a feature can come from,
    only the elements the mapping reads. Call it on a bundle `read_bundle` accepted."""
    entries = []
    for entry in data.get("entry", []):
        resource = entry["resource"]
        if not usable(resource, known):
            continue
        kind = resource["resourceType"]
        kept = {k: resource[k] for k in KEPT[kind] if k in resource}
        if kind == "Condition":
            kept["subject"] = {"display": "the patient"}  # required in R4; no reference kept
        entries.append({"resource": kept})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
