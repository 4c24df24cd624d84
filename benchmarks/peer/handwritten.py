"""The peer rule set of shared/docs/BENCHMARK.md as a hand-written Python function: the
per-patient floor.

A few comparisons per criterion on an already-parsed dict (a JSONL line of the peer cohort
through `json.loads`): None is unknown, a missing key is unknown, and Kleene's tables are
written out where a criterion has a connective. It returns every criterion's truth (True:
met, False: not met, None: unknown; for an exclusion, met means it applies) and the status,
with BENCHMARK.md's rule, which is Eligo's: not_indicated if the indication is not met;
ineligible if an inclusion is not met or an exclusion met; indeterminate if anything is
unknown; else eligible.

Nothing here is shared with Eligo: it is the reference Eligo is held to, exactly (tests/
benchmarks/test_peer.py), and the speed it is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Truth = bool | None

INCLUSIONS = ("inc_age", "inc_duration", "inc_mrss", "inc_organ")
EXCLUSIONS = (
    "exc_dlco",
    "exc_pao2",
    "exc_mpap",
    "exc_lvef",
    "exc_crcl",
    "exc_cyc_iv",
    "exc_cyc_oral",
    "exc_htn",
    "exc_arrhythmia",
    "exc_pregnant",
)
CRITERIA = ("inc_ssc", *INCLUSIONS, *EXCLUSIONS)


def decide_peer(patient: Mapping[str, Any]) -> dict[str, Any]:
    """Criterion id -> True / False / None, and "status"."""
    get = patient.get
    ssc = get("ssc_diagnosis")

    v = get("age_years")
    age = None if v is None else 18 <= v <= 65
    v = get("disease_duration_years")
    duration = None if v is None else v <= 4
    v = get("mrss")
    mrss = None if v is None else v > 14

    ild, renal = get("ild_present"), get("renal_crisis_history")
    lvef = get("lvef_percent")
    lvef_50 = None if lvef is None else lvef < 50
    if ild or lvef_50 or renal:  # Kleene OR: any true decides, else any unknown is unknown
        organ: Truth = True
    elif ild is None or lvef_50 is None or renal is None:
        organ = None
    else:
        organ = False

    v = get("dlco_percent_predicted")
    dlco = None if v is None else v < 40
    v = get("pao2_mmhg")
    pao2 = None if v is None else v < 60
    v = get("mpap_mmhg")
    mpap = None if v is None else v > 50
    lvef_45 = None if lvef is None else lvef < 45
    v = get("creatinine_clearance_ml_min")
    crcl = None if v is None else v < 40
    v = get("prior_cyclophosphamide_iv_g")
    cyc_iv = None if v is None else v > 5
    v = get("prior_cyclophosphamide_oral_months")
    cyc_oral = None if v is None else v > 3
    htn, arrhythmia, pregnant = (
        get("uncontrolled_hypertension"),
        get("uncontrolled_arrhythmia"),
        get("pregnant"),
    )

    inclusions = (age, duration, mrss, organ)
    exclusions = (dlco, pao2, mpap, lvef_45, crcl, cyc_iv, cyc_oral, htn, arrhythmia, pregnant)
    if ssc is False:
        status = "not_indicated"
    elif False in inclusions or True in exclusions:
        status = "ineligible"
    elif ssc is None or None in inclusions or None in exclusions:
        status = "indeterminate"
    else:
        status = "eligible"
    return {
        "inc_ssc": ssc,
        "inc_age": age,
        "inc_duration": duration,
        "inc_mrss": mrss,
        "inc_organ": organ,
        "exc_dlco": dlco,
        "exc_pao2": pao2,
        "exc_mpap": mpap,
        "exc_lvef": lvef_45,
        "exc_crcl": crcl,
        "exc_cyc_iv": cyc_iv,
        "exc_cyc_oral": cyc_oral,
        "exc_htn": htn,
        "exc_arrhythmia": arrhythmia,
        "exc_pregnant": pregnant,
        "status": status,
    }
