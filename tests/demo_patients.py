"""Patients for the golden demo rule set (tests/golden/rules)."""

from __future__ import annotations

from typing import Any

# Eligible under the demo rules: every deciding value known, none excluding.
DEMO_CANDIDATE: dict[str, Any] = {
    "has_disease": True,
    "age_years": 40,
    "subtype": "diffuse",
    "score": 20,
    "organ_a": True,
    "organ_b": False,
    "lvef_percent": 60,
    "pao2_mmhg": 80,
    "serum_creatinine": 1.0,
}
