"""The hand-written FHIR fixtures, optionally moved in time: the SSc patient's observations
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


def ssc_bundle(on: date = WRITTEN_ON) -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads((FIXTURES / "ssc-patient.json").read_text())
    shift = timedelta(days=(on - WRITTEN_ON).days)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for key in DATED:
            if key in resource:
                resource[key] = (date.fromisoformat(resource[key][:10]) + shift).isoformat()
    return bundle


def today() -> date:
    return datetime.now(UTC).date()


def resource(bundle: dict[str, Any], resource_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["id"] == resource_id
    )
    return found
