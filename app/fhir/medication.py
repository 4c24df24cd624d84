"""Medication records -> prior-treatment features: cumulative cyclophosphamide, and exposure to
an alkylating agent.

Which features come from medication records, and how, is fixed here by feature id (`DERIVED`:
the ids are the public contract of FEATURES.md, as `age_years` is for Patient.birthDate).
Which records feed a feature is decided by that feature's own `codes` in the catalogue, so a
drug later added to `prior_alkylating_or_irradiation` (melphalan, say) never counts as
cyclophosphamide.

Clinical safety first: a partial sum must never look complete.
- A record counts only when it documents the drug given: a completed MedicationAdministration;
  a completed, active or stopped MedicationStatement (stopped: taken, then halted, and its
  period says until when); a completed MedicationRequest (all it asked for was done). An order
  that is active, on hold or stopped is not evidence of a dose: what was given under it is
  documented by administrations or statements.
- Records saying the drug was not given (not-done, not-taken, intended, entered-in-error,
  cancelled, draft, doNotPerform) are skipped. Records leaving it open (an administration in
  progress, on hold, stopped part-way or of unknown status; a statement on hold or unknown)
  are skipped too, and make the totals of their route unknown: some may have been given.
- Route from the dosage: SNOMED CT 47625008 intravenous, 26643006 oral. A counted record of
  any other or no route makes the totals of both routes unknown.
- Cumulative IV dose: the sum of the doses of single administrations, each normalised by the
  catalogue's UCUM code into the feature's unit, so a dose per m² feeds only the g/m² total
  and an absolute dose only the g total. Any IV record without a usable dose, or describing a
  course rather than one dose, leaves the total unknown, never partial.
- Courses: the number of IV administrations, when every IV record is one administration.
- Months: the days covered by the periods taken (overlaps once), when every record of the
  route has a start and an end (an active statement runs to the evaluation date). A single
  administration does not say how long a course lasted (six monthly pulses are "6 months" to a
  protocol and 5 from first to last), so IV months never come from administrations.
- Adding up records of two kinds (administrations and statements or orders) could count a dose
  twice, so a mix leaves the dose totals and the courses unknown.
- A counted record makes `prior_alkylating_or_irradiation` true. No record leaves it, and every
  total, unknown: a bundle is not the whole history, so absence is never "no" or zero.
- A record dated after the evaluation date is skipped; a period running past it ends there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement

from app.engine.inputs import InputIssue, InvalidInput, Provenance, normalise
from app.engine.model import Feature
from app.engine.unit_names import words
from app.engine.units import round_significant
from app.fhir.bundle import CodeKey, MedicationUse, Note, as_date

SNOMED = "http://snomed.info/sct"


class Route(StrEnum):
    IV = "intravenous"
    ORAL = "oral"
    UNKNOWN = "unknown"


ROUTES = {(SNOMED, "47625008"): Route.IV, (SNOMED, "26643006"): Route.ORAL}


class Aggregate(StrEnum):
    GIVEN = "given"  # any record of the drug given: true
    DOSE = "dose"  # sum of single administrations' doses, in the feature's unit
    COURSES = "courses"  # number of single administrations
    MONTHS = "months"  # days covered by the periods taken


@dataclass(frozen=True, slots=True)
class Derivation:
    aggregate: Aggregate
    route: Route | None = None  # None: any route


DERIVED: Mapping[str, Derivation] = {
    "prior_cyclophosphamide_iv_g": Derivation(Aggregate.DOSE, Route.IV),
    "prior_cyclophosphamide_iv_g_m2": Derivation(Aggregate.DOSE, Route.IV),
    "prior_cyclophosphamide_iv_courses": Derivation(Aggregate.COURSES, Route.IV),
    "prior_cyclophosphamide_iv_months": Derivation(Aggregate.MONTHS, Route.IV),
    "prior_cyclophosphamide_oral_months": Derivation(Aggregate.MONTHS, Route.ORAL),
    "prior_alkylating_or_irradiation": Derivation(Aggregate.GIVEN),
}

# The statuses that document the drug given. An order (MedicationRequest) documents a dose
# only once completed, when all it asked for was done; an active one may be partly given, but
# what was given is documented by its administrations or a statement, not by the order.
COUNTED = {
    "MedicationAdministration": {"completed"},
    "MedicationStatement": {"completed", "active", "stopped"},
    "MedicationRequest": {"completed"},
}
# The statuses that say it was not given. Any other status of an administration or statement
# leaves it open (in progress, on hold, stopped part-way, unknown).
NOT_GIVEN = {
    "MedicationAdministration": {"not-done", "entered-in-error"},
    "MedicationStatement": {"not-taken", "entered-in-error", "intended"},
}


@dataclass(frozen=True, slots=True)
class Dose:
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Shape:
    """What a record says was taken: how, how much at once, and when."""

    route: Route
    dose: Dose | None  # of one administration, exact and with a unit
    dose_path: str  # where that dose is, or would be
    single: bool  # the record is exactly one administration
    start: date | None
    end: date | None  # the last day taken; None when not known


@dataclass(frozen=True, slots=True)
class Record:
    reference: str  # `MedicationAdministration/<id>`
    path: str
    kind: str
    codes: frozenset[CodeKey]
    counts: bool  # documents the drug given
    maybe: bool  # not counted, but some may have been given
    skip: str | None  # why it is not counted
    shape: Shape


@dataclass(frozen=True, slots=True)
class Derived:
    """A value for `_Mapper.convert`: normalised and range-checked like any other input."""

    feature: Feature
    given: Any
    path: str
    provenance: Provenance


@dataclass
class Outcome:
    values: list[Derived] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    issues: list[InputIssue] = field(default_factory=list)

    def note(self, records: Sequence[Record], feature: Feature, reason: str) -> None:
        self.notes.append(Note(named([r.reference for r in records]), feature.id, reason))


def named(items: Sequence[str]) -> str:
    """`A`, `A, B`, or `A and 4 more`: the records behind a value or a note."""
    unique = list(dict.fromkeys(items))
    return ", ".join(unique) if len(unique) <= 2 else f"{unique[0]} and {len(unique) - 1} more"


def codes_of_derived(features: Mapping[str, Feature]) -> frozenset[CodeKey]:
    derived = (f for f in features.values() if f.id in DERIVED)
    return frozenset((c.system, c.code) for f in derived for c in f.spec.codes)


# --- reading one record ---------------------------------------------------------------------


def read_record(
    path: str, resource: MedicationUse, codes: frozenset[CodeKey], today: date
) -> Record:
    kind = resource.get_resource_type()
    shape = _shape(path, resource, today)
    counts, maybe, skip = _standing(kind, resource, shape.start, today)
    reference = f"{kind}/{resource.id}" if resource.id else path
    return Record(reference, path, kind, codes, counts, maybe, skip, shape)


def _standing(
    kind: str, resource: MedicationUse, start: date | None, today: date
) -> tuple[bool, bool, str | None]:
    """(counts, maybe given, why not counted)."""
    status = str(resource.status)
    if getattr(resource, "doNotPerform", None):
        return False, False, "an order not to give it (doNotPerform)"
    if start is not None and start > today:
        return False, False, f"dated {start.isoformat()}, after the evaluation date"
    if status in COUNTED[kind]:
        return True, False, None
    if kind == "MedicationRequest":
        return False, False, f"status {status!r}: only a completed order documents doses given"
    if status in NOT_GIVEN[kind]:
        return False, False, f"status {status!r}: not given"
    return False, True, f"status {status!r}: not documented as given, though some may have been"


def _shape(path: str, resource: MedicationUse, today: date) -> Shape:
    if isinstance(resource, MedicationAdministration):
        shape = _administration(path, resource)
    elif isinstance(resource, MedicationStatement):
        shape = _statement(path, resource, today)
    else:
        shape = _request(path, resource)
    if shape.end is not None and shape.end > today:  # counted up to the evaluation date
        return Shape(shape.route, shape.dose, shape.dose_path, shape.single, shape.start, today)
    return shape


def _administration(path: str, record: MedicationAdministration) -> Shape:
    dosage = record.dosage
    period = record.effectivePeriod
    day = as_date(record.effectiveDateTime or (period.start if period else None))
    route = _route([dosage.route] if dosage else [])
    dose = _dose(dosage.dose if dosage else None)
    return Shape(route, dose, f"{path}.dosage.dose", True, day, day)


def _statement(path: str, record: MedicationStatement, today: date) -> Shape:
    dosages = record.dosage or []
    route = _route([d.route for d in dosages])
    dose, where = _dosage_dose(dosages, f"{path}.dosage")
    if record.effectiveDateTime is not None:
        day = as_date(record.effectiveDateTime)
        single = _one_dose(dosages, explicit=False)
        return Shape(route, dose, where, single, day, day if single else None)
    period = record.effectivePeriod
    start, end = (as_date(period.start), as_date(period.end)) if period else (None, None)
    if end is None and start is not None and record.status == "active":
        end = today  # still being taken
    return Shape(route, dose, where, False, start, end)


def _request(path: str, record: MedicationRequest) -> Shape:
    dosages = record.dosageInstruction or []
    route = _route([d.route for d in dosages])
    dose, where = _dosage_dose(dosages, f"{path}.dosageInstruction")
    timing = dosages[0].timing if len(dosages) == 1 else None
    bounds = timing.repeat.boundsPeriod if timing and timing.repeat else None
    start = as_date(bounds.start if bounds else None)
    if _one_dose(dosages, explicit=True):
        event = timing.event[0] if timing and timing.event else None
        day = as_date(event) or start or as_date(record.authoredOn)
        return Shape(route, dose, where, True, day, day)
    end = as_date(bounds.end if bounds else None)
    return Shape(route, dose, where, False, start or as_date(record.authoredOn), end)


def _one_dose(dosages: Sequence[Any], *, explicit: bool) -> bool:
    """One dosage describing one administration. A statement's single effective date says so
    unless its timing repeats; an order must say so itself (a count of 1, or one event)."""
    if len(dosages) != 1:
        return False
    timing = dosages[0].timing
    if timing is None:
        return not explicit
    if timing.code is not None:
        return False  # a named schedule (BID, Q4H) repeats
    repeat = timing.repeat
    once = repeat is None or (repeat.count == 1 and repeat.countMax in (None, 1))
    events = len(timing.event or [])
    return once and (events == 1 or (events == 0 and (repeat is not None or not explicit)))


def _dosage_dose(dosages: Sequence[Any], path: str) -> tuple[Dose | None, str]:
    rates = (dosages[0].doseAndRate or []) if len(dosages) == 1 else []
    quantities = [(i, r.doseQuantity) for i, r in enumerate(rates) if r.doseQuantity is not None]
    if len(quantities) != 1:
        return None, f"{path}[0].doseAndRate"
    i, quantity = quantities[0]
    return _dose(quantity), f"{path}[0].doseAndRate[{i}].doseQuantity"


def _dose(quantity: Any) -> Dose | None:
    """An exact dose with a unit; `< 500 mg` or a bare 500 cannot be added up."""
    if quantity is None or quantity.value is None or quantity.comparator is not None:
        return None
    unit = quantity.code or quantity.unit
    return Dose(float(quantity.value), str(unit)) if unit else None


def _route(concepts: Sequence[Any]) -> Route:
    found = {_route_of(c) for c in concepts}
    return found.pop() if len(found) == 1 else Route.UNKNOWN


def _route_of(concept: Any) -> Route:
    codings = getattr(concept, "coding", None) or []
    routes = {ROUTES[k] for k in ((str(c.system), str(c.code)) for c in codings) if k in ROUTES}
    return routes.pop() if len(routes) == 1 else Route.UNKNOWN


# --- deriving the features ------------------------------------------------------------------


def derive(
    records: Sequence[Record],
    features: Mapping[str, Feature],
    unresolved: Sequence[str],
) -> Outcome:
    outcome = Outcome()
    for feature_id, how in DERIVED.items():
        feature = features.get(feature_id)
        if feature is None or not feature.spec.codes:
            continue
        if unresolved and how.aggregate is not Aggregate.GIVEN:
            # A record whose drug cannot be identified may be this drug: a total without it
            # could be too low, which is the unsafe side, so there is no total.
            reason = (
                "its Medication is not in the bundle and may be this drug, so this total is unknown"
            )
            outcome.notes.append(Note(named(unresolved), feature.id, reason))
            continue
        codes = {(c.system, c.code) for c in feature.spec.codes}
        _derive(feature, how, [r for r in records if r.codes & codes], outcome)
        if unresolved:
            reason = "its Medication is not in the bundle, so whether it counts is not known"
            outcome.notes.append(Note(named(unresolved), feature.id, reason))
    return outcome


def _derive(feature: Feature, how: Derivation, mine: list[Record], out: Outcome) -> None:
    if how.aggregate is not Aggregate.GIVEN:
        mine = [r for r in mine if r.shape.route in (how.route, Route.UNKNOWN)]
    counted = [r for r in mine if r.counts]
    for record in mine:
        if record.skip and record.maybe and how.aggregate is not Aggregate.GIVEN:
            out.note([record], feature, f"{record.skip}, so this total is unknown")
        elif record.skip:
            out.note([record], feature, record.skip)
    if how.aggregate is Aggregate.GIVEN:
        if counted:
            out.values.append(Derived(feature, True, counted[-1].path, _provenance(counted)))
        return
    unrouted = [r for r in counted if r.shape.route is Route.UNKNOWN]
    for record in unrouted:
        reason = "route not recorded as intravenous or oral, so this total is unknown"
        out.note([record], feature, reason)
    if counted and not unrouted and not any(r.maybe for r in mine):
        AGGREGATES[how.aggregate](feature, counted, out)


def _dose_total(feature: Feature, counted: list[Record], out: Outcome) -> None:
    if not _summable(feature, counted, out):
        return
    doses: list[float] = []
    other_units: dict[str, list[Record]] = {}
    for record in counted:
        dose = record.shape.dose
        if dose is None:
            reason = f"no exact dose at {record.shape.dose_path}, so the cumulative dose is unknown"
            out.note([record], feature, reason)
            continue
        value = _in_feature_unit(feature, record, dose, out)
        if value is None:
            other_units.setdefault(dose.unit, []).append(record)
        else:
            doses.append(value)
    for unit, records in other_units.items():
        where = named([r.shape.dose_path for r in records])
        total_in = words(feature.unit)
        reason = f"dose in {unit!r} ({where}) cannot be added to a total in {total_in}"
        out.note(records, feature, reason + ", so the cumulative dose is unknown")
    if len(doses) == len(counted):
        total = round_significant(sum(doses))
        out.values.append(Derived(feature, total, counted[-1].path, _provenance(counted)))


def _in_feature_unit(feature: Feature, record: Record, dose: Dose, out: Outcome) -> float | None:
    """The dose in the feature's unit; None if its unit is of another kind (mg/m2 for a total
    in g, or mL); an implausible value is an input error, as for an Observation."""
    given = {"value": dose.value, "unit": dose.unit}
    try:
        value = normalise({feature.id: given}, {feature.id: feature})[feature.id].value
    except InvalidInput as exc:
        if all(i.code == "unit" for i in exc.issues):
            return None
        path = record.shape.dose_path
        out.issues += [InputIssue(path, i.code, f"{feature.id}: {i.message}") for i in exc.issues]
        return None
    return float(value)


def _courses(feature: Feature, counted: list[Record], out: Outcome) -> None:
    if _summable(feature, counted, out):
        out.values.append(Derived(feature, len(counted), counted[-1].path, _provenance(counted)))


def _summable(feature: Feature, counted: list[Record], out: Outcome) -> bool:
    kinds = sorted({r.kind for r in counted})
    if len(kinds) > 1:
        reason = f"recorded both as {' and '.join(kinds)}, which may describe the same doses"
        out.note(counted, feature, reason + ", so they are not added up")
        return False
    courses = [r for r in counted if not r.shape.single]
    if courses:
        reason = "not recorded as one administration (one date, one dose), so not added up"
        out.note(courses, feature, reason)
        return False
    return True


def _months(feature: Feature, counted: list[Record], out: Outcome) -> None:
    singles = [r for r in counted if r.shape.single]
    if singles:
        reason = "a single administration does not say how long the treatment lasted"
        out.note(singles, feature, reason + ", so the months of treatment are unknown")
        return
    spans: list[tuple[date, date]] = []
    for record in counted:
        start, end = record.shape.start, record.shape.end
        if start is None or end is None or end < start:
            out.note([record], feature, "no start and end of the period taken, so it is unknown")
        else:
            spans.append((start, end))
    if len(spans) == len(counted):
        days = {"value": _days_covered(spans), "unit": "d"}
        out.values.append(Derived(feature, days, counted[-1].path, _provenance(counted)))


def _days_covered(spans: list[tuple[date, date]]) -> int:
    """Days in the union of the periods, both ends included (a FHIR period includes its end)."""
    total, reached = 0, None  # reached: the last day counted so far
    for start, end in sorted(spans):
        first = start if reached is None else max(start, reached + timedelta(days=1))
        if end >= first:
            total += (end - first).days + 1
            reached = end
    return total


AGGREGATES = {Aggregate.DOSE: _dose_total, Aggregate.COURSES: _courses, Aggregate.MONTHS: _months}


def _provenance(records: Sequence[Record]) -> Provenance:
    days = [d for d in (r.shape.end or r.shape.start for r in records) if d is not None]
    latest = max(days).isoformat() if days else None
    return Provenance("fhir", named([r.reference for r in records]), latest)
