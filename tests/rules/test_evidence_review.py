"""Clinical-safety review of the shipped rule sets against EVIDENCE.md §7 and §8 (issue 16).

Product rule: no shipped rule set may return `eligible` for a patient whom a fact of
EVIDENCE.md §7 or a policy of §8 excludes. Every row below takes a candidate who is `eligible`
with everything given (the rule set's clean candidate, written out here as it stands in
rules/tests/<id>.yaml, or a candidate meeting every rule set of one disease at once), applies
one change that a §7 fact or §8 policy says excludes, and asserts the verdict (`ineligible`,
or `indeterminate` where §8.5 makes a clinician confirm) and the criterion that decides it.
Each row names the fact it encodes.

A value given against a catalogue derivation (a "no alkylating agent" beside a cyclophosphamide
dose) is replaced by what it implies, as the service does. Two decisions of the review are
tested as such at the end: a clinician's answer to a confirmation stands (§8.5), with the
objective values shown beside it; Greco 2024's bilirubin limit applies to the CAR-T rule sets
only. The engine is used directly, no HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pytest

from app.engine.derive import derive
from app.engine.evaluate import Decision, Status, decide, decisive
from app.engine.inputs import normalise
from app.engine.load import load_rules
from app.engine.model import CriterionKind, atoms
from tests.conftest import SHIPPED_RULES

RULES = load_rules(SHIPPED_RULES)

Patient = dict[str, Any]

Outcome = Status

INELIGIBLE: Final = frozenset({Status.INELIGIBLE})
INDETERMINATE: Final = frozenset({Status.INDETERMINATE})
NOT_INDICATED: Final = frozenset({Status.NOT_INDICATED})
# Not eligible, and either excluded or a clinician asked (a numeric rule may later decide).
NEVER_ELIGIBLE: Final = frozenset({Status.INELIGIBLE, Status.INDETERMINATE})

# --- candidates eligible with everything given ----------------------------------------------
# The clean candidate of each rule set, as in rules/tests/<id>.yaml ("clear candidate").
CLEAN: Final[dict[str, Patient]] = {
    "hsct-ssc-upside": {
        "ssc_diagnosis": True,
        "ssc_subtype": "diffuse_cutaneous",
        "age_years": 38,
        "disease_duration_years": {"value": 14, "unit": "mo"},
        "mrss": 22,
        "ild_present": True,
        "dlco_percent_predicted": 68,
        "fvc_percent_predicted": 79,
        "mpap_mmhg": 17,
        "ecog": 1,
        "uncontrolled_hypertension": False,
        "severe_comorbidity": False,
        "immunosuppressant_months_incl_gc": 3,
        "prior_alkylating_or_irradiation": False,
        "ssc_mimic_or_toxic_exposure": False,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
        "pericardial_contraindication": False,
        "current_smoker": False,
    },
    "hsct-ssc-astis": {
        "ssc_diagnosis": True,
        "ssc_subtype": "diffuse_cutaneous",
        "age_years": 48,
        "disease_duration_years": 2.5,
        "mrss": 25,
        "ild_present": True,
        "ild_onset_or_worsening_6m": True,
        "dlco_percent_predicted": 55,
        "fvc_percent_predicted": 70,
        "pao2_mmhg": 84,
        "mpap_mmhg": 20,
        "lvef_percent": 60,
        "creatinine_clearance_ml_min": 95,
        "prior_cyclophosphamide_iv_g": 3,
        "prior_cyclophosphamide_oral_months": 0,
        "uncontrolled_arrhythmia": False,
        "uncontrolled_hypertension": False,
        "severe_comorbidity": False,
        "pericardial_contraindication": False,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
        "ecog": 1,
        "current_smoker": False,
    },
    "hsct-ssc-scot": {
        "ssc_diagnosis": True,
        "ssc_subtype": "diffuse_cutaneous",
        "age_years": 45,
        "disease_duration_years": 2,
        "ild_present": True,
        "internal_organ_involvement": True,
        "dlco_percent_predicted": 62,
        "fvc_percent_predicted": 78,
        "pasp_mmhg": 32,
        "mpap_mmhg": 18,
        "who_functional_class": 1,
        "pah_targeted_therapy": False,
        "lvef_percent": 62,
        "nyha_class": 1,
        "creatinine_clearance_ml_min": 95,
        "prior_cyclophosphamide_iv_months": 0,
        "prior_cyclophosphamide_iv_g_m2": 0,
        "prior_cyclophosphamide_oral_months": 0,
        "prednisone_mg_day": 5,
        "gave_active": False,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
        "severe_comorbidity": False,
        "contraception_assured": True,
        "pericardial_contraindication": False,
        "ecog": 1,
        "current_smoker": False,
    },
    "hsct-ssc-assist": {
        "ssc_diagnosis": True,
        "ssc_subtype": "diffuse_cutaneous",
        "age_years": 45,
        "disease_duration_years": 2,
        "mrss": 24,
        "ild_present": True,
        "internal_organ_involvement": True,
        "gi_involvement": False,
        "ecg_significant_abnormality": False,
        "mpap_mmhg": 18,
        "pasp_mmhg": 30,
        "lvef_percent": 62,
        "serum_creatinine": {"value": 80, "unit": "umol/L"},
        "prior_cyclophosphamide_iv_courses": 0,
        "pericardial_contraindication": False,
        "ecog": 1,
        "current_smoker": False,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
        "severe_comorbidity": False,
    },
    "hsct-ssc-ebmt-2025": {
        "ssc_diagnosis": True,
        "ssc_subtype": "diffuse_cutaneous",
        "age_years": 52,
        "disease_duration_years": 2,
        "mrss": 24,
        "ild_present": True,
        "ild_progressive_12m": False,
        "internal_organ_involvement": False,
        "crp_mg_l": 4,
        "failed_immunosuppressants": 1,
        "first_line_6_months_or_intolerant": True,
        "hsct_fitness_confirmed": True,
        "pasp_mmhg": 32,
        "pasp_fluid_challenge_mmhg": 38,
        "mpap_mmhg": 18,
        "mpap_fluid_challenge_mmhg": 22,
        "pvr_wood_units": 1.6,
        "lvef_percent": 62,
        "tapse_cm": 2.3,
        "uncontrolled_arrhythmia": False,
        "severe_cad_unrevascularised": False,
        "symptomatic_cardiac_disease": False,
        "echo_d_sign": False,
        "pericardial_contraindication": False,
        "ecog": 1,
        "current_smoker": False,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
    },
    "msc-ssc-farge-2022": {
        "ssc_diagnosis": True,
        "age_years": 45,
        "mrss": 22,
        "severe_organ_involvement": True,
        "failed_immunosuppressants": 2,
        "hsct_contraindicated": False,
        "refractory_to_cyclophosphamide": True,
        "severe_comorbidity": False,
        "pasp_mmhg": 32,
        "dlco_percent_predicted": 55,
        "lvef_percent": 62,
        "history_of_malignancy": False,
        "alt_x_uln": 1.1,
        "ast_x_uln": 0.8,
        "bilirubin_x_uln": 0.6,
        "chronic_viral_infection": False,
        "prior_cyclophosphamide_iv_g": 6,
        "months_since_last_iv_cyclophosphamide": 10,
        "ecog": 1,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
    },
    "car-t-ssc-ebmt-isct": {
        "ssc_diagnosis": True,
        "age_years": 42,
        "mrss": 24,
        "failed_immunosuppressants": 3,
        "unresponsive_immunosuppressants": 3,
        "lvef_percent": 62,
        "egfr": 85,
        "ast_x_uln": 0.8,
        "alt_x_uln": 1.1,
        "bilirubin_x_uln": 0.6,
        "bilirubin_total_mg_dl": 0.7,
        "ecg_significant_abnormality": False,
        "spo2_percent": 97,
        "dlco_percent_predicted": 58,
        "fvc_percent_predicted": 72,
        "ecog": 1,
        "severe_pah": False,
        "major_organ_damage": False,
        "major_organ_disease": False,
        "contraception_assured": True,
        "prior_car_t": False,
        "active_infection": False,
        "chronic_viral_infection": False,
        "syphilis_positive": False,
        "live_vaccine_last_4_weeks": False,
        "pregnant": False,
        "active_malignancy": False,
    },
    "hsct-sle-burt-2006": {
        "sle_diagnosis": True,
        "age_years": 40,
        "failed_immunosuppressants": 2,
        "unresponsive_immunosuppressants": 2,
        "severe_organ_involvement": True,
        "disease_active": True,
        "hsct_fitness_confirmed": True,
        "major_organ_damage": False,
        "ecog": 1,
        "current_smoker": False,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
    },
    "msc-sle-wang-2014": {
        "sle_diagnosis": True,
        "disease_active": True,
        "sledai_2k": 12,
        "failed_immunosuppressants": 2,
        "unresponsive_immunosuppressants": 2,
        "severe_comorbidity": False,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
        "ecog": 1,
    },
    "msc-sle-nephritis-nct03580291": {
        "sle_diagnosis": True,
        "age_years": 32,
        "lupus_nephritis_class": "IV",
        "upcr_g_g": 2.5,
        "proteinuria_g_24h": 3.1,
        "glomerulosclerosis_percent": 10,
        "crescents_percent": 5,
        "capillary_loop_lesions_percent": 5,
        "creatinine_clearance_ml_min": 85,
        "alt_x_uln": 1.0,
        "ast_x_uln": 0.8,
        "bilirubin_total_mg_dl": 0.6,
        "mmf_failed": False,
        "mmf_intolerant": False,
        "immunosuppressant_last_12_weeks": False,
        "ssc_diagnosis": False,
        "other_autoimmune_disease": False,
        "pregnant": False,
        "active_infection": False,
        "active_malignancy": False,
        "ecog": 0,
    },
    "car-t-sle": {
        "sle_diagnosis": True,
        "sledai_2k": 14,
        "failed_immunosuppressants": 3,
        "age_years": 34,
        "lvef_percent": 62,
        "egfr": 78,
        "ast_x_uln": 1.0,
        "alt_x_uln": 1.2,
        "bilirubin_x_uln": 0.6,
        "spo2_percent": 98,
        "proteinuria_g_24h": 2.0,
        "serum_creatinine": 1.1,
        "bilirubin_total_mg_dl": 0.6,
        "dialysis": False,
        "renal_replacement_last_3_months": False,
        "cns_lupus_recent": False,
        "chronic_viral_infection": False,
        "syphilis_positive": False,
        "cmv_infection": False,
        "serious_lung_lesions": False,
        "live_vaccine_last_4_weeks": False,
        "prior_car_t": False,
        "ecg_significant_abnormality": False,
        "pregnant": False,
        "active_malignancy": False,
        "ecog": 1,
        "active_infection": False,
    },
}

# One patient who meets every SSc rule set at once, and one who meets every SLE rule set: the
# base of the issue's example patients, run across all 11 rule sets.
SSC_CANDIDATE: Final[Patient] = {
    "ssc_diagnosis": True,
    "sle_diagnosis": False,
    "ssc_subtype": "diffuse_cutaneous",
    "age_years": 45,
    "disease_duration_years": 1.5,
    "mrss": 24,
    "ild_present": True,
    "ild_onset_or_worsening_6m": True,
    "ild_progressive_12m": False,
    "internal_organ_involvement": True,
    "severe_organ_involvement": True,
    "ssc_renal_involvement": False,
    "ssc_cardiac_involvement": False,
    "gi_involvement": False,
    "ecg_significant_abnormality": False,
    "trunk_skin_involvement": True,
    "dlco_percent_predicted": 55,
    "fvc_percent_predicted": 70,
    "pao2_mmhg": 84,
    "spo2_percent": 97,
    "mpap_mmhg": 18,
    "pasp_mmhg": 32,
    "pasp_fluid_challenge_mmhg": 38,
    "mpap_fluid_challenge_mmhg": 22,
    "pvr_wood_units": 1.6,
    "tapse_cm": 2.3,
    "who_functional_class": 1,
    "pah_diagnosis": False,
    "pah_targeted_therapy": False,
    "severe_pah": False,
    "lvef_percent": 62,
    "nyha_class": 1,
    "creatinine_clearance_ml_min": 95,
    "egfr": 90,
    "serum_creatinine": 0.9,
    "alt_x_uln": 1.0,
    "ast_x_uln": 0.8,
    "bilirubin_x_uln": 0.6,
    "bilirubin_total_mg_dl": 0.6,
    "crp_mg_l": 4,
    "failed_immunosuppressants": 2,
    "unresponsive_immunosuppressants": 2,
    "immunosuppressant_months_incl_gc": 5,
    "other_immunosuppressant_months": 4,
    "prednisone_mg_day": 5,
    "prior_cyclophosphamide_iv_g": 0,
    "prior_cyclophosphamide_iv_g_m2": 0,
    "prior_cyclophosphamide_iv_courses": 0,
    "prior_cyclophosphamide_iv_months": 0,
    "prior_cyclophosphamide_oral_months": 0,
    "prior_alkylating_or_irradiation": False,
    "refractory_to_cyclophosphamide": False,
    "hsct_contraindicated": False,
    "uncontrolled_arrhythmia": False,
    "uncontrolled_hypertension": False,
    "gave_active": False,
    "severe_cad_unrevascularised": False,
    "symptomatic_cardiac_disease": False,
    "echo_d_sign": False,
    "pericardial_contraindication": False,
    "ssc_mimic_or_toxic_exposure": False,
    "history_of_malignancy": False,
    "chronic_viral_infection": False,
    "syphilis_positive": False,
    "live_vaccine_last_4_weeks": False,
    "prior_car_t": False,
    "major_organ_damage": False,
    "major_organ_disease": False,
    "contraception_assured": True,
    "first_line_6_months_or_intolerant": True,
    "severe_comorbidity": False,
    "hsct_fitness_confirmed": True,
    "ecog": 1,
    "current_smoker": False,
    "pregnant": False,
    "active_infection": False,
    "active_malignancy": False,
}
SLE_CANDIDATE: Final[Patient] = {
    "sle_diagnosis": True,
    "ssc_diagnosis": False,
    "other_autoimmune_disease": False,
    "age_years": 32,
    "disease_active": True,
    "sledai_2k": 14,
    "failed_immunosuppressants": 2,
    "unresponsive_immunosuppressants": 2,
    "severe_organ_involvement": True,
    "lupus_nephritis_class": "IV",
    "upcr_g_g": 2.5,
    "proteinuria_g_24h": 3.1,
    "glomerulosclerosis_percent": 10,
    "crescents_percent": 5,
    "capillary_loop_lesions_percent": 5,
    "creatinine_clearance_ml_min": 85,
    "egfr": 80,
    "serum_creatinine": 1.0,
    "lvef_percent": 62,
    "spo2_percent": 98,
    "alt_x_uln": 1.0,
    "ast_x_uln": 0.8,
    "bilirubin_x_uln": 0.6,
    "bilirubin_total_mg_dl": 0.6,
    "mmf_failed": False,
    "mmf_intolerant": False,
    "immunosuppressant_last_12_weeks": False,
    "dialysis": False,
    "renal_replacement_last_3_months": False,
    "cns_lupus_recent": False,
    "chronic_viral_infection": False,
    "syphilis_positive": False,
    "cmv_infection": False,
    "serious_lung_lesions": False,
    "live_vaccine_last_4_weeks": False,
    "prior_car_t": False,
    "ecg_significant_abnormality": False,
    "major_organ_damage": False,
    "severe_comorbidity": False,
    "hsct_fitness_confirmed": True,
    "ecog": 1,
    "current_smoker": False,
    "pregnant": False,
    "active_infection": False,
    "active_malignancy": False,
}

SSC_SETS: Final = (
    "hsct-ssc-upside",
    "hsct-ssc-astis",
    "hsct-ssc-scot",
    "hsct-ssc-assist",
    "hsct-ssc-ebmt-2025",
    "msc-ssc-farge-2022",
    "car-t-ssc-ebmt-isct",
)
SLE_SETS: Final = (
    "hsct-sle-burt-2006",
    "msc-sle-wang-2014",
    "msc-sle-nephritis-nct03580291",
    "car-t-sle",
)
HSCT_SSC_SETS: Final = SSC_SETS[:5]
MSC_CAR_T_SETS: Final = (
    "msc-ssc-farge-2022",
    "car-t-ssc-ebmt-isct",
    "msc-sle-wang-2014",
    "msc-sle-nephritis-nct03580291",
    "car-t-sle",
)
# EVIDENCE.md §8.5: the protocols whose exclusion list could not be read (Wang 2014's since the
# second pass over the review: EVIDENCE.md records none of its exclusions).
SEVERE_COMORBIDITY_SETS: Final = (*HSCT_SSC_SETS[:4], "msc-ssc-farge-2022", "msc-sle-wang-2014")
FITNESS_SETS: Final = ("hsct-sle-burt-2006", "hsct-ssc-ebmt-2025")  # EVIDENCE.md §8.5


def outcome(ruleset: str, patient: Mapping[str, Any]) -> tuple[Outcome, Decision]:
    """The verdict for one patient, derived as the service derives it."""
    values = derive(normalise(patient, RULES.features), RULES.features)
    decision = decide(RULES.rulesets[ruleset], values)
    return decision.status, decision


@dataclass(frozen=True)
class Row:
    """One patient: a base candidate with one change; the verdict a §7 fact or §8 policy
    requires. `deciding` must be among the criteria that settle an ineligible verdict;
    `confirm` / `missing` among the confirmations / values an indeterminate one asks for.
    `None` in `change` removes the value (unknown)."""

    ruleset: str
    change: Mapping[str, Any]
    fact: str
    accept: frozenset[Outcome]
    deciding: tuple[str, ...] = ()
    confirm: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    base: Mapping[str, Any] | None = None

    @property
    def patient(self) -> Patient:
        merged = {**(CLEAN[self.ruleset] if self.base is None else self.base), **self.change}
        return {k: v for k, v in merged.items() if v is not None}

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={_shown(v)}" for k, v in self.change.items())
        return f"{self.ruleset}: {shown} [{self.fact.split(':')[0]}]"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['value']} {value['unit']}"
    return "unknown" if value is None else str(value).lower()


def ineligible(ruleset: str, change: Mapping[str, Any], fact: str, *deciding: str) -> Row:
    return Row(ruleset, change, fact, INELIGIBLE, deciding=deciding)


def to_confirm(
    ruleset: str,
    change: Mapping[str, Any],
    fact: str,
    *confirm: str,
    accept: frozenset[Outcome] = INDETERMINATE,
) -> Row:
    return Row(ruleset, change, fact, accept, confirm=confirm)


def unknown(ruleset: str, change: Mapping[str, Any], fact: str, *missing: str) -> Row:
    return Row(ruleset, change, fact, INDETERMINATE, missing=missing)


# --- §8.1-8.5: every rule set, or every rule set of a therapy ---------------------------------
def _policy_rows() -> Iterable[Row]:
    for rs in (*SSC_SETS, *SLE_SETS):
        yield ineligible(
            rs, {"pregnant": True}, "§8.1: pregnancy excludes from every rule set", "pregnancy"
        )
        yield ineligible(
            rs,
            {"active_infection": True},
            "§8.2: active infection excludes (a temporary deferral)",
            "active-infection",
        )
        # A given "no history of malignancy" is replaced by what an active one implies.
        yield ineligible(
            rs,
            {"active_malignancy": True},
            "§8.3: active malignancy excludes from every rule set",
            "active-malignancy",
        )
        for feature in ("pregnant", "active_infection", "active_malignancy"):
            yield unknown(rs, {feature: None}, "§8.5: unknown never passes silently", feature)
    for rs in MSC_CAR_T_SETS:
        yield ineligible(
            rs,
            {"ecog": 2},
            '§8.4: Greco 2024 Table 1 "ECOG <2" for all CTs (MSC, CAR-T)',
            "ecog-2-or-more",
        )
        yield unknown(rs, {"ecog": None}, "§8.4/§8.5: ECOG unknown for MSC/CAR-T", "ecog")
    for rs in SEVERE_COMORBIDITY_SETS:
        yield ineligible(
            rs,
            {"severe_comorbidity": True},
            '§8.5: "concomitant severe disease" confirmed by a clinician',
            "severe-comorbidity",
        )
        yield to_confirm(
            rs,
            {"severe_comorbidity": None},
            "§8.5: severe comorbidity not yet confirmed",
            "severe_comorbidity",
        )
    for rs in FITNESS_SETS:
        yield ineligible(
            rs,
            {"hsct_fitness_confirmed": False},
            "§8.5: EBMT 2025 Table 2 fitness assessment found a contraindication",
            "transplant-fitness-confirmed",
        )
        yield to_confirm(
            rs,
            {"hsct_fitness_confirmed": None},
            "§8.5: EBMT 2025 Table 2 fitness assessment not confirmed",
            "hsct_fitness_confirmed",
        )


UPSIDE: Final = "hsct-ssc-upside"
ASTIS: Final = "hsct-ssc-astis"
SCOT: Final = "hsct-ssc-scot"
ASSIST: Final = "hsct-ssc-assist"
EBMT: Final = "hsct-ssc-ebmt-2025"
MSC_SSC: Final = "msc-ssc-farge-2022"
CART_SSC: Final = "car-t-ssc-ebmt-isct"
HSCT_SLE: Final = "hsct-sle-burt-2006"
WANG: Final = "msc-sle-wang-2014"
LN: Final = "msc-sle-nephritis-nct03580291"
CART_SLE: Final = "car-t-sle"

UPSIDE_T2: Final = "§7 UPSIDE (BMJ Open 2021 Table 2)"
UPSIDE_CTIS: Final = "§7 UPSIDE (CTIS2023-505877-34-00)"
LN_REG: Final = "§7 NCT03580291"
GRECO_BILI: Final = '§7 Greco 2024 Table 1: bilirubin "<34 mmol/l in trials" (µmol/L)'
NO_CYC: Final = {"prior_alkylating_or_irradiation": None}

# --- §7, per rule set -------------------------------------------------------------------------
PROTOCOL_ROWS: Final[list[Row]] = [
    # UPSIDE
    ineligible(
        UPSIDE, {"mpap_mmhg": 21}, f'{UPSIDE_T2}: "resting mPAP >20 mm Hg"', "mpap-above-20"
    ),
    ineligible(UPSIDE, {"mpap_mmhg": 20.5}, f"{UPSIDE_T2}: mPAP just above 20", "mpap-above-20"),
    ineligible(UPSIDE, {"ecog": 3}, f'{UPSIDE_CTIS}: "ZUBROD-ECOG-WHO PSS > 2"', "ecog-above-2"),
    ineligible(
        UPSIDE,
        {"ssc_subtype": "limited_cutaneous"},
        f'{UPSIDE_T2}: "2013 ACR-EULAR classification criteria for dcSSc"',
        "diffuse-cutaneous",
    ),
    ineligible(
        UPSIDE,
        {"ssc_subtype": "sine_scleroderma"},
        f"{UPSIDE_T2}: dcSSc required",
        "diffuse-cutaneous",
    ),
    ineligible(
        UPSIDE,
        {"immunosuppressant_months_incl_gc": 7},
        f'{UPSIDE_T2}: "immunosuppressants >6 months, including … glucocorticoids"',
        "immunosuppressants-over-6-months",
    ),
    ineligible(
        UPSIDE,
        {"immunosuppressant_months_incl_gc": {"value": 27, "unit": "wk"}},
        f"{UPSIDE_T2}: 27 weeks of glucocorticoids is more than 6 months",
        "immunosuppressants-over-6-months",
    ),
    ineligible(
        UPSIDE,
        {"uncontrolled_hypertension": True},
        f'{UPSIDE_CTIS}: "uncontrolled hypertension"',
        "uncontrolled-hypertension",
    ),
    ineligible(
        UPSIDE,
        {"ssc_mimic_or_toxic_exposure": True},
        f'{UPSIDE_T2}: "exposure to bleomycin, … silica"; "eosinophilic fasciitis, morphea"',
        "ssc-mimic-or-toxic-exposure",
    ),
    ineligible(
        UPSIDE,
        {"prior_alkylating_or_irradiation": True},
        f'{UPSIDE_T2}: "previous TLI, TBI or alkylating agents"',
        "prior-alkylating-or-irradiation",
    ),
    ineligible(
        UPSIDE,
        {**NO_CYC, "prior_cyclophosphamide_iv_g": 3},
        f"{UPSIDE_T2}: 3 g IV cyclophosphamide derives a prior alkylating agent",
        "prior-alkylating-or-irradiation",
    ),
    ineligible(
        UPSIDE,
        {**NO_CYC, "prior_cyclophosphamide_oral_months": {"value": 2, "unit": "wk"}},
        f"{UPSIDE_T2}: 2 weeks of oral cyclophosphamide is an alkylating agent",
        "prior-alkylating-or-irradiation",
    ),
    ineligible(
        UPSIDE,
        {**NO_CYC, "prior_cyclophosphamide_iv_courses": 1},
        f"{UPSIDE_T2}: one IV cyclophosphamide course is an alkylating agent",
        "prior-alkylating-or-irradiation",
    ),
    ineligible(
        UPSIDE,
        {"prior_cyclophosphamide_iv_g": 3},
        f"{UPSIDE_T2}: 'no alkylating agent' beside 3 g cyclophosphamide: the dose's "
        "implication replaces it",
        "prior-alkylating-or-irradiation",
    ),
    ineligible(
        UPSIDE,
        {"disease_duration_years": {"value": 25, "unit": "mo"}},
        "§1 UPSIDE: disease duration ≤ 2 years (2021 protocol)",
        "disease-duration-2-years",
    ),
    to_confirm(
        UPSIDE,
        {"lvef_percent": 30, "severe_comorbidity": None},
        f'{UPSIDE_CTIS}: "concomitant severe disease (… cardiac … failure)"; LVEF number '
        "unread, so §8.5: a clinician confirms (or a numeric cardiac rule excludes)",
        "severe_comorbidity",
        accept=NEVER_ELIGIBLE,
    ),
    # ASTIS
    ineligible(
        ASTIS,
        {
            "dlco_percent_predicted": 85,
            "fvc_percent_predicted": 90,
            "ssc_cardiac_involvement": False,
            "ssc_renal_involvement": False,
            "trunk_skin_involvement": False,
        },
        '§7 ASTIS (EudraCT): lung involvement is "DLCO and/or (F)VC ≤ 80%" with ILD; '
        "ILD with normal lung function and no other organ does not qualify",
        "skin-and-organ-involvement",
    ),
    unknown(
        ASTIS,
        {"dlco_percent_predicted": 85, "fvc_percent_predicted": 90},
        "§7 ASTIS: ILD with normal lung function, heart and kidney not recorded",
        "ssc_cardiac_involvement",
        "ssc_renal_involvement",
    ),
    ineligible(
        ASTIS,
        {
            "ild_onset_or_worsening_6m": False,
            "ssc_cardiac_involvement": False,
            "ssc_renal_involvement": False,
        },
        "§7 ASTIS: lung involvement with onset or worsening in the previous 6 months",
        "skin-and-organ-involvement",
    ),
    ineligible(
        ASTIS, {"age_years": 66}, '§7 ASTIS (EudraCT): age "between 18 and 65"', "age-18-to-65"
    ),
    ineligible(
        ASTIS, {"age_years": 17}, '§7 ASTIS (EudraCT): age "between 18 and 65"', "age-18-to-65"
    ),
    # SCOT
    ineligible(
        SCOT,
        {"mpap_mmhg": 31},
        '§7 SCOT (Walker 2018 Table 1): "Mean PAP>30 mm Hg"',
        "mpap-above-30",
    ),
    ineligible(SCOT, {"mpap_mmhg": 30.5}, "§7 SCOT: mPAP just above 30", "mpap-above-30"),
    ineligible(
        SCOT,
        {"pasp_mmhg": 50, "mpap_mmhg": 26},
        "§7 SCOT (Penglase 2023 Table 3): echo PASP 45-55 with RHC mPAP > 25 at rest",
        "pulmonary-hypertension",
    ),
    ineligible(
        SCOT,
        {
            "ild_present": False,
            "internal_organ_involvement": True,
            "ssc_cardiac_involvement": True,
            "ssc_renal_involvement": False,
        },
        '§1 SCOT: "internal organ involvement of lungs or kidneys"; the heart alone is neither',
        "lung-or-kidney-involvement",
    ),
    ineligible(
        SCOT,
        {"pasp_mmhg": 50, "mpap_mmhg": 20, "mpap_exercise_mmhg": 31},
        '§7 SCOT (Penglase 2023 Table 3, P): echo PASP 45-55 with "30 mmHg with exercise"',
        "exercise-mpap-above-30-in-echo-band",
    ),
    unknown(
        SCOT,
        {"pasp_mmhg": 50, "mpap_mmhg": 20},
        "§7 SCOT/§8.5: in the echo band, the exercise mPAP unmeasured",
        "mpap_exercise_mmhg",
    ),
    ineligible(
        SCOT,
        {"contraception_assured": False},
        "§1 SCOT: contraception required ≥ 15 months",
        "contraception-not-assured",
    ),
    to_confirm(
        SCOT,
        {"contraception_assured": None},
        "§1 SCOT/§8.5: contraception unasked is never eligible",
        "contraception_assured",
    ),
    # ASSIST
    ineligible(
        ASSIST,
        {"age_years": 60},
        "§7 ASSIST: age conflict, the stricter < 60 is kept",
        "age-under-60",
    ),
    # EBMT 2025
    ineligible(
        EBMT, {"age_years": 66}, '§7 EBMT 2025 Table 2: "Age: 18–65 years old"', "age-18-to-65"
    ),
    ineligible(
        EBMT, {"age_years": 17}, '§7 EBMT 2025 Table 2: "Age: 18–65 years old"', "age-18-to-65"
    ),
    ineligible(
        EBMT,
        {"pasp_fluid_challenge_mmhg": 46},
        "§7 EBMT 2025 Table 5: PASP > 45 mmHg with fluid challenge",
        "pasp-fluid-challenge-above-45",
    ),
    ineligible(
        EBMT,
        {"mpap_fluid_challenge_mmhg": 31},
        "§7 EBMT 2025 Table 5: mPAP > 30 mmHg with fluid challenge (RHC)",
        "mpap-fluid-challenge-above-30",
    ),
    ineligible(
        EBMT, {"pasp_mmhg": 41}, "§7 EBMT 2025 Table 5: PASP > 40 mmHg at rest", "pasp-above-40"
    ),
    ineligible(
        EBMT, {"mpap_mmhg": 26}, "§7 EBMT 2025 Table 5: mPAP > 25 mmHg at rest", "mpap-above-25"
    ),
    # MSC in SSc
    ineligible(
        MSC_SSC,
        {"age_years": 70},
        '§7 MSC-SSc (MATHEC): "> 18 years and < 70 years"',
        "age-18-to-69",
    ),
    ineligible(
        MSC_SSC,
        {"age_years": {"value": 840, "unit": "mo"}},
        "§7 MSC-SSc: 840 months is 70 years",
        "age-18-to-69",
    ),
    ineligible(
        MSC_SSC,
        {"pasp_mmhg": 56},
        '§7 MSC-SSc French synopsis (P): "PAPS > 55 mmHg"',
        "pasp-above-55",
    ),
    ineligible(
        MSC_SSC, {"dlco_percent_predicted": 29}, '§7 MSC-SSc (P): "DLCO < 30%"', "dlco-below-30"
    ),
    ineligible(MSC_SSC, {"lvef_percent": 34}, "§7 MSC-SSc (P): LVEF < 35 %", "lvef-below-35"),
    ineligible(
        MSC_SSC,
        {"history_of_malignancy": True},
        '§7 MSC-SSc (P): "tout antécédent de néoplasie"',
        "history-of-malignancy",
    ),
    ineligible(
        MSC_SSC,
        {"active_malignancy": True, "history_of_malignancy": None},
        "§7 MSC-SSc (P) + §8.3: an active cancer is a history of malignancy (derived)",
        "active-malignancy",
        "history-of-malignancy",
    ),
    ineligible(
        MSC_SSC,
        {"active_malignancy": True},
        "§8.3: an active cancer beside a given 'no history of malignancy': the implication "
        "replaces it",
        "active-malignancy",
        "history-of-malignancy",
    ),
    ineligible(
        MSC_SSC,
        {"alt_x_uln": 3},
        "§7 MSC-SSc (P): liver tests ≥ 3 × ULN",
        "liver-tests-3x-uln-or-more",
    ),
    ineligible(
        MSC_SSC,
        {"chronic_viral_infection": True},
        "§7 MSC-SSc (P): HIV, HTLV",
        "chronic-viral-infection",
    ),
    # CAR-T in SSc
    ineligible(
        CART_SSC, {"prior_car_t": True}, "§3 NCT06792344: prior CAR-T excluded", "prior-car-t"
    ),
    ineligible(
        CART_SSC,
        {"bilirubin_total_mg_dl": {"value": 34, "unit": "umol/L"}},
        f"{GRECO_BILI}: exactly 34 µmol/L excludes",
        "bilirubin-34-umol-l-or-more",
    ),
    ineligible(
        CART_SSC,
        {"bilirubin_total_mg_dl": 2.0},
        f"{GRECO_BILI}: 2.0 mg/dL = 34.2 µmol/L",
        "bilirubin-34-umol-l-or-more",
    ),
    to_confirm(
        CART_SSC,
        {"major_organ_disease": None},
        '§3 NCT06792344 "major organ disease": a clinician confirms (§8.5)',
        "major_organ_disease",
    ),
    ineligible(
        CART_SSC,
        {"major_organ_disease": True},
        '§3 NCT06792344 "major organ disease", reversible or not (not only irreversible damage)',
        "major-organ-disease",
    ),
    ineligible(
        CART_SSC,
        {"major_organ_damage": True, "major_organ_disease": None},
        "§3 NCT06792344: irreversible major organ damage is major organ disease",
        "major-organ-disease",
    ),
    ineligible(
        CART_SSC,
        {"contraception_assured": False},
        'RULES-REVIEW C5 (V): "contraceptive measures … until 1 year after the infusion"',
        "contraception-not-assured",
    ),
    to_confirm(
        CART_SSC,
        {"contraception_assured": None},
        "RULES-REVIEW C5/§8.5: contraception unasked is never eligible",
        "contraception_assured",
    ),
    # HSCT in SLE
    to_confirm(
        HSCT_SLE,
        {"lvef_percent": 30, "hsct_fitness_confirmed": None},
        "§8.5: LVEF 30 % with no fitness assessment is never eligible",
        "hsct_fitness_confirmed",
        accept=NEVER_ELIGIBLE,
    ),
    # Lupus-nephritis MSC trial
    ineligible(
        LN,
        {"alt_x_uln": 1.6},
        f'{LN_REG}: "ALT more than 1.5 times the upper limit"',
        "alt-or-ast-above-1-5-uln",
    ),
    ineligible(
        LN, {"ast_x_uln": 1.51}, f"{LN_REG}: AST just above 1.5 × ULN", "alt-or-ast-above-1-5-uln"
    ),
    ineligible(
        LN,
        {"bilirubin_total_mg_dl": 1.5},
        f'{LN_REG}: "total bilirubin more than 14mg/L"',
        "bilirubin-above-14-mg-l",
    ),
    ineligible(
        LN,
        {"bilirubin_total_mg_dl": {"value": 15, "unit": "mg/L"}},
        f"{LN_REG}: bilirubin 15 mg/L",
        "bilirubin-above-14-mg-l",
    ),
    ineligible(
        LN,
        {"bilirubin_total_mg_dl": {"value": 24, "unit": "umol/L"}},
        f"{LN_REG}: 24 µmol/L is above 14 mg/L (23.9 µmol/L)",
        "bilirubin-above-14-mg-l",
    ),
    ineligible(
        LN,
        {"mmf_failed": True},
        f'{LN_REG}: "Previous failure to respond to MMF."',
        "mmf-failed-or-intolerant",
    ),
    ineligible(
        LN,
        {"mmf_intolerant": True},
        f'{LN_REG}: "Known intolerance to MMF."',
        "mmf-failed-or-intolerant",
    ),
    unknown(LN, {"mmf_failed": None}, f"{LN_REG}: MMF response unknown", "mmf_failed"),
    ineligible(
        LN,
        {"immunosuppressant_last_12_weeks": True},
        f'{LN_REG}: "MMF, CTX, other potent immunosuppressive agents … within the past 12 weeks"',
        "immunosuppressant-within-12-weeks",
    ),
    ineligible(
        LN,
        {"ssc_diagnosis": True},
        f'{LN_REG}: "other autoimmune diseases apart from SLE: … scleroderma"',
        "other-autoimmune-disease",
    ),
    ineligible(
        LN,
        {"other_autoimmune_disease": True},
        f"{LN_REG}: dermatomyositis/polymyositis, MCTD, RA",
        "other-autoimmune-disease",
    ),
    ineligible(
        LN,
        {"lupus_nephritis_class": "II"},
        f"{LN_REG}: classes III, IV, V only",
        "biopsy-class-iii-iv-v",
    ),
    # CAR-T in SLE
    ineligible(
        CART_SLE,
        {"prior_car_t": True},
        '§7 NCT06222853: "Received CAR T cell therapy previously"',
        "prior-car-t",
    ),
    ineligible(
        CART_SLE,
        {"renal_replacement_last_3_months": True},
        "§7 NCT06222853: renal replacement therapy within 3 months before infusion",
        "renal-replacement-within-3-months",
    ),
    ineligible(
        CART_SLE,
        {"dialysis": True, "renal_replacement_last_3_months": None},
        "§7 NCT06222853: current dialysis derives renal replacement within 3 months",
        "renal-replacement-within-3-months",
    ),
    ineligible(
        CART_SLE,
        {"dialysis": True},
        "§7 NCT06222853: 'no renal replacement' beside current dialysis: the implication "
        "replaces it",
        "renal-replacement-within-3-months",
    ),
    ineligible(
        CART_SLE, {"egfr": 29}, "§7 NCT06222853: eGFR ≥ 30 mL/min/1.73 m²", "egfr-30-or-more"
    ),
    ineligible(
        CART_SLE,
        {"bilirubin_total_mg_dl": {"value": 34, "unit": "umol/L"}},
        f"{GRECO_BILI}: exactly 34 µmol/L excludes",
        "bilirubin-34-umol-l-or-more",
    ),
    # --- gaps this review found, closed since --------------------------------------------------
    ineligible(
        LN,
        {"prior_cyclophosphamide_iv_g": 3, "months_since_last_iv_cyclophosphamide": 1},
        f'{LN_REG}: "Received … CTX … within the past 12 weeks" (IV cyclophosphamide a month '
        "ago implies it, replacing a given 'no')",
        "immunosuppressant-within-12-weeks",
    ),
    ineligible(
        SCOT,
        {"prior_cyclophosphamide_iv_months": 4, "prior_cyclophosphamide_oral_months": 3},
        "§1 SCOT registry: oral + IV cyclophosphamide > 6 months excludes (Verified)",
        "prior-cyclophosphamide",
    ),
    # --- the second pass: exclusions the sources state that lived in notes only -----------------
    ineligible(CART_SLE, {"syphilis_positive": True}, "§6: HBV/HCV/HIV/syphilis/CMV", "syphilis"),
    unknown(
        CART_SLE, {"syphilis_positive": None}, "§6/§8.5: syphilis unchecked", "syphilis_positive"
    ),
    ineligible(CART_SLE, {"cmv_infection": True}, "§6: HBV/HCV/HIV/syphilis/CMV", "cmv-infection"),
    unknown(CART_SLE, {"cmv_infection": None}, "§6/§8.5: CMV unchecked", "cmv_infection"),
    ineligible(
        CART_SLE,
        {"serious_lung_lesions": True},
        'RULES-REVIEW T9: "no serious lung lesions, SpO2≥92%"',
        "serious-lung-lesions",
    ),
    to_confirm(
        CART_SLE,
        {"serious_lung_lesions": None},
        "T9/§8.5: lung lesions not yet judged",
        "serious_lung_lesions",
    ),
    ineligible(CART_SSC, {"syphilis_positive": True}, "§3: HBV/HCV/HIV/syphilis", "syphilis"),
    unknown(
        CART_SSC, {"syphilis_positive": None}, "§3/§8.5: syphilis unchecked", "syphilis_positive"
    ),
    ineligible(
        LN,
        {"capillary_loop_lesions_percent": 50},
        f'{LN_REG} (N5): "capillary loops necrosis, microthrombus … or cellular crescent in ≥50%"',
        "loop-lesions-or-crescents-50-or-more",
    ),
    unknown(
        LN,
        {"capillary_loop_lesions_percent": None},
        "N5/§8.5: capillary-loop lesions not reported",
        "capillary_loop_lesions_percent",
    ),
    ineligible(EBMT, {"echo_d_sign": True}, 'E3 (Partial): "D-sign or septal bounce"', "d-sign"),
    unknown(EBMT, {"echo_d_sign": None}, "E3/§8.5: D-sign not reported", "echo_d_sign"),
    # The December review's third pass (helper audit, 12-05)
    ineligible(
        CART_SSC,
        {"failed_immunosuppressants": 2, "unresponsive_immunosuppressants": 0},
        '§3 Auth 2024: "insufficient response to ≥ 2 treatments"; two intolerances are not',
        "refractory-2-or-more-treatments",
    ),
    ineligible(
        HSCT_SLE,
        {"failed_immunosuppressants": 1, "unresponsive_immunosuppressants": 0},
        '§4 Burt 2006: "refractory to standard immunosuppression"; an intolerance is not',
        "refractory-to-immunosuppression",
    ),
    ineligible(
        WANG,
        {"failed_immunosuppressants": 1, "unresponsive_immunosuppressants": 0},
        "§5 Wang 2014: refractory despite immunosuppression; an intolerance is not",
        "refractory-to-immunosuppression",
    ),
    unknown(
        CART_SSC,
        {"unresponsive_immunosuppressants": None},
        "§3/§8.5: refractoriness unknown is never eligible",
        "unresponsive_immunosuppressants",
    ),
    ineligible(
        EBMT,
        {"first_line_6_months_or_intolerant": False},
        '§1 EBMT 2025 Table 5: "second line after 6 months of first-line therapy (or intolerance)"',
        "refractory-to-first-line",
    ),
    unknown(
        EBMT,
        {"first_line_6_months_or_intolerant": None},
        "§1 EBMT 2025 Table 5/§8.5: the 6 months of first-line therapy unchecked",
        "first_line_6_months_or_intolerant",
    ),
    ineligible(
        EBMT,
        {
            "ssc_subtype": "limited_cutaneous",
            "mrss": 10,
            "ild_progressive_12m": None,
            "ild_pft_decline_12m": True,
            "ild_progression_on_ct": False,
        },
        'E4: "progressive ILD confirmed by chest CT"; a lung-function decline alone is not it',
        "skin-and-organ-or-inflammation",
    ),
    ineligible(
        UPSIDE,
        {
            "mrss": 12,
            "dlco_percent_predicted": 90,
            "fvc_percent_predicted": 95,
            "ild_pft_decline_12m": False,
            "ild_progression_on_ct": True,
            "ssc_renal_involvement": False,
            "ssc_cardiac_involvement": False,
        },
        f'{UPSIDE_T2} (U10): "progressive course … >10% in FVC … or >15% in DLco", not CT alone',
        "skin-or-organ-involvement",
    ),
]


# --- the issue's example patients, across all 11 rule sets -------------------------------------
@dataclass(frozen=True)
class Example:
    name: str
    base: Mapping[str, Any]
    change: Mapping[str, Any]
    expect: Mapping[str, Row]  # rule sets of the patient's disease where a fact decides


def _example(
    name: str, base: Mapping[str, Any], change: Mapping[str, Any], **verdicts: tuple[Any, ...]
) -> Example:
    """verdicts: rule set (with `_` for `-`) -> (accepted outcomes, fact, criteria or
    confirmations). A rule set of the patient's own disease not named has no §7/§8 fact that
    excludes this patient: its verdict is not asserted."""
    expect: dict[str, Row] = {}
    for key, (accept, fact, *ids) in verdicts.items():
        rs = key.replace("_", "-")
        ids_t = tuple(ids)
        expect[rs] = Row(
            rs,
            change,
            fact,
            accept,
            deciding=ids_t if accept == INELIGIBLE else (),
            confirm=ids_t if Status.INDETERMINATE in accept else (),
            base=base,
        )
    return Example(name, base, change, expect)


def _all(sets: Iterable[str], accept: frozenset[Outcome], fact: str, *ids: str) -> dict[str, Any]:
    return {rs.replace("-", "_"): (accept, fact, *ids) for rs in sets}


REOPENED: Final = {
    "severe_comorbidity": None,
    "major_organ_damage": None,
    "major_organ_disease": None,
}
FIT_UNKNOWN: Final = {"hsct_fitness_confirmed": None}
LVEF30 = "§1/§3 LVEF limits; §7 UPSIDE cardiac failure (§8.5)"
PAH55 = "§1 pulmonary-pressure limits; §7 SCOT/UPSIDE; §7 MSC-SSc PASP > 55"

EXAMPLES: Final[list[Example]] = [
    _example(
        "dcSSc with LVEF 30 % (confirmations not yet answered)",
        SSC_CANDIDATE,
        {"lvef_percent": 30, **REOPENED, **FIT_UNKNOWN},
        hsct_ssc_upside=(NEVER_ELIGIBLE, f"{LVEF30}: numbers unread", "severe_comorbidity"),
        hsct_ssc_astis=(INELIGIBLE, LVEF30, "lvef-below-45"),
        hsct_ssc_scot=(INELIGIBLE, LVEF30, "lvef-below-50-or-nyha-3-4"),
        hsct_ssc_assist=(INELIGIBLE, LVEF30, "lvef-below-40"),
        hsct_ssc_ebmt_2025=(INELIGIBLE, LVEF30, "lvef-below-45"),
        msc_ssc_farge_2022=(INELIGIBLE, LVEF30, "lvef-below-35"),
        car_t_ssc_ebmt_isct=(INELIGIBLE, LVEF30, "lvef-55-or-more"),
    ),
    _example(
        "dcSSc with mPAP 55 mmHg and PAH (PASP 85, on PAH drugs)",
        SSC_CANDIDATE,
        {
            "mpap_mmhg": 55,
            "pasp_mmhg": 85,
            "pah_diagnosis": True,
            "pah_targeted_therapy": True,
            "severe_pah": None,
        },
        hsct_ssc_upside=(INELIGIBLE, PAH55, "mpap-above-20"),
        hsct_ssc_astis=(INELIGIBLE, PAH55, "mpap-above-50"),
        hsct_ssc_scot=(INELIGIBLE, PAH55, "mpap-above-30", "pulmonary-hypertension"),
        hsct_ssc_assist=(INELIGIBLE, PAH55, "mpap-above-25-or-pasp-above-40"),
        hsct_ssc_ebmt_2025=(INELIGIBLE, PAH55, "mpap-above-25", "pasp-above-40"),
        msc_ssc_farge_2022=(INELIGIBLE, PAH55, "pasp-above-55"),
        car_t_ssc_ebmt_isct=(INDETERMINATE, "§3 NCT06792344 severe PAH (clinician judgement)"),
    ),
    _example(
        "dcSSc with mPAP 35 mmHg",
        SSC_CANDIDATE,
        {"mpap_mmhg": 35},
        hsct_ssc_upside=(INELIGIBLE, "§7 UPSIDE mPAP > 20", "mpap-above-20"),
        hsct_ssc_scot=(INELIGIBLE, "§7 SCOT mPAP > 30", "mpap-above-30"),
        hsct_ssc_assist=(INELIGIBLE, "§1 ASSIST mPAP > 25", "mpap-above-25-or-pasp-above-40"),
        hsct_ssc_ebmt_2025=(INELIGIBLE, "§7 EBMT 2025 mPAP > 25 at rest", "mpap-above-25"),
    ),
    _example(
        "pregnant SSc patient",
        SSC_CANDIDATE,
        {"pregnant": True},
        **_all(SSC_SETS, INELIGIBLE, "§8.1 pregnancy", "pregnancy"),
    ),
    _example(
        "pregnant SLE patient",
        SLE_CANDIDATE,
        {"pregnant": True},
        **_all(SLE_SETS, INELIGIBLE, "§8.1 pregnancy; §7 NCT03580291", "pregnancy"),
    ),
    _example(
        "SSc: active infection, active cancer and ECOG 3",
        SSC_CANDIDATE,
        {
            "active_infection": True,
            "active_malignancy": True,
            "ecog": 3,
            "history_of_malignancy": None,
        },
        **_all(SSC_SETS, INELIGIBLE, "§8.2, §8.3", "active-infection", "active-malignancy"),
    ),
    _example(
        "SLE: active infection, active cancer and ECOG 3",
        SLE_CANDIDATE,
        {"active_infection": True, "active_malignancy": True, "ecog": 3},
        **_all(SLE_SETS, INELIGIBLE, "§8.2, §8.3", "active-infection", "active-malignancy"),
    ),
    _example(
        "SLE patient with an active infection",
        SLE_CANDIDATE,
        {"active_infection": True},
        **_all(SLE_SETS, INELIGIBLE, "§8.2 Greco 2024 Table 1", "active-infection"),
    ),
    _example(
        "SLE patient with a prior CAR-T",
        SLE_CANDIDATE,
        {"prior_car_t": True},
        car_t_sle=(INELIGIBLE, "§7 NCT06222853", "prior-car-t"),
    ),
    _example(
        "lupus nephritis with ALT 1.6 × ULN",
        SLE_CANDIDATE,
        {"alt_x_uln": 1.6},
        msc_sle_nephritis_nct03580291=(INELIGIBLE, LN_REG, "alt-or-ast-above-1-5-uln"),
    ),
    _example(
        "lupus nephritis with bilirubin 1.5 mg/dL",
        SLE_CANDIDATE,
        {"bilirubin_total_mg_dl": 1.5},
        msc_sle_nephritis_nct03580291=(INELIGIBLE, LN_REG, "bilirubin-above-14-mg-l"),
    ),
    _example(
        "lupus nephritis that failed MMF",
        SLE_CANDIDATE,
        {"mmf_failed": True},
        msc_sle_nephritis_nct03580291=(INELIGIBLE, LN_REG, "mmf-failed-or-intolerant"),
    ),
    _example(
        "lupus nephritis intolerant of MMF",
        SLE_CANDIDATE,
        {"mmf_intolerant": True},
        msc_sle_nephritis_nct03580291=(INELIGIBLE, LN_REG, "mmf-failed-or-intolerant"),
    ),
    _example(
        "SLE with LVEF 30 % and no fitness assessment",
        SLE_CANDIDATE,
        {"lvef_percent": 30, **FIT_UNKNOWN},
        hsct_sle_burt_2006=(NEVER_ELIGIBLE, "§8.5 EBMT 2025 Table 2", "hsct_fitness_confirmed"),
        car_t_sle=(INELIGIBLE, "§6 LVEF ≥ 55 %", "lvef-55-or-more"),
    ),
]


def _example_rows() -> Iterable[tuple[str, Row]]:
    for example in EXAMPLES:
        own = SSC_SETS if example.base is SSC_CANDIDATE else SLE_SETS
        for rs in (*SSC_SETS, *SLE_SETS):
            row = example.expect.get(rs)
            if row is None and rs not in own:
                row = Row(rs, example.change, "other disease", NOT_INDICATED, base=example.base)
            if row is not None:
                yield example.name, row


ROWS: Final[list[Row]] = [*_policy_rows(), *PROTOCOL_ROWS]


_ASCII: Final = str.maketrans({"§": "s", "×": "x", "µ": "u", "≥": ">=", "≤": "<=", "–": "-"})


def _param(row: Row, label: str | None = None) -> Any:
    return pytest.param(row, id=(label or row.label).translate(_ASCII))


def _check(row: Row) -> None:
    got, decision = outcome(row.ruleset, row.patient)
    assert got in row.accept, f"{row.fact}: got {got}, expected one of {sorted(row.accept)}"
    if got is Status.INELIGIBLE:
        reasons = {r.criterion.id for r in decisive(decision)}
        assert set(row.deciding) <= reasons, f"{row.fact}: decided by {sorted(reasons)}"
    if got is Status.INDETERMINATE:
        assert set(row.confirm) <= set(decision.to_confirm), decision.to_confirm
        assert set(row.missing) <= set(decision.missing), decision.missing


@pytest.mark.parametrize(
    ("ruleset", "base"),
    [
        *((rs, CLEAN[rs]) for rs in CLEAN),
        *((rs, SSC_CANDIDATE) for rs in SSC_SETS),
        *((rs, SLE_CANDIDATE) for rs in SLE_SETS),
    ],
)
def test_base_candidates_are_eligible(ruleset: str, base: Patient) -> None:
    """Every row starts from a patient who is eligible with everything given, so a row's
    verdict is caused by its one change. When a rule set gains a required value, add it to
    that rule set's base above (and to SSC_CANDIDATE / SLE_CANDIDATE)."""
    got, decision = outcome(ruleset, base)
    assert decision is not None
    assert got is Status.ELIGIBLE, (decision.missing, decision.to_confirm)


