"""Patients for the shipped hsct-ssc-astis rule set, shared by API, CLI and e2e tests."""

from __future__ import annotations

from typing import Any

ASTIS_CANDIDATE: dict[str, Any] = {
    "ssc_diagnosis": True,
    "ssc_subtype": "diffuse_cutaneous",
    "age_years": 45,
    "disease_duration_years": 2,
    "mrss": 25,
    "ild_present": True,
    "dlco_percent_predicted": 55,
    "pao2_mmhg": {"value": 11.5, "unit": "kPa"},
    "mpap_mmhg": 20,
    "lvef_percent": 60,
    "creatinine_clearance_ml_min": 90,
    "prior_cyclophosphamide_iv_g": 3,
    "prior_cyclophosphamide_oral_months": 0,
    "uncontrolled_arrhythmia": False,
    "uncontrolled_hypertension": False,
    "pericardial_contraindication": False,
}
