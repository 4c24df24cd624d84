"""Medication records to prior-cyclophosphamide features: an SLE patient of our own, and the
ways a record can leave a total unknown rather than partial."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.engine.evaluate import Status
from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.engine.run import evaluate_all, select
from app.fhir.mapping import Mapped, code_index, map_bundle
from tests.fhir.bundles import (
    SYNTHEA,
    WRITTEN_ON,
    alive_on,
    resource,
    sle_bundle,
    ssc_bundle,
)

TODAY = WRITTEN_ON
IV_G, IV_G_M2 = "prior_cyclophosphamide_iv_g", "prior_cyclophosphamide_iv_g_m2"
COURSES, IV_MONTHS = "prior_cyclophosphamide_iv_courses", "prior_cyclophosphamide_iv_months"
ORAL_MONTHS, ALKYLATING = "prior_cyclophosphamide_oral_months", "prior_alkylating_or_irradiation"
IV_TOTALS = (IV_G, IV_G_M2, COURSES)
MONTH = 30.4375  # days in a UCUM month (`mo`, the mean Julian month)


def _map(bundle: dict[str, Any], rules: RuleBase) -> Mapped:
    return map_bundle(bundle, rules.features, TODAY)


def _notes(mapped: Mapped, feature: str) -> list[tuple[str, str]]:
    return [(n.resource, n.reason) for n in mapped.skipped if n.feature == feature]


def _administration(bundle: dict[str, Any], resource_id: str) -> dict[str, Any]:
    """A copy of a cyclophosphamide administration under a new id, appended to the bundle."""
    copied = copy.deepcopy(resource(bundle, "cyc-1"))
    copied["id"] = resource_id
    bundle["entry"].append({"resource": copied})
    return copied


def test_the_sle_patient(shipped_rules: RuleBase) -> None:
    mapped = _map(sle_bundle(), shipped_rules)
    values = {k: v.value for k, v in mapped.values.items()}
    assert values["age_years"] == 34  # born 1992-02-14
    assert values["sex"] == "female"
    assert values["sle_diagnosis"] is True
    assert values["ssc_diagnosis"] is False
    assert values["sledai_2k"] == 14  # local code system
    assert values["egfr"] == 68
    assert values["serum_creatinine"] == 1.05
    assert values["proteinuria_g_24h"] == 2.4
    assert values["lvef_percent"] == 62
    # Euro-Lupus: 6 x 500 mg IV, two of them naming a Medication elsewhere in the bundle
    assert values[IV_G] == 3.0
    assert mapped.values[IV_G].unit == "g"
    assert values[COURSES] == 6
    assert mapped.values[IV_G].provenance.resource == "MedicationAdministration/cyc-1 and 5 more"
    assert mapped.values[IV_G].provenance.date == "2022-06-13"  # the last pulse
    # oral 2020-09-01 to 2020-11-29: 90 days, both ends included
    assert values[ORAL_MONTHS] == pytest.approx(90 / MONTH)
    assert mapped.values[ORAL_MONTHS].given_value == 90
    assert mapped.values[ORAL_MONTHS].given_unit == "d"
    assert values[ALKYLATING] is True  # 6 administrations + 1 statement; not the MMF
    assert mapped.values[ALKYLATING].provenance.resource == (
        "MedicationAdministration/cyc-1 and 6 more"
    )


def test_what_the_sle_record_cannot_say_is_unknown_and_noted(shipped_rules: RuleBase) -> None:
    mapped = _map(sle_bundle(), shipped_rules)
    assert IV_G_M2 not in mapped.values  # doses in mg, not per m2
    assert IV_MONTHS not in mapped.values  # single pulses do not say how long a course was
    ((records, reason),) = _notes(mapped, IV_G_M2)
    assert records == "MedicationAdministration/cyc-1 and 5 more"
    assert "'mg'" in reason
    assert "total in g/m²" in reason  # in words, not UCUM's g/m2
    ((records, reason),) = _notes(mapped, IV_MONTHS)
    assert "single administration" in reason


def _decisions(bundle: dict[str, Any], rules: RuleBase) -> dict[str, Any]:
    values = _map(bundle, rules).values
    return {d.ruleset.id: d for d in evaluate_all(select(rules, None), values)}


def test_the_sle_patient_through_the_rule_sets(shipped_rules: RuleBase) -> None:
    decisions = _decisions(sle_bundle(), shipped_rules)
    for ruleset_id, decision in decisions.items():
        indicated = decision.ruleset.indication.value == "sle"
        assert (decision.status is not Status.NOT_INDICATED) == indicated, ruleset_id
    car_t = decisions["car-t-sle"]
    # SLEDAI 14, LVEF 62 %, eGFR 68 meet; nothing rules her out; the refractoriness count and
    # the liver tests are not in the record, so CAR-T stays undecided, never "eligible"
    assert car_t.status is Status.INDETERMINATE
    assert "failed_immunosuppressants" in car_t.missing
    assert "sledai_2k" not in car_t.missing


def test_severe_nephritis_rules_out_car_t(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    resource(bundle, "obs-7")["valueQuantity"]["value"] = 7.5  # g/24 h
    assert _decisions(bundle, shipped_rules)["car-t-sle"].status is Status.INELIGIBLE


def test_prior_cyclophosphamide_rules_out_ssc_protocols(shipped_rules: RuleBase) -> None:
    """The SSc patient with twelve 500 mg IV pulses: above ASTIS's 5 g, and any alkylating
    agent excludes from UPSIDE."""
    bundle = ssc_bundle()
    before = _decisions(bundle, shipped_rules)
    assert "prior_cyclophosphamide_iv_g" in before["hsct-ssc-astis"].missing
    assert ALKYLATING in before["hsct-ssc-upside"].missing
    for entry in sle_bundle()["entry"]:
        kind = entry["resource"]["resourceType"]
        if kind == "Medication":
            bundle["entry"].append(entry)  # two pulses name it
        for year in (1, 2) if kind == "MedicationAdministration" else ():
            pulse = copy.deepcopy(entry)
            pulse["resource"]["id"] += f"-{year}"
            bundle["entry"].append(pulse)
    values = _map(bundle, shipped_rules).values
    assert values[IV_G].value == 6.0
    decisions = _decisions(bundle, shipped_rules)
    assert decisions["hsct-ssc-astis"].status is Status.INELIGIBLE
    assert decisions["hsct-ssc-upside"].status is Status.INELIGIBLE


def test_a_record_without_a_dose_makes_the_total_unknown(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    del resource(bundle, "cyc-3")["dosage"]["dose"]
    mapped = _map(bundle, shipped_rules)
    assert IV_G not in mapped.values  # never the 2.5 g of the other five
    assert mapped.values[COURSES].value == 6  # the pulse was still given
    assert mapped.values[ALKYLATING].value is True
    ((records, reason),) = _notes(mapped, IV_G)
    assert records == "MedicationAdministration/cyc-3"
    assert "fhir.entry[17].resource.dosage.dose" in reason


def test_doses_in_mg_and_g_add_up(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    resource(bundle, "cyc-2")["dosage"]["dose"] = {
        "value": 1,
        "unit": "g",
        "system": "http://unitsofmeasure.org",
        "code": "g",
    }
    assert _map(bundle, shipped_rules).values[IV_G].value == 3.5


def test_doses_per_m2_feed_only_the_per_m2_total(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    for n in range(1, 7):
        resource(bundle, f"cyc-{n}")["dosage"]["dose"].update(unit="mg/m2", code="mg/m2")
    mapped = _map(bundle, shipped_rules)
    assert mapped.values[IV_G_M2].value == 3.0
    assert mapped.values[IV_G_M2].unit == "g/m2"
    assert IV_G not in mapped.values
    assert mapped.values[COURSES].value == 6


@pytest.mark.parametrize("status", ["entered-in-error", "not-done"])
def test_a_record_of_a_dose_not_given_is_skipped(status: str, shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    resource(bundle, "cyc-3")["status"] = status
    mapped = _map(bundle, shipped_rules)
    assert mapped.values[IV_G].value == 2.5
    assert mapped.values[COURSES].value == 5
    assert ("MedicationAdministration/cyc-3", f"status {status!r}: not given") in _notes(
        mapped, IV_G
    )


def test_an_administration_stopped_part_way_leaves_the_totals_unknown(
    shipped_rules: RuleBase,
) -> None:
    """Some of it was given, how much is not recorded: skipping it would under-count."""
    bundle = sle_bundle()
    resource(bundle, "cyc-6")["status"] = "stopped"
    mapped = _map(bundle, shipped_rules)
    for feature in (IV_G, COURSES):
        assert feature not in mapped.values
        ((records, reason),) = _notes(mapped, feature)
        assert records == "MedicationAdministration/cyc-6"
        assert "some may have been" in reason
    assert mapped.values[ORAL_MONTHS].value == pytest.approx(90 / MONTH)  # another route
    assert mapped.values[ALKYLATING].value is True  # from the other records


def test_an_unknown_route_leaves_both_routes_unknown(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    del resource(bundle, "cyc-2")["dosage"]["route"]
    mapped = _map(bundle, shipped_rules)
    for feature in (IV_G, COURSES, ORAL_MONTHS):
        assert feature not in mapped.values
        assert any("route not recorded" in reason for _, reason in _notes(mapped, feature))
    assert mapped.values[ALKYLATING].value is True


def test_a_dose_in_ml_is_skipped_and_the_total_unknown(shipped_rules: RuleBase) -> None:
    """A volume is valid FHIR (the infusion bag) but not an amount of drug: the record is
    skipped for the total, with a note naming where the dose is, and the total is unknown.
    Not an error: the rest of the record still decides, and the total never looks complete."""
    bundle = sle_bundle()
    resource(bundle, "cyc-3")["dosage"]["dose"].update(value=250, unit="mL", code="mL")
    mapped = _map(bundle, shipped_rules)
    assert IV_G not in mapped.values
    assert mapped.values[COURSES].value == 6
    ((records, reason),) = _notes(mapped, IV_G)
    assert records == "MedicationAdministration/cyc-3"
    assert "'mL' (fhir.entry[17].resource.dosage.dose)" in reason


def test_an_implausible_dose_is_an_error_naming_it(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    resource(bundle, "cyc-3")["dosage"]["dose"]["value"] = -500
    with pytest.raises(InvalidInput) as error:
        _map(bundle, shipped_rules)
    fields = {(i.field, i.code) for i in error.value.issues}
    assert ("fhir.entry[17].resource.dosage.dose", "out_of_range") in fields


def test_a_future_dated_record_is_skipped(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    later = (TODAY + timedelta(days=10)).isoformat()
    resource(bundle, "cyc-6")["effectiveDateTime"] = later
    mapped = _map(bundle, shipped_rules)
    assert mapped.values[IV_G].value == 2.5
    assert mapped.values[COURSES].value == 5
    reason = f"dated {later}, after the evaluation date"
    assert ("MedicationAdministration/cyc-6", reason) in _notes(mapped, IV_G)


def test_administrations_and_an_order_are_not_added_up(shipped_rules: RuleBase) -> None:
    """A completed order for a pulse and the administration of that pulse may be one dose."""
    bundle = sle_bundle()
    order = {
        "resourceType": "MedicationRequest",
        "id": "order-1",
        "status": "completed",
        "intent": "order",
        "medicationCodeableConcept": resource(bundle, "cyc-1")["medicationCodeableConcept"],
        "subject": {"reference": "Patient/sle-1"},
        "authoredOn": "2022-04-01",
        "dosageInstruction": [
            {
                "route": resource(bundle, "cyc-1")["dosage"]["route"],
                "timing": {"event": ["2022-04-04"]},
                "doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg", "code": "mg"}}],
            }
        ],
    }
    bundle["entry"].append({"resource": order})
    mapped = _map(bundle, shipped_rules)
    assert IV_G not in mapped.values
    assert COURSES not in mapped.values
    assert any("may describe the same doses" in reason for _, reason in _notes(mapped, IV_G))
    order["status"] = "active"  # an open order documents no dose given
    mapped = _map(bundle, shipped_rules)
    assert mapped.values[IV_G].value == 3.0
    assert any("only a completed order" in reason for _, reason in _notes(mapped, IV_G))


def test_an_order_alone_can_document_the_doses(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "MedicationAdministration":
            entry["resource"]["status"] = "entered-in-error"
    first = resource(bundle, "cyc-1")
    bundle["entry"].append(
        {
            "resource": {
                "resourceType": "MedicationRequest",
                "id": "order-1",
                "status": "completed",
                "intent": "order",
                "medicationCodeableConcept": first["medicationCodeableConcept"],
                "subject": {"reference": "Patient/sle-1"},
                "dosageInstruction": [
                    {
                        "route": first["dosage"]["route"],
                        "timing": {"repeat": {"count": 1}, "event": ["2022-04-04"]},
                        "doseAndRate": [{"doseQuantity": {"value": 0.75, "code": "g"}}],
                    }
                ],
            }
        }
    )
    mapped = _map(bundle, shipped_rules)
    assert mapped.values[IV_G].value == 0.75
    assert mapped.values[IV_G].provenance.resource == "MedicationRequest/order-1"
    assert mapped.values[COURSES].value == 1


def test_oral_periods_overlap_once_and_an_active_one_runs_to_today(
    shipped_rules: RuleBase,
) -> None:
    bundle = sle_bundle()
    again = copy.deepcopy(resource(bundle, "cyc-oral"))
    again["id"] = "cyc-oral-2"
    again["status"] = "active"
    start = TODAY - timedelta(days=29)
    again["effectivePeriod"] = {"start": start.isoformat()}
    duplicate = copy.deepcopy(resource(bundle, "cyc-oral"))
    duplicate["id"] = "cyc-oral-copy"  # the same course, recorded twice
    bundle["entry"] += [{"resource": again}, {"resource": duplicate}]
    months = _map(bundle, shipped_rules).values[ORAL_MONTHS]
    assert months.value == pytest.approx((90 + 30) / MONTH)
    assert months.provenance.date == TODAY.isoformat()


def test_a_statement_without_its_period_leaves_the_months_unknown(
    shipped_rules: RuleBase,
) -> None:
    bundle = sle_bundle()
    del resource(bundle, "cyc-oral")["effectivePeriod"]["end"]
    mapped = _map(bundle, shipped_rules)
    assert ORAL_MONTHS not in mapped.values
    assert mapped.values[ALKYLATING].value is True
    assert [r for r, _ in _notes(mapped, ORAL_MONTHS)] == ["MedicationStatement/cyc-oral"]


def test_a_contained_medication_is_resolved(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    pulse = _administration(bundle, "cyc-7")
    code = pulse.pop("medicationCodeableConcept")
    pulse["contained"] = [{"resourceType": "Medication", "id": "m", "code": code}]
    pulse["medicationReference"] = {"reference": "#m"}
    assert _map(bundle, shipped_rules).values[IV_G].value == 3.5


def test_a_medication_outside_the_bundle_is_noted(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    pulse = _administration(bundle, "cyc-7")
    del pulse["medicationCodeableConcept"]
    pulse["medicationReference"] = {"reference": "Medication/elsewhere"}
    mapped = _map(bundle, shipped_rules)
    assert IV_G not in mapped.values  # it may be cyclophosphamide: 3.0 g could be too low
    assert mapped.values[ALKYLATING].value is True  # the six known pulses still say "given"
    assert any(
        r == "MedicationAdministration/cyc-7" and "may be this drug" in reason
        for r, reason in _notes(mapped, IV_G)
    )


def test_an_invalid_medication_record_names_its_place(shipped_rules: RuleBase) -> None:
    bundle = sle_bundle()
    resource(bundle, "cyc-2")["effectiveDateTime"] = "last spring"
    with pytest.raises(InvalidInput) as error:
        _map(bundle, shipped_rules)
    fields = [i.field for i in error.value.issues]
    assert any(f.startswith("fhir.entry[16].resource.effectiveDateTime") for f in fields), fields


def test_medication_codes_never_come_from_conditions_or_observations(
    shipped_rules: RuleBase,
) -> None:
    index = code_index(shipped_rules.features)
    assert ("http://www.nlm.nih.gov/research/umls/rxnorm", "3002") not in index
    bundle = ssc_bundle()
    condition = copy.deepcopy(resource(bundle, "cond-2"))
    condition["id"] = "cond-9"
    condition["code"] = resource(sle_bundle(), "cyc-1")["medicationCodeableConcept"]
    bundle["entry"].append({"resource": condition})
    assert ALKYLATING not in _map(bundle, shipped_rules).values


def test_the_minimised_sle_bundle_maps_to_the_same_values(shipped_rules: RuleBase) -> None:
    """The audit trail keeps the drug inline (references resolved), route, dose and timing,
    and none of the notes, free-text dosages, names or identifiers."""
    bundle = sle_bundle()
    mapped = _map(bundle, shipped_rules)
    again = _map(mapped.minimised, shipped_rules)
    assert again.values == mapped.values
    assert {(n.feature, n.resource) for n in again.skipped} == {
        (n.feature, n.resource) for n in mapped.skipped
    }
    kept = json.dumps(mapped.minimised)
    for private in ("Lupa", "MRN-SLE-0001", "Euro-Lupus", "sodium chloride", "by mouth"):
        assert private not in kept
    assert "medicationReference" not in kept
    assert '"Medication"' not in kept


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name[:16])
def test_synthea_medication_requests_feed_nothing(path: Path, shipped_rules: RuleBase) -> None:
    """Synthea's MedicationRequests are of other drugs: not validated, and no feature."""
    mapped = map_bundle(json.loads(path.read_text()), shipped_rules.features, alive_on(path))
    assert not set(mapped.values) & {IV_G, IV_G_M2, COURSES, IV_MONTHS, ORAL_MONTHS, ALKYLATING}
    assert not [n for n in mapped.skipped if n.feature in (IV_G, ALKYLATING)]


def test_the_sle_bundle_moves_in_time(shipped_rules: RuleBase) -> None:
    """Evaluated a year later with every date moved a year: the same values, later dates."""
    later = TODAY + timedelta(days=365)
    now = _map(sle_bundle(), shipped_rules)
    moved = map_bundle(sle_bundle(later), shipped_rules.features, later)
    assert {k: v.value for k, v in moved.values.items()} == {
        k: v.value for k, v in now.values.items()
    }
    assert moved.values[IV_G].provenance.date == "2023-06-13"
