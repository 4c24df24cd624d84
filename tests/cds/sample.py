"""The sample CDS Hooks request in docs/cds-hooks/: a `patient-view` call for a Synthea patient
with every prefetch key the discovery document declares, each filled by running its template
against the patient's record as an EHR's FHIR server would (tests/cds/fhir_server.py's searches).

Generated, never edited by hand: tests/cds/test_sample.py holds the committed file to what this
makes from the discovery document, so a catalogue change that adds, drops or changes a prefetch
key fails until the sample is made again:

    .venv/bin/python -m tests.cds.sample

Synthea records hold no SSc or SLE (tests/fixtures/fhir/README.md), and Eligo gives no card for
a patient without the indication, so the sample adds one Condition to the record: a confirmed
SSc diagnosis, tagged as added. Everything else is the Synthea record as it is (its
observations end in 2021, so most of them are too old to count today: the cards then say what
to measure).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from app.engine.load import load_rules
from app.services.cds_hooks import discovery
from tests.cds.fhir_server import FhirStore, included, search
from tests.conftest import ROOT, SHIPPED_RULES
from tests.fhir.bundles import FIXTURES

SAMPLE = ROOT / "docs" / "cds-hooks" / "patient-view.json"
SERVICE = "eligo-patient-view"
# The one Synthea patient of the fixtures who is alive (a deceased patient gets a 422).
SOURCE = FIXTURES / "synthea" / "Martina_Murazik_9e4fc9b4-aaad-4bcf-a24a-d665f3aa99ec.json"
PATIENT_TEMPLATE = "{{context.patientId}}"
ADDED_TAG = {
    "system": "https://eligo.example/fhir/CodeSystem/eligo-sample",
    "code": "added-to-synthea",
    "display": "Added to the Synthea record for Eligo's sample: Synthea holds no SSc",
}


def _ssc_condition(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "eligo-sample-ssc",
        "meta": {"tag": [ADDED_TAG]},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "89155008",
                    "display": "Systemic sclerosis",
                }
            ],
            "text": "Systemic sclerosis",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": "2019-06-03",
    }


def _store() -> tuple[FhirStore, str]:
    bundle = json.loads(SOURCE.read_text())
    store = FhirStore()
    store.load(bundle)
    (patient,) = store.resources["Patient"]
    store.resources.setdefault("Condition", []).append(_ssc_condition(patient["id"]))
    return store, str(patient["id"])


def _run(store: FhirStore, query: str) -> dict[str, Any]:
    """A prefetch template's answer: a read returns the resource, a search a searchset."""
    path, _, params_text = query.partition("?")
    kind, _, ident = path.partition("/")
    if ident:
        (found,) = [r for r in store.resources.get(kind, []) if r["id"] == ident]
        return found
    params = parse_qs(params_text)
    matches = search(store, kind, params)
    entries = [{"resource": r, "search": {"mode": "match"}} for r in matches]
    entries += [
        {"resource": r, "search": {"mode": "include"}} for r in included(store, matches, params)
    ]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(matches)}
    if entries:  # FHIR: no empty arrays
        bundle["entry"] = entries
    return bundle


def sample_request(templates: Mapping[str, str]) -> dict[str, Any]:
    """The hook call, its prefetch filled from the templates of the discovery document."""
    store, patient_id = _store()
    return {
        "hook": "patient-view",
        "hookInstance": "6f1d2c4e-8a7b-4c1d-9e2f-3a4b5c6d7e8f",
        "context": {"userId": "Practitioner/example", "patientId": patient_id},
        "prefetch": {
            key: _run(store, query.replace(PATIENT_TEMPLATE, patient_id))
            for key, query in templates.items()
        },
    }


def render(request: Mapping[str, Any]) -> str:
    return json.dumps(request, indent=2, ensure_ascii=False) + "\n"


def templates_of(discovery: Mapping[str, Any]) -> dict[str, str]:
    service = next(s for s in discovery["services"] if s["id"] == SERVICE)
    found: dict[str, str] = service["prefetch"]
    return found


def main() -> None:
    templates = templates_of(discovery(load_rules(SHIPPED_RULES)))
    SAMPLE.parent.mkdir(parents=True, exist_ok=True)
    SAMPLE.write_text(render(sample_request(templates)))
    print(f"wrote {Path(SAMPLE).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
