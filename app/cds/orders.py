"""order-select: what the selected orders would do to the patient's eligibility if given.

Prior cyclophosphamide is a criterion of several protocols (a cumulative dose above a limit
excludes), so ordering more of it can rule a patient out of HSCT. A selected draft
MedicationRequest of a drug the catalogue derives features from becomes, for a what-if
evaluation, one completed MedicationAdministration dated today with the order's route and
dose: the record as it would stand once the dose is given. An order without a single dose
leaves the totals unknown, as any record without one does. Pure: FHIR JSON in and out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from app.fhir.bundle import CodeKey, codes_of


def selected_orders(
    draft_orders: dict[str, Any] | None, selections: Iterable[str]
) -> list[dict[str, Any]]:
    """The draft orders the clinician selected (`Type/id` in `selections`)."""
    wanted = set(selections)
    entries = (draft_orders or {}).get("entry") or []
    resources = [e.get("resource") for e in entries if isinstance(e, dict)]
    return [
        r
        for r in resources
        if isinstance(r, dict) and f"{r.get('resourceType')}/{r.get('id')}" in wanted
    ]


def _medication(order: dict[str, Any]) -> dict[str, Any]:
    concept = order.get("medicationCodeableConcept")
    return concept if isinstance(concept, dict) else {}


def of_tracked_drugs(
    orders: Iterable[dict[str, Any]], tracked: frozenset[CodeKey]
) -> list[dict[str, Any]]:
    """The MedicationRequests among `orders` for a drug features are derived from."""
    return [
        order
        for order in orders
        if order.get("resourceType") == "MedicationRequest"
        and tracked.intersection(codes_of({"code": _medication(order)}))
    ]


def as_given(
    orders: Iterable[dict[str, Any]], patient_id: str, today: date
) -> list[dict[str, Any]]:
    """Each order as one completed administration today."""
    return [_administration(order, _medication(order), patient_id, today) for order in orders]


def _administration(
    order: dict[str, Any], medication: dict[str, Any], patient_id: str, today: date
) -> dict[str, Any]:
    instructions = order.get("dosageInstruction") or [{}]
    instruction = instructions[0] if len(instructions) == 1 else {}
    rates = instruction.get("doseAndRate") or [{}]
    dosage: dict[str, Any] = {}
    if "route" in instruction:
        dosage["route"] = instruction["route"]
    if len(rates) == 1 and "doseQuantity" in rates[0]:
        dosage["dose"] = rates[0]["doseQuantity"]
    return {
        "resourceType": "MedicationAdministration",
        "id": f"what-if-{order.get('id', 'order')}",
        "status": "completed",
        "medicationCodeableConcept": medication,
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": today.isoformat(),
        "dosage": dosage,
    }
