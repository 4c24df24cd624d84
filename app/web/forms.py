"""The clinician form's fields <-> the engine's input contract.

Every field is optional: empty is unknown. A number is text the browser sends as typed; it is
read here (a decimal comma is accepted: many clinics write 1,5), and its unit comes from the
field's unit select. The engine then checks the ranges and converts units, exactly as for the
API, and its issues are put back next to the fields they belong to. What the clinician typed
is always sent back with the errors, so a bad value never loses the rest of the form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.engine.cells import DECIMAL_COMMA
from app.engine.inputs import InputIssue, InvalidInput, normalise
from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.engine.unit_names import ucum
from app.engine.words import number
from app.web.view import derivation, source

# Form fields that are not features: the disease the form was started with (its diagnosis is
# recorded by `record_diagnosis`) and the patient identifier (pseudonymised by the service).
RESERVED = frozenset({"csrf_token", "fhir_from", "disease", "patient_id"})
MAX_PATIENT_ID = 256  # characters, as the API's `patient_id`
UNIT_SUFFIX = ".unit"
BOOLEAN = {"yes": True, "no": False}
MAX_FIELD = 64  # characters: no plausible value is longer


@dataclass(slots=True)
class Entry:
    """One field as the form shows it: the text, the chosen unit, where a value came from.
    A derived value (`derived` says why) is shown beside its field, never in it: posted again
    as if typed, it would outlive a change to the value it was derived from."""

    value: str = ""
    unit: str | None = None
    source: str | None = None
    derived: str | None = None


@dataclass(slots=True)
class Parsed:
    features: dict[str, Any]  # the engine's input contract
    entries: dict[str, Entry]  # what to show again
    errors: dict[str, str]  # feature id (or "form") -> message


def _units(feature: Feature) -> list[str]:
    return ([feature.unit] if feature.unit else []) + list(feature.spec.other_units)


def parse(form: Iterable[tuple[str, str]], features: Mapping[str, Feature]) -> Parsed:
    """Form fields to features; problems a form can have before the engine sees it (text that
    is not a number, a unit the select does not offer, a field the catalogue does not have)."""
    fields = dict(form)
    parsed = Parsed({}, {}, {})
    for name in fields:
        base = name.removesuffix(UNIT_SUFFIX)
        if name not in RESERVED and base not in features:
            parsed.errors["form"] = f"unknown field {name[:MAX_FIELD]!r}: reload the form"
    for feature_id, feature in features.items():
        text = fields.get(feature_id, "").strip()
        # A unit as people write it (mmHg) is its UCUM code, as everywhere units are read.
        sent = fields.get(feature_id + UNIT_SUFFIX)
        unit = ucum(sent) if sent else feature.unit
        parsed.entries[feature_id] = Entry(text[: MAX_FIELD * 4], unit)
        if not text:
            continue
        try:
            parsed.features[feature_id] = _read(feature, text, unit)
        except ValueError as exc:
            parsed.errors[feature_id] = str(exc)
    return parsed


def record_diagnosis(parsed: Parsed, diagnosis: Iterable[str]) -> None:
    """The disease chosen first is the diagnosis recorded: its features are yes (the form
    does not ask them again)."""
    for feature_id in diagnosis:
        parsed.features[feature_id] = True
        parsed.entries[feature_id] = Entry("yes")
        parsed.errors.pop(feature_id, None)


def patient_id_error(text: str) -> str | None:
    return f"too long: at most {MAX_PATIENT_ID} characters" if len(text) > MAX_PATIENT_ID else None


def check(parsed: Parsed, features: Mapping[str, Feature]) -> None:
    """Add the engine's verdict on the values that were read (ranges, units), so a form with
    one unreadable value still reports every other problem at once."""
    try:
        normalise(parsed.features, features)
    except InvalidInput as exc:
        for key, message in engine_errors(exc.issues).items():
            parsed.errors.setdefault(key, message)


def _read(feature: Feature, text: str, unit: str | None) -> Any:
    if len(text) > MAX_FIELD:
        raise ValueError(f"too long: at most {MAX_FIELD} characters")
    if feature.type is FeatureType.BOOLEAN:
        if text not in BOOLEAN:
            raise ValueError("choose yes, no or unknown")
        return BOOLEAN[text]
    if feature.type is FeatureType.ENUM:
        if text not in (feature.spec.values or []):
            raise ValueError("choose one of the listed values")
        return text
    if unit not in _units(feature):
        raise ValueError("choose a unit from the list")
    value = _number(text)
    return value if unit == feature.unit else {"value": value, "unit": unit}


def _number(text: str) -> float:
    if DECIMAL_COMMA.match(text):
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number; write it like 52 or 1.5") from None
    if not math.isfinite(value):
        raise ValueError("enter a finite number")
    return value


def engine_errors(issues: Iterable[InputIssue]) -> dict[str, str]:
    """The engine's issues (`features.lvef_percent`, `features.pao2_mmhg.unit`) by feature id,
    in the clinician's words: the engine's message already names value, unit and range."""
    errors: dict[str, str] = {}
    for issue in issues:
        parts = issue.field.split(".")
        key = parts[1] if parts[0] == "features" and len(parts) > 1 else "fhir"
        message = issue.message if key != "fhir" else f"{issue.field}: {issue.message}"
        errors[key] = f"{errors[key]}; {message}" if key in errors else message
    return errors


def entries_of(normalised: Mapping[str, Any], features: Mapping[str, Feature]) -> dict[str, Entry]:
    """A recorded evaluation's values as the form shows them: as given when the form offers
    that unit (what the clinician typed), else in the canonical unit; FHIR values say where
    they came from, derived values why they hold."""
    entries: dict[str, Entry] = {}
    for key, stored in normalised.items():
        feature = features.get(key)
        if feature is None:
            continue  # a feature since removed from the catalogue
        provenance = stored.get("provenance")
        entries[key] = Entry(
            *_shown(feature, stored),
            source=source(provenance),
            derived=derivation(provenance, features),
        )
    return entries


def _shown(feature: Feature, stored: Mapping[str, Any]) -> tuple[str, str | None]:
    value, given = stored["value"], stored.get("given") or {}
    if feature.type is FeatureType.BOOLEAN:
        return ("yes" if value else "no"), None
    if feature.type is FeatureType.ENUM:
        return str(value), None
    if given.get("unit") in _units(feature) and isinstance(given.get("value"), int | float):
        return number(given["value"]), given["unit"]
    return number(value), feature.unit