def test_every_shipped_rule_set_is_reviewed() -> None:
    assert set(CLEAN) == set(RULES.rulesets) == {*SSC_SETS, *SLE_SETS}


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_source_excludes(row: Row) -> None:
    _check(row)


@pytest.mark.parametrize("row", [_param(r, f"{n} -> {r.ruleset}") for n, r in _example_rows()])
def test_issue_example_patient(row: Row) -> None:
    _check(row)


def _single_feature_criteria() -> Iterable[tuple[str, str, str]]:
    for rs, base in CLEAN.items():
        ruleset = RULES.rulesets[rs]
        for criterion in ruleset.deciding[1:]:
            read = {a.feature for a in atoms(criterion.when)}
            if len(read) == 1 and (feature := read.pop()) in base:
                yield rs, criterion.id, feature


@pytest.mark.parametrize(("ruleset", "criterion", "feature"), list(_single_feature_criteria()))
def test_unknown_value_never_passes(ruleset: str, criterion: str, feature: str) -> None:
    """§8.5 "nothing unread may pass silently": with the one value a criterion reads unknown,
    the clean candidate is indeterminate and that value is asked for."""
    patient = {k: v for k, v in CLEAN[ruleset].items() if k != feature}
    got, decision = outcome(ruleset, patient)
    assert decision is not None
    kind = next(c.kind for c in RULES.rulesets[ruleset].deciding if c.id == criterion)
    assert kind in (CriterionKind.INCLUSION, CriterionKind.EXCLUSION)
    assert got is Status.INDETERMINATE
    assert feature in {*decision.missing, *decision.to_confirm}


