"""Synthetic patients for the benchmarks: every catalogue feature, some left unknown.

Values are drawn inside each feature's plausible range, so the evaluator walks every branch
(met, not met, unknown) rather than one happy path. Not a cohort model: issue 7's `eligo synth`
will add correlated distributions.
"""

from __future__ import annotations

import random
from typing import Any

from app.engine.model import RuleBase
from app.engine.schema import FeatureType


def random_patient(rules: RuleBase, rng: random.Random, missing: float = 0.15) -> dict[str, Any]:
    patient: dict[str, Any] = {}
    for feature in rules.features.values():
        if rng.random() < missing:
            continue
        spec = feature.spec
        if spec.type is FeatureType.BOOLEAN:
            patient[spec.id] = rng.random() < 0.3
        elif spec.type is FeatureType.ENUM:
            patient[spec.id] = rng.choice(spec.values or [])
        else:
            low, high = spec.range or (0.0, 1.0)
            # Counts, scores and classes are whole numbers: a fraction is refused.
            patient[spec.id] = round(rng.uniform(low, high), 0 if spec.integer else 1)
    # A referral clinic sees mostly one of the two diseases, so most rule sets get past their
    # indication and the evaluator does the full work.
    ssc = rng.random() < 0.5
    patient["ssc_diagnosis"] = ssc and rng.random() < 0.9
    patient["sle_diagnosis"] = not ssc and rng.random() < 0.9
    return patient
