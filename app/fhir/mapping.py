"""FHIR R4 Bundle -> features, driven by the codes in the feature catalogue (never display text).

- Age in completed years at the evaluation date, from Patient.birthDate; sex from gender.
- A patient recorded as deceased on or before the evaluation date is refused (issue code
  `deceased`): no therapy can be started, and a registry screening must not count them.
- A boolean feature is true when an active, confirmed Condition carries one of its codes. With
  none, it is unknown, except for features whose catalogue entry says `absent_in_record:
  "false"` (a diagnosis the problem list would carry). A confirmed and a refuted Condition for
  the same feature contradict each other: the feature stays unknown and the conflict is listed.
- A number feature takes the latest final Observation within its freshness window
  (`max_age_days`), converted with UCUM by the same code as the API's input; an LVEF from five
  years ago does not count. Skipped observations are listed with the reason.
- Prior cyclophosphamide (cumulative IV dose, courses, months) and exposure to an alkylating
  agent come from MedicationAdministration, MedicationStatement and MedicationRequest
  records (`app.fhir.medication`, which says when a total is known and when it is not).

Each value carries its provenance (resource type/id and date), which the trace shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from app.engine.inputs import FeatureValue, InputIssue, InvalidInput, Provenance, normalise
from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.fhir import medication
from app.fhir.bundle import CodeKey, Note, Resources, as_date, minimise, read_bundle

FINAL = {"final", "amended", "corrected"}
ACTIVE = {"active", "recurrence", "relapse"}


__all__ = ["Mapped", "Note", "code_index", "map_bundle"]


@dataclass
class Mapped:
    values: dict[str, FeatureValue] = field(default_factory=dict)
    skipped: list[Note] = field(default_factory=list)
    patient_id: str | None = None  # `Patient/<id>`: to pseudonymise, never to store
    minimised: dict[str, Any] = field(default_factory=dict)  # what the audit trail keeps


def code_index(features: Mapping[str, Feature]) -> dict[CodeKey, Feature]:
    """(system, code) -> the feature a Condition or Observation with that code gives. Features
    derived from medication records are not in it: several share one drug's codes."""
    return {
        (c.system, c.code): f
        for f in features.values()
        if f.id not in medication.DERIVED
        for c in f.spec.codes
    }


def map_bundle(data: Any, features: Mapping[str, Feature], today: date) -> Mapped:
    """Raise InvalidInput (fields under `fhir.`) on a bad bundle or an unusable value."""
    index = code_index(features)
    known = frozenset(index) | medication.codes_of_derived(features)
    resources = read_bundle(data, known)
    mapper = _Mapper(features, index, today)
    mapper.patient(resources)
    mapper.conditions(resources)
    mapper.observations(resources)
    mapper.medications(resources)
    if mapper.issues:
        raise InvalidInput(mapper.issues)
    mapper.mapped.minimised = minimise(data, known)
    return mapper.mapped