# --- decisions of the review, tested as decisions ---------------------------------------------
def test_a_clinicians_no_to_severe_comorbidity_stands_with_the_values_shown_beside_it() -> None:
    """UPSIDE's cardiac, renal and liver numbers could not be read (§7): §8.5 asks a clinician
    instead of inventing a threshold. Unanswered, LVEF 30 % is undecided; answered "no", the
    clinician's judgement stands, and a caution puts the value ASTIS would exclude on beside
    it, so the "no" is never given against the patient's own numbers unseen."""
    unanswered, decision = outcome(
        UPSIDE, {**CLEAN[UPSIDE], "lvef_percent": 30, "severe_comorbidity": None}
    )
    assert (unanswered, decision.to_confirm) == (Status.INDETERMINATE, ("severe_comorbidity",))
    answered, decision = outcome(UPSIDE, {**CLEAN[UPSIDE], "lvef_percent": 30})
    assert answered is Status.ELIGIBLE
    flagged = [r.criterion.id for r in decision.cautions if r.result.value == "met"]
    assert "organ-function-below-other-protocols" in flagged


@pytest.mark.parametrize("ruleset", [MSC_SSC, WANG])
def test_greco_bilirubin_limit_applies_to_car_t_only(ruleset: str) -> None:
    """Greco 2024 Table 1 gives bilirubin "<34 mmol/l in trials" (µmol/L) in the CAR-T trials'
    column; §8 does not extend it across therapies, so the MSC rule sets do not apply it (the
    LN trial has its own, stricter limit)."""
    high = {"bilirubin_total_mg_dl": {"value": 40, "unit": "umol/L"}}
    got, _ = outcome(ruleset, {**CLEAN[ruleset], **high})
    assert got is Status.ELIGIBLE
    car_t, decision = outcome(CART_SLE, {**CLEAN[CART_SLE], **high})
    assert car_t is Status.INELIGIBLE
    assert "bilirubin-34-umol-l-or-more" in {r.criterion.id for r in decisive(decision)}


