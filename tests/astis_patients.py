"""Patients for the shipped hsct-ssc-astis rule set, shared by API, CLI and e2e tests."""

from __future__ import annotations

from typing import Any

# Eligible under ASTIS 2.1.0: the values of its clean-candidate vignette (rules/tests/
# hsct-ssc-astis.yaml "clear candidate") that the tests do not vary on purpose, including the
# clinician's confirmation that there is no concomitant severe disease and every general
# contraindication of cellular therapies (rules/fragments/) known to be absent.
ASTIS_CANDIDATE: dict[str, Any] = {
    "ssc_diagnosis": True,
    "ssc_subtype": "diffuse_cutaneous",
    "age_years": 45,
    "disease_duration_years": 2,
    "mrss": 25,
    "ild_present": True,
    "ild_onset_or_worsening_6m": True,
    "dlco_percent_predicted": 55,
    "fvc_percent_predicted": 70,
    "pao2_mmhg": {"value": 11.5, "unit": "kPa"},
    "mpap_mmhg": 20,
    "lvef_percent": 60,
    "creatinine_clearance_ml_min": 90,
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
}
