"""The FHIR searches that fetch exactly what the rules can use, derived from the catalogue.

They serve twice: as CDS Hooks prefetch templates (the EHR runs them before calling) and as the
queries the service runs itself against `fhirServer` for what was not prefetched. One search per
observed feature, newest final value first and only one of it, because the mapping uses only
the latest final value (`_count=1` keeps a long record from sending years of results); one
search for every coded diagnosis, since a refuted Condition must be seen to contradict a
confirmed one.

Medication records are searched by patient alone, with the Medications they refer to
(`_include`), and filtered by code here: a cumulative dose summed from the records a
narrower search happened to find would be too low, and too low is the unsafe side. Search by
`code` misses records that name the drug through a Medication reference, and chained
searches (`medication.code`) are not something every EHR supports; patient + `_include` is
what US Core asks servers to support. Orders count only when completed, so only those are
asked for; administrations and statements of every status are needed, since one in progress
makes a total unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.fhir.medication import DERIVED

PATIENT = "{{context.patientId}}"
# Observation.status values the mapping uses (app.fhir.mapping.FINAL), as a search parameter.
FINAL_STATUSES = "final,amended,corrected"


@dataclass(frozen=True, slots=True)
class Search:
    key: str  # the prefetch key
    query: str  # relative to the FHIR base, with `{{context.patientId}}` to fill in


def _codes(features: list[Feature]) -> str:
    return ",".join(f"{c.system}|{c.code}" for f in features for c in f.spec.codes)


def searches(features: Mapping[str, Feature]) -> list[Search]:
    """Every search the rules need; keys are stable (`patient`, `conditions`, `obs-<feature>`)."""
    ordered = sorted(features.values(), key=lambda f: f.id)
    coded = [f for f in ordered if f.spec.codes and f.id not in DERIVED]
    diagnoses = [f for f in coded if f.type is FeatureType.BOOLEAN]
    observed = [f for f in coded if f.type is not FeatureType.BOOLEAN]
    found = [Search("patient", f"Patient/{PATIENT}")]
    if diagnoses:
        found.append(Search("conditions", f"Condition?patient={PATIENT}&code={_codes(diagnoses)}"))
    found += [
        Search(
            f"obs-{f.id}",
            f"Observation?patient={PATIENT}&code={_codes([f])}"
            f"&status={FINAL_STATUSES}&_sort=-date&_count=1",
        )
        for f in observed
    ]
    if any(f.id in DERIVED and f.spec.codes for f in ordered):
        found += [
            Search(f"medications-{kind[len('Medication') :].lower()}", query)
            for kind, query in _MEDICATION_SEARCHES
        ]
    return found


_MEDICATION_SEARCHES = [
    (kind, f"{kind}?patient={PATIENT}{extra}&_include={kind}:medication")
    for kind, extra in (
        ("MedicationAdministration", ""),
        ("MedicationStatement", ""),
        ("MedicationRequest", "&status=completed"),
    )
]


def fill(query: str, patient_id: str) -> str:
    """A template with the patient's id in place (the only token the templates use)."""
    return query.replace(PATIENT, patient_id)