def test_ebmt_level_iii_route_is_flagged_for_multidisciplinary_review() -> None:
    """E4: Table 5's progressive-ILD route for limited SSc or sine scleroderma with mRSS < 15 is
    level III (expert opinion): a patient who qualifies only through it is eligible with a
    caution, never a plain eligible; the usual diffuse candidate carries no such caution."""
    level_iii = {
        "ssc_subtype": "sine_scleroderma",
        "mrss": 0,
        "ild_progressive_12m": None,
        "ild_progression_on_ct": True,
        "internal_organ_involvement": False,
    }
    got, decision = outcome(EBMT, {**CLEAN[EBMT], **level_iii})
    flagged = {r.criterion.id for r in decision.cautions if r.result.value == "met"}
    assert (got, flagged) == (Status.ELIGIBLE, {"level-iii-progressive-ild-route"})
    # "Progressive" by either definition does not say which: the CT one is asked for.
    either = {**level_iii, "ild_progressive_12m": True, "ild_progression_on_ct": None}
    got, decision = outcome(EBMT, {**CLEAN[EBMT], **either})
    assert (got, decision.missing) == (Status.INDETERMINATE, ("ild_progression_on_ct",))
    _, usual = outcome(EBMT, CLEAN[EBMT])
    assert not [r for r in usual.cautions if r.result.value == "met"]


def test_upcr_threshold_with_an_unverified_unit_is_graded_partial() -> None:
    """N9: the registry's "proteinuria/creatinine ratio >1.0" has no unit (UNVERIFIED); g/g is
    assumed, so the criterion reading it may not claim to be verified."""
    criterion = next(c for c in RULES.rulesets[LN].deciding if c.id == "proteinuria-above-1")
    assert "upcr_g_g" in {a.feature for a in atoms(criterion.when)}
    assert criterion.evidence.value == "partial"
