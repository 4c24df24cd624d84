"""The hand-written FHIR fixtures, optionally moved in time: the SSc and SLE patients' records
were written relative to 2026-11-22, and freshness windows are judged at the evaluation date,
so a test evaluating "now" shifts every date by the days since then."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "fhir"
WRITTEN_ON = date(2026, 11, 22)
DATED = ("effectiveDateTime", "onsetDateTime", "birthDate")
PERIODS = ("effectivePeriod",)
SYNTHEA = sorted((FIXTURES / "synthea").glob("*.json"))
SYNTHEA_ON = date(2021, 3, 1)  # the records end then


def patient_of(bundle: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    return found


def died_on(path: Path) -> date | None:
    """The day a Synthea record's patient died, if they have."""
    died = patient_of(json.loads(path.read_text())).get("deceasedDateTime")
    return date.fromisoformat(died[:10]) if died else None


def alive_on(path: Path) -> date:
    """When to map a Synthea record: the records' end, or the day before the patient died (a
    deceased patient is refused)."""
    died = died_on(path)
    return SYNTHEA_ON if died is None else min(SYNTHEA_ON, died - timedelta(days=1))


def ssc_bundle(on: date = WRITTEN_ON) -> dict[str, Any]:
    return _shifted("ssc-patient.json", on)


def sle_bundle(on: date = WRITTEN_ON) -> dict[str, Any]:
    return _shifted("sle-patient.json", on)


def _shifted(name: str, on: date) -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    shift = timedelta(days=(on - WRITTEN_ON).days)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for key in DATED:
            if key in resource:
                resource[key] = _moved(resource[key], shift)
        for key in PERIODS:
            for end in ("start", "end"):
                if end in resource.get(key, {}):
                    resource[key][end] = _moved(resource[key][end], shift)
    return bundle


def _moved(day: str, shift: timedelta) -> str:
    return (date.fromisoformat(day[:10]) + shift).isoformat()


def today() -> date:
    return datetime.now(UTC).date()


def resource(bundle: dict[str, Any], resource_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["id"] == resource_id
    )
    return found