class _Mapper:
    def __init__(
        self, features: Mapping[str, Feature], index: Mapping[CodeKey, Feature], today: date
    ) -> None:
        self.features, self.index, self.today = features, index, today
        self.mapped = Mapped()
        self.issues: list[InputIssue] = []

    def convert(self, feature: Feature, given: Any, path: str, provenance: Provenance) -> None:
        """Normalise exactly as API input is (units, ranges); a bad value is an issue."""
        try:
            values = normalise({feature.id: given}, {feature.id: feature}, provenance=provenance)
        except InvalidInput as exc:
            self.issues += [
                InputIssue(path, i.code, f"{feature.id}: {i.message}") for i in exc.issues
            ]
            return
        self.mapped.values[feature.id] = values[feature.id]

    def features_of(self, resource: Condition | Observation) -> list[Feature]:
        codings = resource.code.coding if resource.code and resource.code.coding else []
        keys = [(str(c.system), str(c.code)) for c in codings]
        found = {self.index[k].id: self.index[k] for k in keys if k in self.index}
        return [found[k] for k in sorted(found)]

    def patient(self, resources: Resources) -> None:
        if resources.patient is None:
            return
        path, patient = resources.patient
        self.mapped.patient_id = f"Patient/{patient.id}" if patient.id else None
        # "Patient", not its id: the trace and the record must not carry an identifier.
        provenance = Provenance("fhir", "Patient", None)
        self.deceased(path, patient)
        birth = as_date(patient.birthDate)
        if birth is not None and "age_years" in self.features:
            if birth > self.today:
                self.issues.append(
                    InputIssue(f"{path}.birthDate", "future", "birthDate is in the future")
                )
            else:
                today = self.today
                age = (
                    today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
                )
                self.convert(self.features["age_years"], age, f"{path}.birthDate", provenance)
        if patient.gender and "sex" in self.features:
            self.convert(self.features["sex"], patient.gender, f"{path}.gender", provenance)

    def deceased(self, path: str, patient: Patient) -> None:
        """Refused like an impossible value, so that no verdict and no screening row comes of
        a dead patient: the age (counted to the evaluation date) and every freshness window
        would be wrong too. A death after the evaluation date (a screening `as_of` an earlier day)
        is not one yet. The message gives no date: a date of death identifies."""
        died = as_date(patient.deceasedDateTime)
        if patient.deceasedBoolean is True:
            field = f"{path}.deceasedBoolean"
        elif died is not None and died <= self.today:
            field = f"{path}.deceasedDateTime"
        else:
            return
        message = "the patient is recorded as deceased; eligibility is not evaluated"
        self.issues.append(InputIssue(field, "deceased", message))

    def conditions(self, resources: Resources) -> None:
        confirmed: dict[str, tuple[str, Condition]] = {}
        refuted: dict[str, str] = {}
        for _, condition in resources.conditions:
            reference = f"Condition/{condition.id}"
            verification = _status(condition.verificationStatus)
            for feature in self.features_of(condition):
                if feature.type is not FeatureType.BOOLEAN:
                    continue
                if verification & {"refuted", "entered-in-error"}:
                    refuted[feature.id] = reference
                elif ACTIVE & _status(condition.clinicalStatus) and "confirmed" in verification:
                    confirmed.setdefault(feature.id, (reference, condition))
        for feature_id, (reference, condition) in confirmed.items():
            if feature_id in refuted:
                note = f"contradicted by {refuted[feature_id]} (refuted)"
                self.mapped.skipped.append(Note(reference, feature_id, note))
                continue
            when = _iso(condition.onsetDateTime or condition.recordedDate)
            source = Provenance("fhir", reference, when)
            self.mapped.values[feature_id] = FeatureValue(True, None, True, None, source)
        if resources.patient is not None:  # a patient's record: some absences mean "no"
            self.absent(set(confirmed) | set(refuted))

    def absent(self, recorded: set[str]) -> None:
        source = Provenance("fhir", "no active, confirmed Condition in the record", None)
        for feature in self.features.values():
            if feature.id not in recorded and feature.spec.absent_in_record == "false":
                self.mapped.values[feature.id] = FeatureValue(False, None, False, None, source)

    def observations(self, resources: Resources) -> None:
        latest: dict[str, date] = {}
        for path, observation in resources.observations:
            reference = f"Observation/{observation.id}"
            when = _observation_date(observation)
            for feature in self.features_of(observation):
                reason = _unusable(observation, feature, when, self.today)
                if reason:
                    self.mapped.skipped.append(Note(reference, feature.id, reason))
                    continue
                day = when or date.min
                if feature.id in latest and day <= latest[feature.id]:
                    continue  # an older (or same-day) value of a feature already found
                latest[feature.id] = day
                provenance = Provenance("fhir", reference, when.isoformat() if when else None)
                self.convert(feature, _given(observation), f"{path}.value[x]", provenance)

    def medications(self, resources: Resources) -> None:
        records = [
            medication.read_record(path, resource, codes, self.today)
            for path, resource, codes in resources.medications
        ]
        outcome = medication.derive(records, self.features, resources.unresolved)
        self.mapped.skipped += outcome.notes
        self.issues += outcome.issues
        for derived in outcome.values:
            self.convert(derived.feature, derived.given, derived.path, derived.provenance)


def _status(concept: Any) -> set[str]:
    codings = getattr(concept, "coding", None) or []
    return {str(c.code) for c in codings if c.code}


def _observation_date(observation: Observation) -> date | None:
    period = observation.effectivePeriod
    return as_date(
        observation.effectiveDateTime or (period.start if period else None) or observation.issued
    )


def _unusable(
    observation: Observation, feature: Feature, when: date | None, today: date
) -> str | None:
    if observation.status not in FINAL:
        return f"status {observation.status!r} is not final"
    if _given(observation) is None:
        return "no value (" + (_text(observation.dataAbsentReason) or "none given") + ")"
    if when is not None and when > today:
        return f"dated {when.isoformat()}, after the evaluation date"
    limit = feature.spec.max_age_days
    if limit is not None:
        if when is None:
            return "no date, so its age cannot be judged"
        if (today - when).days > limit:
            return f"{(today - when).days} days old; {feature.id} counts for {limit} days"
    return None


def _given(observation: Observation) -> Any:
    quantity = observation.valueQuantity
    if quantity is not None and quantity.value is not None:
        unit = quantity.code or quantity.unit
        number = float(quantity.value)
        return {"value": number, "unit": unit} if unit else number
    for value in (observation.valueInteger, observation.valueBoolean):
        if value is not None:
            return value
    return None


def _text(concept: Any) -> str | None:
    if concept is None:
        return None
    codings = getattr(concept, "coding", None) or []
    return getattr(concept, "text", None) or next((str(c.code) for c in codings if c.code), None)


def _iso(value: Any) -> str | None:
    day = as_date(value)
    return day.isoformat() if day else None
