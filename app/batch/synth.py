"""Synthetic registry cohorts of SSc and SLE patients, for tests and benchmarks of screening.

SYNTHETIC DATA, NOT CLINICALLY CALIBRATED. Every patient is made up by a random generator. The
distributions have plausible shapes and the features go together the way a clinician would
expect (diffuse cutaneous SSc has higher skin scores and more ILD; ILD lowers FVC and DLCO;
pulmonary hypertension raises mPAP and lowers DLCO; lupus nephritis raises proteinuria and
creatinine; eGFR and creatinine clearance are computed from creatinine), so that registry
screening meets a realistic mix of eligible, ineligible, indeterminate and not indicated
patients. No number here estimates a real population; nothing measured on this cohort says
anything about patients.

How a cohort is made:
- Rows come in blocks of BLOCK patients; block k draws from its own numpy stream seeded by
  (seed, k), so patient i depends only on the seed and i (for a given numpy version): a
  cohort of 2,000 is the first 2,000 rows of a cohort of 1,000,000, and the chunk size of a
  streamed write never changes the data.
- Per block, vectorised (no Python loop per patient): the complete "true" record is drawn
  first, disease by disease and organ by organ (`_STEPS`), then a missingness model hides part
  of it (`_known`). Missingness is by kind of examination (`_GROUPS`: a patient without lung
  function tests lacks both FVC and DLCO), depends on the disease and on indication
  (right-heart catheterisation mostly for suspected pulmonary hypertension), and is low for
  the few patients in an HSCT work-up, who are the only ones complete enough to be eligible:
  for them the general contraindications (pregnancy, active infection, active malignancy) are
  always known, and the clinician confirmations (severe comorbidity, transplant fitness,
  major organ damage), rare elsewhere in a registry, are answered, mostly favourably.
- Values the catalogue derives from others (`derive:`: a prior alkylating agent from any
  cyclophosphamide given, a history of malignancy from an active one, renal replacement from
  dialysis, recent immunosuppression from IV cyclophosphamide in the last 12 weeks) are drawn
  to agree with them, so no value given is ever replaced by one implied (`corrected`).
- Columns: `id` ("P0000001", ...) then one column per catalogue feature, in catalogue order:
  numbers as float64 in the catalogue's canonical unit (converted from the unit the model
  draws in where they differ, rounded to a realistic precision, whole where the catalogue says
  `integer:`, clipped to the feature's range), booleans as bool, enums as dictionary-encoded
  strings holding the catalogue's values. Null is unknown. Units, ranges and enum values are
  the catalogue's, read when a cohort is made (`plan_columns`); the model keeps only its own
  knowledge (the distributions, the unit they are in, what each drawn code means).
  A catalogue feature this model does not know gets a simple marginal (`_marginal`), so a new
  feature never breaks the generator.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from app.engine.model import Feature
from app.engine.schema import FeatureType
from app.engine.units import IDENTITY, Linear, UnitError, converter

Array = NDArray[Any]

BLOCK = 16_384  # rows per independently seeded block (the unit of determinism)
CHUNK = 8 * BLOCK  # rows per streamed table / Parquet row group (~130k)

SSC, SLE, NEITHER = 0, 1, 2  # latent registry disease
FEMALE, MALE = 0, 1  # codes into DRAWN["sex"]
DIFFUSE, LIMITED, SINE = 0, 1, 2  # codes into DRAWN["ssc_subtype"]
CLASS_III, CLASS_IV, CLASS_VI = 2, 3, 5  # codes into DRAWN["lupus_nephritis_class"]

# Enum features: what each code the model draws means (the model's knowledge: code 0 of sex is
# a woman). The column holds the catalogue's values, each code written as the value of that
# name; a catalogue without one of these names is refused (`plan_columns`).
DRAWN: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male", "other", "unknown"),
    "ssc_subtype": ("diffuse_cutaneous", "limited_cutaneous", "sine_scleroderma"),
    "lupus_nephritis_class": ("I", "II", "III", "IV", "V", "VI"),
}

NUMBERS: dict[str, tuple[str, int]] = {
    "age_years": ("a", 0),
    "disease_duration_years": ("a", 1),
    "sledai_2k": ("{score}", 0),
    "mrss": ("{score}", 0),
    "fvc_percent_predicted": ("%", 0),
    "dlco_percent_predicted": ("%", 0),
    "pao2_mmhg": ("mm[Hg]", 0),
    "spo2_percent": ("%", 0),
    "lvef_percent": ("%", 0),
    "nyha_class": ("{class}", 0),
    "mpap_mmhg": ("mm[Hg]", 0),
    "pasp_mmhg": ("mm[Hg]", 0),
    "creatinine_clearance_ml_min": ("mL/min", 0),
    "egfr": ("mL/min/{1.73_m2}", 0),
    "serum_creatinine": ("mg/dL", 2),
    "proteinuria_g_24h": ("g/(24.h)", 2),
    "bilirubin_x_uln": ("{ratio}", 2),
    "alt_x_uln": ("{ratio}", 2),
    "failed_immunosuppressants": ("{count}", 0),
    "unresponsive_immunosuppressants": ("{count}", 0),
    "prior_cyclophosphamide_iv_g": ("g", 2),
    "prior_cyclophosphamide_iv_g_m2": ("g/m2", 2),
    "prior_cyclophosphamide_iv_courses": ("{count}", 0),
    "prior_cyclophosphamide_oral_months": ("mo", 1),
    "prednisone_mg_day": ("mg/d", 1),
    "ecog": ("{score}", 0),
    "who_functional_class": ("{class}", 0),
    "pvr_wood_units": ("[wood'U]", 1),
    "tapse_cm": ("cm", 1),
    "crp_mg_l": ("mg/L", 1),
    "ast_x_uln": ("{ratio}", 2),
    "upcr_g_g": ("g/g", 2),
    "glomerulosclerosis_percent": ("%", 0),
    "crescents_percent": ("%", 0),
    "capillary_loop_lesions_percent": ("%", 0),
    "prior_cyclophosphamide_iv_months": ("mo", 1),
    "other_immunosuppressant_months": ("mo", 1),
    "immunosuppressant_months_incl_gc": ("mo", 1),
    "esr_mm_h": ("mm/h", 0),
    "hemoglobin_g_dl": ("g/dL", 1),
    "bilirubin_total_mg_dl": ("mg/dL", 2),
    "pasp_fluid_challenge_mmhg": ("mm[Hg]", 0),
    "mpap_fluid_challenge_mmhg": ("mm[Hg]", 0),
    "mpap_exercise_mmhg": ("mm[Hg]", 0),
    "months_since_last_iv_cyclophosphamide": ("mo", 1),
}

# Kinds of examination or record: P(the patient has one) for SSc, SLE and neither, P in an
# HSCT work-up, and the latent flag the group needs (mRSS only for SSc, a biopsy class only
# with lupus nephritis). Features of one group are missing together.
_GROUPS: dict[str, tuple[float, float, float, float, str | None]] = {
    "record": (1.0, 1.0, 1.0, 1.0, None),  # demographics, diagnoses: almost always there
    "ssc_class": (0.97, 0.97, 0.97, 1.0, "ssc_diagnosis"),
    "skin": (0.85, 0.85, 0.85, 0.99, "ssc_diagnosis"),
    "ssc_history": (0.85, 0.85, 0.85, 0.99, "ssc_diagnosis"),
    "lupus": (0.85, 0.85, 0.85, 0.97, "sle_diagnosis"),
    "biopsy": (0.85, 0.85, 0.85, 0.9, "_ln"),
    "hrct": (0.9, 0.55, 0.6, 0.99, None),
    "pft": (0.85, 0.45, 0.5, 0.99, None),
    "blood_gas": (0.15, 0.05, 0.1, 0.9, None),
    "vitals": (0.75, 0.7, 0.7, 0.99, None),
    "echo": (0.75, 0.4, 0.4, 0.99, None),
    "rhc": (0.02, 0.01, 0.01, 0.85, None),  # right-heart catheterisation: invasive
    "cardiac_mri": (0.08, 0.05, 0.03, 0.92, None),
    "renal": (0.92, 0.95, 0.88, 1.0, None),
    "urine": (0.3, 0.6, 0.3, 0.9, None),
    "liver": (0.85, 0.9, 0.8, 0.99, None),
    "inflammation": (0.85, 0.85, 0.8, 0.98, None),
    "serology": (0.6, 0.7, 0.5, 0.98, None),
    "endoscopy": (0.35, 0.05, 0.05, 0.92, None),
    "medication": (0.85, 0.85, 0.75, 0.99, None),
    "cyclophosphamide": (0.75, 0.75, 0.65, 0.98, None),
    "function": (0.4, 0.3, 0.3, 0.97, None),  # ECOG, NYHA, WHO class: rarely in registries
    "comorbidity": (0.8, 0.8, 0.7, 0.99, None),
    "pregnancy": (0.65, 0.75, 0.6, 1.0, None),  # women up to 55; see _indicated
    "judgement": (0.7, 0.7, 0.5, 0.98, None),  # clinician judgements
    # The general contraindications of every cellular therapy: always asked in a work-up.
    "contraindications": (0.8, 0.8, 0.7, 1.0, None),
    # Clinician confirmations (severe comorbidity, transplant fitness, organ damage) are
    # judged against a protocol: rare in a registry, answered in an HSCT work-up.
    "confirmation": (0.2, 0.2, 0.1, 0.97, None),
    "blood_count": (0.9, 0.95, 0.85, 1.0, None),
    "ecg": (0.6, 0.5, 0.45, 0.99, None),
    "fluid_challenge": (0.0, 0.0, 0.0, 0.85, None),  # done only in a work-up (EBMT 2025)
}

# Feature -> (group, P(known | group present), the same in an HSCT work-up).
_KNOWN: dict[str, tuple[str, float, float]] = {
    "age_years": ("record", 0.998, 1.0),
    "sex": ("record", 0.995, 1.0),
    "ssc_diagnosis": ("record", 0.995, 1.0),
    "ssc_subtype": ("ssc_class", 1.0, 1.0),
    "sle_diagnosis": ("record", 0.99, 1.0),
    "disease_duration_years": ("record", 0.93, 1.0),
    "internal_organ_involvement": ("judgement", 0.85, 0.99),
    "sledai_2k": ("lupus", 0.9, 0.97),
    "cns_lupus_recent": ("lupus", 0.85, 0.97),
    "major_organ_damage": ("confirmation", 0.9, 1.0),
    "mrss": ("skin", 1.0, 1.0),
    "ild_present": ("hrct", 1.0, 1.0),
    "fvc_percent_predicted": ("pft", 0.99, 1.0),
    "dlco_percent_predicted": ("pft", 0.92, 0.99),
    "pao2_mmhg": ("blood_gas", 1.0, 1.0),
    "spo2_percent": ("vitals", 0.9, 1.0),
    "lvef_percent": ("echo", 0.97, 1.0),
    "nyha_class": ("function", 0.8, 0.97),
    "mpap_mmhg": ("rhc", 1.0, 1.0),
    "pasp_mmhg": ("echo", 0.85, 0.97),
    "pah_diagnosis": ("record", 0.93, 1.0),
    "pericardial_contraindication": ("cardiac_mri", 1.0, 1.0),
    "creatinine_clearance_ml_min": ("renal", 0.55, 0.97),
    "egfr": ("renal", 0.95, 1.0),
    "serum_creatinine": ("renal", 1.0, 1.0),
    "proteinuria_g_24h": ("urine", 0.7, 0.9),
    "renal_crisis_history": ("ssc_history", 1.0, 1.0),
    "dialysis": ("record", 0.95, 1.0),
    "lupus_nephritis_class": ("biopsy", 1.0, 1.0),
    "bilirubin_x_uln": ("liver", 0.95, 1.0),
    "alt_x_uln": ("liver", 1.0, 1.0),
    "failed_immunosuppressants": ("medication", 0.9, 0.99),
    "unresponsive_immunosuppressants": ("medication", 0.8, 0.98),
    "prior_cyclophosphamide_iv_g": ("cyclophosphamide", 0.9, 0.99),
    "prior_cyclophosphamide_iv_g_m2": ("cyclophosphamide", 0.7, 0.97),
    "prior_cyclophosphamide_iv_courses": ("cyclophosphamide", 0.95, 0.99),
    "prior_cyclophosphamide_oral_months": ("cyclophosphamide", 0.95, 0.99),
    "prednisone_mg_day": ("medication", 0.95, 1.0),
    "prior_car_t": ("medication", 0.9, 0.99),
    "live_vaccine_last_4_weeks": ("medication", 0.5, 0.97),
    "ecog": ("function", 0.7, 0.99),
    "current_smoker": ("comorbidity", 0.9, 0.99),
    "pregnant": ("pregnancy", 1.0, 1.0),  # known in every work-up: see _GROUPS
    "active_infection": ("contraindications", 0.9, 1.0),
    "chronic_viral_infection": ("serology", 1.0, 1.0),
    "active_malignancy": ("contraindications", 0.95, 1.0),
    "uncontrolled_hypertension": ("comorbidity", 0.92, 0.99),
    "uncontrolled_arrhythmia": ("comorbidity", 0.9, 0.99),
    "gave_active": ("endoscopy", 1.0, 1.0),
    "disease_active": ("judgement", 0.85, 0.99),
    "severe_organ_involvement": ("judgement", 0.8, 0.98),
    "severe_comorbidity": ("confirmation", 0.9, 1.0),
    "who_functional_class": ("function", 0.5, 0.95),
    "pah_targeted_therapy": ("medication", 0.95, 1.0),
    "severe_pah": ("judgement", 0.8, 0.98),
    "pvr_wood_units": ("rhc", 0.9, 0.97),
    "tapse_cm": ("echo", 0.7, 0.97),
    "crp_mg_l": ("inflammation", 1.0, 1.0),
    "ast_x_uln": ("liver", 0.9, 1.0),
    "upcr_g_g": ("urine", 0.75, 0.9),
    "glomerulosclerosis_percent": ("biopsy", 0.8, 0.9),
    "crescents_percent": ("biopsy", 0.85, 0.9),
    "refractory_to_cyclophosphamide": ("judgement", 0.6, 0.97),
    "hsct_contraindicated": ("judgement", 0.3, 0.97),
    "prior_cyclophosphamide_iv_months": ("cyclophosphamide", 0.85, 0.98),
    "prior_alkylating_or_irradiation": ("cyclophosphamide", 1.0, 1.0),
    "other_immunosuppressant_months": ("medication", 0.8, 0.98),
    "hsct_fitness_confirmed": ("confirmation", 0.3, 1.0),  # assessed for HSCT candidates
    "immunosuppressant_months_incl_gc": ("medication", 0.7, 0.98),
    "ild_progressive_12m": ("pft", 0.75, 0.97),  # needs serial lung function
    "ild_onset_or_worsening_6m": ("hrct", 0.7, 0.97),
    "ssc_renal_involvement": ("ssc_history", 0.9, 1.0),
    "ssc_cardiac_involvement": ("ssc_history", 0.85, 1.0),
    "gi_involvement": ("ssc_history", 0.7, 0.97),
    "ssc_mimic_or_toxic_exposure": ("ssc_history", 0.5, 0.97),
    "trunk_skin_involvement": ("skin", 0.6, 0.98),
    "esr_mm_h": ("inflammation", 0.7, 0.97),
    "hemoglobin_g_dl": ("blood_count", 1.0, 1.0),
    "bilirubin_total_mg_dl": ("liver", 0.9, 1.0),
    "pasp_fluid_challenge_mmhg": ("fluid_challenge", 1.0, 0.95),
    "mpap_fluid_challenge_mmhg": ("rhc", 0.05, 0.8),  # during the catheterisation, if asked
    "mpap_exercise_mmhg": ("rhc", 0.05, 0.6),  # exercise catheter studies are rarer
    "severe_cad_unrevascularised": ("comorbidity", 0.85, 1.0),
    "symptomatic_cardiac_disease": ("comorbidity", 0.85, 1.0),
    "ecg_significant_abnormality": ("ecg", 1.0, 1.0),
    "months_since_last_iv_cyclophosphamide": ("cyclophosphamide", 0.8, 0.97),  # if ever given
    "history_of_malignancy": ("comorbidity", 0.9, 1.0),
    "mmf_failed": ("medication", 0.8, 0.98),
    "mmf_intolerant": ("medication", 0.75, 0.98),
    "immunosuppressant_last_12_weeks": ("medication", 0.9, 1.0),
    "renal_replacement_last_3_months": ("renal", 0.9, 1.0),
    "other_autoimmune_disease": ("record", 0.85, 0.99),
    "syphilis_positive": ("serology", 0.9, 1.0),
    "cmv_infection": ("serology", 0.8, 0.97),
    "serious_lung_lesions": ("confirmation", 0.9, 1.0),
    "capillary_loop_lesions_percent": ("biopsy", 0.8, 0.9),
    "echo_d_sign": ("echo", 0.7, 0.97),
    "major_organ_disease": ("confirmation", 0.9, 1.0),
    "contraception_assured": ("confirmation", 0.6, 1.0),  # asked in a work-up
    "first_line_6_months_or_intolerant": ("medication", 0.7, 0.98),
    "ild_pft_decline_12m": ("pft", 0.75, 0.97),  # needs serial lung function
    "ild_progression_on_ct": ("hrct", 0.7, 0.97),  # needs serial CT
}

MODELLED = frozenset(_KNOWN)

# Lupus nephritis by ISN/RPS class I..VI: share among nephritis, added log-creatinine, and
# median proteinuria (g/24 h) while active.
_LN_CLASS_P = (0.03, 0.1, 0.22, 0.4, 0.2, 0.05)
_LN_LOG_CREATININE = np.array([0.0, 0.05, 0.15, 0.35, 0.1, 1.2])
_LN_PROTEINURIA = np.array([0.2, 0.4, 2.0, 2.5, 3.0, 1.0])
_LN_DIALYSIS = np.array([0.0, 0.0, 0.02, 0.05, 0.01, 0.5])


@dataclass
class _Block:
    """One block of patients under construction: every column and latent drawn so far
    (latents start with "_"), all arrays of length n."""

    rng: np.random.Generator
    n: int
    v: dict[str, Array] = field(default_factory=dict)

    def chance(self, p: Array | float) -> Array:
        """A Bernoulli draw per patient with (per-patient) probability p."""
        return self.rng.random(self.n) < p

    def normal(self, mean: Array | float, sd: Array | float) -> Array:
        return self.rng.normal(mean, sd, self.n)

    def by_disease(self, ssc: float, sle: float, neither: float) -> Array:
        """A per-patient parameter that depends on the registry disease."""
        return np.array([ssc, sle, neither])[self.v["_disease"]]

    def subtype_is(self, code: int) -> Array:
        return np.asarray(self.v["ssc_subtype"] == code)


def _demographics(b: _Block) -> None:
    """Disease first (55 % SSc, 40 % SLE, 5 % neither): in an SSc/SLE registry almost
    everything else depends on it. Height and weight are latent: they feed creatinine
    clearance and the cyclophosphamide dose per m2."""
    u = b.rng.random(b.n)
    b.v["_disease"] = np.where(u < 0.55, SSC, np.where(u < 0.95, SLE, NEITHER)).astype(np.int8)
    female = b.chance(b.by_disease(0.85, 0.9, 0.75))
    other = b.rng.random(b.n)
    sex = np.select([other < 0.003, other < 0.008], [2, 3], np.where(female, FEMALE, MALE))
    b.v["sex"] = sex.astype(np.int8)
    age = np.floor(np.clip(b.normal(b.by_disease(54, 41, 48), b.by_disease(13, 14, 15)), 8, 95))
    b.v["age_years"] = age
    male = sex == MALE
    growth = np.clip(0.45 + 0.035 * age, 0.0, 1.0)  # children are smaller
    height = np.where(male, b.normal(177, 7), b.normal(163, 7)) * growth
    typical_weight = np.where(male, 82.0, 68.0)
    weight = typical_weight * np.exp(b.normal(0, 0.19)) * growth**3
    b.v["_weight"] = weight
    b.v["_bsa"] = np.sqrt(height * weight / 3600)  # Mosteller


def _diagnosis(b: _Block) -> None:
    """Diagnoses follow the latent disease (2 % of SSc patients also carry SLE, an overlap);
    the subtype exists only for SSc; diffuse disease is seen earlier in its course."""
    ssc = b.v["_disease"] == SSC
    b.v["ssc_diagnosis"] = ssc
    b.v["sle_diagnosis"] = (b.v["_disease"] == SLE) | (ssc & b.chance(0.02))
    u = b.rng.random(b.n)
    subtype = np.where(u < 0.36, DIFFUSE, np.where(u < 0.94, LIMITED, SINE))
    b.v["ssc_subtype"] = np.where(ssc, subtype, -1).astype(np.int8)
    diffuse = b.subtype_is(DIFFUSE)
    shape = np.where(diffuse, 1.2, b.by_disease(1.5, 1.4, 1.2))
    scale = np.where(diffuse, 4.5, b.by_disease(7.0, 7.0, 4.0))
    duration = np.minimum(b.rng.gamma(shape, scale), np.maximum(b.v["age_years"] - 3, 0))
    b.v["disease_duration_years"] = duration
    early_diffuse = diffuse & (duration <= 4)
    b.v["disease_active"] = b.chance(np.where(early_diffuse, 0.65, b.by_disease(0.25, 0.45, 0.3)))


def _skin(b: _Block) -> None:
    """mRSS: high in diffuse disease early on (peaks in the first years, then regresses),
    low in limited, about zero in sine scleroderma."""
    diffuse, limited = b.subtype_is(DIFFUSE), b.subtype_is(LIMITED)
    duration = b.v["disease_duration_years"]
    mean = np.select([diffuse, limited], [24 - 1.2 * np.minimum(duration, 10), 6.0], 0.5)
    sd = np.select([diffuse, limited], [7.0, 3.0], 0.8)
    b.v["mrss"] = np.maximum(b.normal(mean, sd), 0)


def _lung(b: _Block) -> None:
    """ILD (most in diffuse SSc) with a latent severity that lowers FVC, DLCO and PaO2;
    pulmonary arterial hypertension (most in limited SSc) lowers DLCO and PaO2 too. SpO2
    follows PaO2 through the oxygen dissociation curve."""
    diffuse, limited, sine = b.subtype_is(DIFFUSE), b.subtype_is(LIMITED), b.subtype_is(SINE)
    ild = b.chance(
        np.select([diffuse, limited, sine], [0.55, 0.3, 0.35], b.by_disease(0, 0.06, 0.1))
    )
    severity = np.where(ild, b.rng.gamma(2.0, 0.5, b.n), 0.0)
    pah = b.chance(np.select([diffuse, limited, sine], [0.07, 0.12, 0.08], 0.02))
    pah_severity = np.where(pah, b.rng.gamma(3.0, 1 / 3, b.n), 0.0)
    b.v.update(ild_present=ild, _ild_severity=severity, pah_diagnosis=pah)
    b.v["_pah_severity"] = pah_severity
    fvc = b.normal(97, 13) - 18 * severity
    b.v["fvc_percent_predicted"] = fvc
    dlco = b.normal(88, 12) - 20 * severity - 22 * pah_severity + 0.15 * (fvc - 97)
    b.v["dlco_percent_predicted"] = dlco
    older = np.maximum(b.v["age_years"] - 40, 0)
    pao2 = np.clip(b.normal(92, 7) - 8 * severity - 10 * pah_severity - 0.2 * older, 20, 150)
    b.v["pao2_mmhg"] = pao2
    b.v["spo2_percent"] = _saturation(pao2) + b.normal(0, 0.8)


def _saturation(pao2: Array) -> Array:
    """Severinghaus' oxygen dissociation curve: SaO2 (%) from PaO2 (mmHg)."""
    return np.asarray(100 / (23400 / (pao2**3 + 150 * pao2) + 1))


def _pulmonary_vessels(b: _Block) -> None:
    """Echo PASP rises with PAH (and a little with ILD); mPAP follows from it by Chemla's
    relation (mPAP = 0.61 sPAP + 2) and is above 20 in every PAH patient; PVR and TAPSE
    worsen with PAH severity."""
    pah, pah_severity = b.v["pah_diagnosis"], b.v["_pah_severity"]
    pasp = b.normal(25, 4.5) + 5 * b.v["_ild_severity"] + pah_severity * b.normal(32, 8)
    mpap = 0.61 * pasp + 2 + b.normal(0, 3)
    mpap = np.where(pah, np.maximum(mpap, 21 + np.abs(b.normal(0, 3))), np.maximum(mpap, 8))
    pvr = np.where(pah, 2.5 + 0.3 * np.maximum(mpap - 20, 0), 1.3) * np.exp(b.normal(0, 0.3))
    b.v.update(pasp_mmhg=pasp, mpap_mmhg=mpap, pvr_wood_units=pvr)
    b.v["tapse_cm"] = b.normal(2.3, 0.3) - 0.45 * pah_severity
    b.v["pah_targeted_therapy"] = pah & b.chance(0.85)


def _heart(b: _Block) -> None:
    """Primary heart involvement lowers LVEF; functional class worsens with ILD, PAH and
    heart involvement; WHO class mostly agrees with NYHA."""
    cardiac = b.chance(np.where(b.subtype_is(DIFFUSE), 0.1, b.by_disease(0.05, 0.05, 0.03)))
    b.v["_cardiac"] = cardiac
    b.v["lvef_percent"] = b.normal(62, 5) - np.where(cardiac, b.rng.gamma(2.0, 8.0, b.n), 0)
    worse = 0.07 + 0.12 * b.v["_ild_severity"] + 0.2 * b.v["_pah_severity"] + 0.25 * cardiac
    nyha = 1 + b.rng.binomial(3, np.clip(worse, 0, 0.9))
    b.v["nyha_class"] = nyha
    shift = np.where(b.chance(0.2), b.rng.integers(-1, 2, b.n), 0)
    who = np.clip(nyha + shift, 1, 4)
    b.v["who_functional_class"] = who
    b.v["severe_pah"] = b.v["pah_diagnosis"] & ((b.v["mpap_mmhg"] > 45) | (who >= 3))
    b.v["pericardial_contraindication"] = b.chance(0.015 + 0.15 * cardiac)
    b.v["uncontrolled_arrhythmia"] = b.chance(0.015 + 0.08 * cardiac)


def _nephritis(b: _Block) -> None:
    """Lupus nephritis in 40 % of SLE (class IV commonest) and scleroderma renal crisis
    (mostly diffuse SSc): both bring dialysis and hypertension; biopsy findings by class."""
    ln = b.v["sle_diagnosis"] & b.chance(0.4)
    cls = b.rng.choice(6, size=b.n, p=_LN_CLASS_P)
    b.v["_ln"], b.v["_ln_class"] = ln, cls
    b.v["lupus_nephritis_class"] = np.where(ln, cls, -1).astype(np.int8)
    crisis = b.v["ssc_diagnosis"] & b.chance(np.where(b.subtype_is(DIFFUSE), 0.08, 0.02))
    b.v["renal_crisis_history"] = crisis
    b.v["dialysis"] = b.chance(0.002 + ln * _LN_DIALYSIS[cls] + 0.2 * crisis)
    b.v["uncontrolled_hypertension"] = b.chance(0.04 + 0.3 * crisis + 0.08 * ln)
    sclerosed = np.where(cls == CLASS_VI, 85 + 15 * b.rng.beta(2, 2, b.n), 0)
    b.v["glomerulosclerosis_percent"] = sclerosed + 100 * b.rng.beta(1.2, 8, b.n) * (
        cls != CLASS_VI
    )
    proliferative = (cls == CLASS_III) | (cls == CLASS_IV)
    b.v["_proliferative_ln"] = ln & proliferative
    crescents = np.where(proliferative, b.rng.beta(1, 5, b.n), b.rng.beta(0.4, 25, b.n))
    b.v["crescents_percent"] = 100 * crescents
    # Glomeruli with capillary-loop necrosis, microthrombi or a cellular crescent, once each:
    # some of the crescents (not every one is cellular) and loop lesions of their own.
    loops = np.where(proliferative, b.rng.beta(1, 8, b.n), b.rng.beta(0.3, 40, b.n))
    cellular = crescents * b.rng.uniform(0.3, 1.0, b.n)
    b.v["capillary_loop_lesions_percent"] = 100 * np.clip(cellular + loops, 0, 1)


def _renal_function(b: _Block) -> None:
    """Creatinine first (sex, age, nephritis class, renal crisis, dialysis), then eGFR by
    CKD-EPI 2021 and creatinine clearance by Cockcroft-Gault from it, so the three agree.
    Proteinuria follows nephritis class and activity."""
    ln, cls, crisis = b.v["_ln"], b.v["_ln_class"], b.v["renal_crisis_history"]
    male, age = b.v["sex"] == MALE, b.v["age_years"]
    log_scr = np.log(np.where(male, 0.92, 0.72)) + b.normal(0, 0.15) + 0.004 * (age - 40)
    log_scr += ln * (_LN_LOG_CREATININE[cls] + b.normal(0, 0.25)) + 0.5 * crisis
    scr = np.where(b.v["dialysis"], b.rng.uniform(4, 10, b.n), np.exp(log_scr))
    b.v["serum_creatinine"] = scr
    b.v["egfr"] = _ckd_epi_2021(scr, age, male)
    b.v["creatinine_clearance_ml_min"] = _cockcroft_gault(scr, age, b.v["_weight"], male)
    activity = np.where(b.v["disease_active"], 1.0, 0.3)
    median = np.where(ln, _LN_PROTEINURIA[cls] * activity, np.where(crisis, 0.8, 0.08))
    protein = median * np.exp(b.normal(0, 0.8))
    b.v["proteinuria_g_24h"] = protein
    b.v["upcr_g_g"] = protein * np.exp(b.normal(0, 0.25))


def _ckd_epi_2021(scr: Array, age: Array, male: Array) -> Array:
    """eGFR (mL/min/1.73 m2) by the race-free CKD-EPI 2021 creatinine equation."""
    kappa = np.where(male, 0.9, 0.7)
    alpha = np.where(male, -0.302, -0.241)
    ratio = scr / kappa
    egfr = 142 * np.minimum(ratio, 1) ** alpha * np.maximum(ratio, 1) ** -1.2 * 0.9938**age
    return np.asarray(egfr * np.where(male, 1.0, 1.012))


def _cockcroft_gault(scr: Array, age: Array, weight: Array, male: Array) -> Array:
    """Creatinine clearance (mL/min) by Cockcroft-Gault."""
    return np.asarray((140 - age) * weight / (72 * scr) * np.where(male, 1.0, 0.85))


def _lupus(b: _Block) -> None:
    """SLEDAI-2K is high in active disease (more with active nephritis); recent CNS lupus is
    rare and mostly in active disease."""
    active = b.v["disease_active"]
    score = np.where(active, 2 + b.rng.gamma(3, 3, b.n), b.rng.gamma(1.2, 1.5, b.n))
    b.v["sledai_2k"] = score + 4 * (b.v["_ln"] & active)
    b.v["cns_lupus_recent"] = b.v["sle_diagnosis"] & b.chance(0.005 + 0.04 * active)


def _cyclophosphamide(b: _Block) -> None:
    """Cyclophosphamide mostly for SSc-ILD and proliferative lupus nephritis; IV as monthly
    pulses (dose per m2 times body surface gives grams), sometimes oral."""
    ssc, ild = b.v["ssc_diagnosis"], b.v["ild_present"]
    p = np.where(ssc, 0.05 + 0.3 * ild + 0.1 * b.subtype_is(DIFFUSE), 0.04)
    ever = b.chance(p + 0.45 * b.v["_proliferative_ln"])
    iv = ever & b.chance(0.8)
    oral = ever & (~iv | b.chance(0.15))
    courses = np.where(iv, 1 + b.rng.poisson(5, b.n), 0)
    g_m2 = courses * b.rng.uniform(0.3, 1.0, b.n)
    b.v["prior_cyclophosphamide_iv_courses"] = courses
    b.v["prior_cyclophosphamide_iv_g_m2"] = g_m2
    b.v["prior_cyclophosphamide_iv_g"] = g_m2 * b.v["_bsa"]
    b.v["prior_cyclophosphamide_iv_months"] = courses * b.rng.uniform(0.8, 1.6, b.n)
    b.v["prior_cyclophosphamide_oral_months"] = np.where(oral, b.rng.gamma(1.5, 5.0, b.n), 0)
    b.v["prior_alkylating_or_irradiation"] = ever | b.chance(0.005)
    b.v["refractory_to_cyclophosphamide"] = ever & b.chance(0.3)


def _medication(b: _Block) -> None:
    """Failed immunosuppressants accumulate with disease duration and activity; other
    immunosuppressants cannot have run longer than the disease; prednisone is commoner and
    higher in active SLE, with rare IV methylprednisolone pulses."""
    duration, active = b.v["disease_duration_years"], b.v["disease_active"]
    lam = 0.3 + 0.1 * np.minimum(duration, 15) + 0.8 * active + 0.4 * b.v["sle_diagnosis"]
    b.v["failed_immunosuppressants"] = b.rng.poisson(lam)
    # Most failures are a lack of response; the rest were stopped for intolerance.
    b.v["unresponsive_immunosuppressants"] = b.rng.binomial(b.v["failed_immunosuppressants"], 0.8)
    # The failed first-line drug ran 6 months or was stopped for intolerance: most did.
    b.v["first_line_6_months_or_intolerant"] = b.chance(0.8)
    on_other = b.chance(b.by_disease(0.6, 0.85, 0.5))
    months = np.minimum(duration * 12, b.rng.gamma(1.5, 20, b.n))
    b.v["other_immunosuppressant_months"] = np.where(on_other, months, 0)
    median = np.where(b.v["sle_diagnosis"] & active, 15, 5)
    dose = np.where(
        b.chance(0.002), b.rng.uniform(250, 1000, b.n), median * np.exp(b.normal(0, 0.5))
    )
    b.v["prednisone_mg_day"] = np.where(b.chance(b.by_disease(0.3, 0.7, 0.4)), dose, 0)
    b.v["prior_car_t"] = b.chance(0.003)
    b.v["live_vaccine_last_4_weeks"] = b.chance(0.005)


def _general(b: _Block) -> None:
    """Performance status worsens with organ disease and age; pregnancy only in women of
    child-bearing age; GAVE only in SSc, mostly early diffuse; the rest are rare marginals."""
    age = b.v["age_years"]
    worse = 0.1 + 0.1 * b.v["_ild_severity"] + 0.15 * b.v["_pah_severity"] + 0.15 * b.v["_cardiac"]
    b.v["ecog"] = b.rng.binomial(4, np.clip(worse + 0.004 * np.maximum(age - 40, 0), 0, 0.9))
    b.v["current_smoker"] = b.chance(0.12)
    fertile = (b.v["sex"] == FEMALE) & (age >= 18) & (age <= 45)
    b.v["pregnant"] = fertile & b.chance(0.02)
    # Assured unless a woman of childbearing age has not agreed to contraception.
    b.v["contraception_assured"] = ~fertile | b.chance(0.9)
    b.v["active_infection"] = b.chance(0.03)
    b.v["chronic_viral_infection"] = b.chance(0.02)
    b.v["syphilis_positive"] = b.chance(0.005)
    b.v["cmv_infection"] = b.chance(0.01)
    # Serious lung lesions, as a clinician judges them: mostly severe ILD.
    b.v["serious_lung_lesions"] = b.chance(np.clip(0.005 + 0.1 * b.v["_ild_severity"], 0, 0.6))
    b.v["active_malignancy"] = b.chance(0.005 + 0.0006 * np.maximum(age - 40, 0))
    early_diffuse = b.subtype_is(DIFFUSE) & (b.v["disease_duration_years"] <= 4)
    b.v["gave_active"] = b.v["ssc_diagnosis"] & b.chance(0.02 + 0.05 * early_diffuse)
    burden = 0.04 + 0.002 * np.maximum(age - 50, 0) + 0.1 * b.v["dialysis"]
    b.v["severe_comorbidity"] = b.chance(burden)


def _labs(b: _Block) -> None:
    """Liver tests near normal with rare hepatitis (ALT and AST together) or cholestasis; CRP
    raised in active diffuse SSc and with infection."""
    hepatitis = np.where(b.chance(0.015), b.rng.uniform(3, 15, b.n), 1.0)
    alt = 0.5 * np.exp(b.normal(0, 0.45)) * hepatitis
    b.v["alt_x_uln"] = alt
    b.v["ast_x_uln"] = alt * np.exp(b.normal(-0.05, 0.2))
    cholestasis = np.where(b.chance(0.005), b.rng.uniform(2, 8, b.n), 1.0)
    b.v["bilirubin_x_uln"] = 0.45 * np.exp(b.normal(0, 0.35)) * cholestasis
    inflamed = 1 + 2 * (b.v["disease_active"] & b.subtype_is(DIFFUSE))
    infection = np.where(b.v["active_infection"], 8.0, 1.0)
    b.v["crp_mg_l"] = 2.5 * np.exp(b.normal(0, 1.0)) * inflamed * infection


def _judgement(b: _Block) -> None:
    """Clinician judgements follow the (complete, latent) findings, with a few percent
    recorded for reasons this model does not represent."""
    v = b.v
    ild, fvc, lvef = v["ild_present"], v["fvc_percent_predicted"], v["lvef_percent"]
    organ = ild | v["pah_diagnosis"] | v["_cardiac"] | v["renal_crisis_history"]
    v["internal_organ_involvement"] = organ | v["_proliferative_ln"] | b.chance(0.03)
    severe = (ild & (fvc < 70)) | v["severe_pah"] | v["renal_crisis_history"] | v["dialysis"]
    severe |= (v["_proliferative_ln"] & v["disease_active"]) | v["cns_lupus_recent"]
    v["severe_organ_involvement"] = severe | (v["_cardiac"] & (lvef < 45)) | b.chance(0.03)
    damage = (
        v["dialysis"] | (ild & (fvc < 50)) | (lvef < 35) | (v["lupus_nephritis_class"] == CLASS_VI)
    )
    v["major_organ_damage"] = damage | b.chance(0.04)
    # Major organ disease, reversible or not: the damage, and more of the severe involvement.
    v["major_organ_disease"] = v["major_organ_damage"] | (severe & b.chance(0.5))
    unfit = (v["age_years"] > 65) | (lvef < 45) | (v["dlco_percent_predicted"] < 40)
    v["hsct_contraindicated"] = unfit | v["severe_pah"] | v["dialysis"] | b.chance(0.03)


def _workup(b: _Block) -> None:
    """The few patients referred for HSCT work-up (mostly early diffuse SSc with organ
    involvement, rarely over 70 or already judged unfit): their records are nearly complete
    (RHC, cardiac MRI, full treatment history, the general contraindications, the clinician
    confirmations), which is what eligibility needs."""
    early_diffuse = b.subtype_is(DIFFUSE) & (b.v["disease_duration_years"] <= 5)
    candidate = early_diffuse & b.v["internal_organ_involvement"]
    p = np.where(candidate, 0.45, b.by_disease(0.03, 0.02, 0.005))
    p = np.where(b.v["hsct_contraindicated"], 0.5 * p, p)
    b.v["_workup"] = b.chance(np.where(b.v["age_years"] > 70, 0.2 * p, p))


def _ssc_organs(b: _Block) -> None:
    """SSc organ involvement as the protocols define it: ILD progressing over a year (more
    with severe ILD and early diffuse disease) or new or worse in six months; renal
    involvement (renal crisis, or hypertension and urinary findings); cardiac involvement
    (primary heart disease or arrhythmia); GI tract involvement (most SSc patients); skin of
    the trunk (diffuse disease, the more so the higher the skin score); rare mimics and toxic
    exposures."""
    v, ssc, diffuse = b.v, b.v["ssc_diagnosis"], b.subtype_is(DIFFUSE)
    early_diffuse = diffuse & (v["disease_duration_years"] <= 4)
    progressing = np.clip(0.15 + 0.15 * v["_ild_severity"] + 0.2 * early_diffuse, 0, 0.8)
    v["ild_progressive_12m"] = v["ild_present"] & b.chance(progressing)
    # Progressing ILD shows as a lung-function decline, on CT, or (mostly) both.
    both = b.chance(0.5)
    v["ild_pft_decline_12m"] = v["ild_progressive_12m"] & (both | b.chance(0.5))
    on_ct = both | ~v["ild_pft_decline_12m"]
    v["ild_progression_on_ct"] = v["ild_progressive_12m"] & on_ct
    # Onset or worsening in 6 months: most of the progressing, and ILD found this half-year.
    recent = (v["ild_progressive_12m"] & b.chance(0.7)) | (v["disease_duration_years"] <= 0.5)
    v["ild_onset_or_worsening_6m"] = v["ild_present"] & (recent | b.chance(0.04))
    renal = v["renal_crisis_history"] | b.chance(0.04 + 0.15 * v["uncontrolled_hypertension"])
    v["ssc_renal_involvement"] = ssc & renal
    cardiac = v["_cardiac"] | v["uncontrolled_arrhythmia"] | b.chance(0.02)
    v["ssc_cardiac_involvement"] = ssc & cardiac
    v["gi_involvement"] = ssc & b.chance(np.where(diffuse, 0.6, 0.45))
    trunk = np.clip(0.1 + 0.03 * v["mrss"], 0, 0.95)
    v["trunk_skin_involvement"] = (diffuse & b.chance(trunk)) | (
        b.subtype_is(LIMITED) & b.chance(0.02)
    )
    v["ssc_mimic_or_toxic_exposure"] = ssc & b.chance(0.01)


def _heart_workup(b: _Block) -> None:
    """Coronary disease with age (more in men); symptomatic heart disease with primary heart
    involvement, low LVEF or high functional class; ECG abnormalities with heart involvement
    and arrhythmia. A fluid challenge raises pulmonary pressures, the more so with pulmonary
    hypertension or a stiff heart: the haemodynamics EBMT asks for in a work-up."""
    v, cardiac = b.v, b.v["_cardiac"]
    older = np.maximum(v["age_years"] - 45, 0)
    cad = b.chance(0.003 + (0.0008 + 0.0006 * (v["sex"] == MALE)) * older)
    v["severe_cad_unrevascularised"] = cad
    failing = cardiac & ((v["lvef_percent"] < 50) | (v["nyha_class"] >= 3))
    v["symptomatic_cardiac_disease"] = failing | (cad & b.chance(0.5)) | b.chance(0.01)
    abnormal = (cardiac & b.chance(0.4)) | v["uncontrolled_arrhythmia"] | b.chance(0.03)
    v["ecg_significant_abnormality"] = abnormal
    # A D-shaped septum from right-ventricular pressure overload: pulmonary hypertension.
    v["echo_d_sign"] = b.chance(np.clip(0.005 + 0.35 * v["_pah_severity"], 0, 0.8))
    pah, stiff = v["_pah_severity"], 6 * cardiac
    rise = np.abs(b.normal(6, 3)) + 10 * pah + stiff
    v["pasp_fluid_challenge_mmhg"] = v["pasp_mmhg"] + rise
    v["mpap_fluid_challenge_mmhg"] = v["mpap_mmhg"] + 0.5 * rise + np.abs(b.normal(0, 1.5))
    # Exercise raises mPAP more than a fluid challenge, the more so with pulmonary vascular
    # disease.
    v["mpap_exercise_mmhg"] = v["mpap_mmhg"] + np.abs(b.normal(8, 3)) + 12 * pah


def _blood(b: _Block) -> None:
    """Haemoglobin lower in women, with kidney failure, active lupus and infection; ESR
    follows CRP, higher in women, with anaemia and with age; total bilirubin is the same
    measurement as bilirubin_x_uln (upper limit 1.2 mg/dL), so the two agree."""
    v = b.v
    female = v["sex"] == FEMALE
    hb = np.where(female, 13.3, 14.9) + b.normal(0, 1.0)
    hb -= 2.5 * v["dialysis"] + 0.8 * (v["egfr"] < 45) + 0.5 * v["active_infection"]
    hb -= 1.2 * (v["sle_diagnosis"] & v["disease_active"]) + 0.5 * v["_ild_severity"]
    v["hemoglobin_g_dl"] = hb
    log_crp = np.log(v["crp_mg_l"] / 2.5 + 0.1)
    log_esr = 2.3 + 0.35 * log_crp + 0.3 * female + 0.25 * np.maximum(12 - hb, 0)
    log_esr += 0.01 * np.maximum(v["age_years"] - 50, 0) + b.normal(0, 0.45)
    v["esr_mm_h"] = np.exp(log_esr)
    v["bilirubin_total_mg_dl"] = np.maximum(1.2 * v["bilirubin_x_uln"], 0.1)


def _treatment_history(b: _Block) -> None:
    """Glucocorticoid months add to the other immunosuppressants' (the periods overlap in
    part; never longer than the disease); the last IV cyclophosphamide lies somewhere in the
    disease course after the pulses (unknown where none was given); mycophenolate for lupus
    nephritis and SSc-ILD above all, failing more often in active disease; recent potent
    immunosuppression for most patients on treatment, and for every one whose last IV
    cyclophosphamide was within 3 months (the catalogue derives it within 12 weeks)."""
    v, duration = b.v, b.v["disease_duration_years"] * 12
    steroids = (v["prednisone_mg_day"] > 0) | b.chance(b.by_disease(0.35, 0.5, 0.2))
    gc = np.where(steroids, np.minimum(duration, b.rng.gamma(1.5, 18, b.n)), 0)
    other = v["other_immunosuppressant_months"]
    total = np.maximum(other, gc) + 0.3 * np.minimum(other, gc)
    v["immunosuppressant_months_incl_gc"] = np.maximum(np.minimum(duration, total), other)
    courses = v["prior_cyclophosphamide_iv_courses"]
    span = np.maximum(duration - v["prior_cyclophosphamide_iv_months"], 0.5)
    since = span * b.rng.beta(1.2, 1.5, b.n)
    v["months_since_last_iv_cyclophosphamide"] = np.where(courses > 0, since, np.nan)
    ild_ssc = v["ssc_diagnosis"] & v["ild_present"]
    p_mmf = np.select([v["_ln"], ild_ssc, v["sle_diagnosis"]], [0.65, 0.5, 0.3], 0.12)
    mmf = b.chance(p_mmf)
    v["mmf_failed"] = mmf & b.chance(0.3 + 0.25 * v["disease_active"])
    v["mmf_intolerant"] = mmf & b.chance(0.12)
    # Induction has often not begun in the first months after diagnosis.
    current = b.chance(np.where(duration < 6, 0.4, 0.75))
    treated = ((other > 0) & current) | (mmf & b.chance(0.6)) | (since < 3) & (courses > 0)
    v["immunosuppressant_last_12_weeks"] = treated


def _history(b: _Block) -> None:
    """Past cancers with age (an active one is one: the catalogue derives it); renal
    replacement in the last 3 months is current dialysis or a recent renal crisis's; another
    autoimmune disease is SSc itself for an SSc patient (the catalogue counts scleroderma),
    else an overlap (rheumatoid arthritis, myositis, ...)."""
    v = b.v
    past = b.chance(0.015 + 0.001 * np.maximum(v["age_years"] - 40, 0))
    v["history_of_malignancy"] = v["active_malignancy"] | past
    recent = b.chance(0.002 + 0.03 * v["renal_crisis_history"])
    v["renal_replacement_last_3_months"] = v["dialysis"] | recent
    v["other_autoimmune_disease"] = v["ssc_diagnosis"] | b.chance(0.07)


def _confirmations(b: _Block) -> None:
    """Transplant fitness as a clinician would confirm it: no contraindication to HSCT, no
    severe comorbidity, ECOG 0-1, with a few judged otherwise for reasons this model does not
    represent. Mostly favourable in a work-up, as referral selects fit patients."""
    v = b.v
    fit = ~v["hsct_contraindicated"] & ~v["severe_comorbidity"] & (v["ecog"] <= 1)
    v["hsct_fitness_confirmed"] = np.where(b.chance(0.05), ~fit, fit)


_STEPS: tuple[Callable[[_Block], None], ...] = (
    _demographics,
    _diagnosis,
    _skin,
    _lung,
    _pulmonary_vessels,
    _heart,
    _nephritis,
    _renal_function,
    _lupus,
    _cyclophosphamide,
    _medication,
    _general,
    _labs,
    _judgement,
    _workup,
    _ssc_organs,
    _heart_workup,
    _blood,
    _treatment_history,
    _history,
    _confirmations,
)


def _group_probabilities(b: _Block) -> dict[str, Array]:
    """P(each kind of record exists) per patient: by disease, or the work-up rate."""
    workup = b.v["_workup"]
    groups: dict[str, Array] = {}
    for name, (ssc, sle, neither, in_workup, only) in _GROUPS.items():
        p = np.where(workup, in_workup, b.by_disease(ssc, sle, neither))
        groups[name] = p * b.v[only] if only else p
    _indicated(b, groups)
    return groups


def _indicated(b: _Block, groups: dict[str, Array]) -> None:
    """Examinations done because something calls for them: RHC and echo for pulmonary
    hypertension, blood gases for severe ILD, urine protein for nephritis. Pregnancy is
    recorded (false) for men and older women as an integrator would send it."""
    pah, ln = b.v["pah_diagnosis"], b.v["_ln"]
    suspected = np.where(pah, 0.85, 0.5 * (b.v["pasp_mmhg"] > 40))
    groups["rhc"] = np.maximum(groups["rhc"], suspected)
    groups["echo"] = np.maximum(groups["echo"], 0.95 * pah)
    hypoxic = 0.4 * (b.v["_ild_severity"] > 1.5) + 0.4 * pah
    groups["blood_gas"] = np.maximum(groups["blood_gas"], hypoxic)
    groups["urine"] = np.maximum(groups["urine"], 0.9 * ln)
    woman = (b.v["sex"] == FEMALE) & (b.v["age_years"] <= 55)
    # ... and known for everyone in a work-up, as every general contraindication is.
    groups["pregnancy"] = np.where(woman | b.v["_workup"], groups["pregnancy"], 0.9)


def _known(b: _Block) -> dict[str, Array]:
    """Which values the registry holds: a draw per kind of record (features of one kind are
    missing together), then per feature. One patient in ten (outside work-ups) is a thin
    record, new to the registry, with far less of everything."""
    workup = b.v["_workup"]
    thin = ~workup & b.chance(0.1)
    present = {
        name: b.chance(p if name == "record" else np.where(thin, 0.3 * p, p))
        for name, p in _group_probabilities(b).items()
    }
    return {
        fid: present[group] & b.chance(np.where(workup, p_workup, p))
        for fid, (group, p, p_workup) in _KNOWN.items()
    }


def _block(
    seed: int, index: int, features: Mapping[str, Feature]
) -> dict[str, tuple[Array, Array]]:
    """Block `index` of the cohort: (values, known) per catalogue feature, BLOCK rows."""
    b = _Block(np.random.default_rng([seed, index]), BLOCK)
    for step in _STEPS:
        step(b)
    known = _known(b)
    return {
        fid: (b.v[fid], known[fid]) if fid in MODELLED else _marginal(seed, index, feature)
        for fid, feature in features.items()
    }


def _marginal(seed: int, index: int, feature: Feature) -> tuple[Array, Array]:
    """A plain marginal for a feature this model does not know (30 % unknown), from its own
    stream so that adding a feature to the catalogue changes no other column."""
    rng = np.random.default_rng([seed, index, zlib.crc32(feature.id.encode())])
    known = rng.random(BLOCK) < 0.7
    if feature.type is FeatureType.NUMBER:
        low, high = feature.spec.range or (0.0, 100.0)
        return low + (high - low) * rng.beta(2, 5, BLOCK), known
    if feature.type is FeatureType.BOOLEAN:
        return rng.random(BLOCK) < 0.05, known
    return rng.integers(0, len(feature.spec.values or ()), BLOCK), known


@dataclass(frozen=True, slots=True)
class Output:
    """How one feature's drawn values are written, as the catalogue defines the feature."""

    feature: Feature
    linear: Linear = IDENTITY  # the model's unit -> the catalogue's canonical unit
    decimals: int = 2  # kept in the canonical unit
    labels: tuple[str, ...] = ()  # an enum's values, in the catalogue's order
    codes: tuple[int, ...] = ()  # an enum's drawn code -> its index in labels


def plan_columns(features: Mapping[str, Feature]) -> dict[str, Output]:
    """How each feature is written, read from the catalogue: its type, canonical unit (the
    model's values converted to it), whole numbers (`integer:`), range, enum values. Raise
    ValueError for a feature the model cannot write as the catalogue defines it (a type it does
    not draw, a unit its values do not convert to, an enum without a value it draws): values
    would be silently wrong."""
    return {fid: _output(feature) for fid, feature in features.items()}


def check_catalogue(features: Mapping[str, Feature]) -> None:
    """`plan_columns`, for its refusal only."""
    plan_columns(features)


def _output(feature: Feature) -> Output:
    fid, labels = feature.id, tuple(feature.spec.values or ())
    if fid not in MODELLED:  # a marginal, drawn in the catalogue's own terms
        decimals = 0 if feature.spec.integer else 2
        return Output(feature, decimals=decimals, labels=labels, codes=tuple(range(len(labels))))
    kind = _drawn(fid)
    if feature.type is not kind:
        raise ValueError(
            f"feature {fid!r}: the synthetic model draws a {kind.value}; "
            f"the catalogue defines a {feature.type.value}"
        )
    if kind is FeatureType.NUMBER:
        return _number_output(feature)
    if kind is FeatureType.ENUM:
        absent = [name for name in DRAWN[fid] if name not in labels]
        if absent:
            raise ValueError(
                f"feature {fid!r}: the synthetic model draws the values {list(DRAWN[fid])}; "
                f"the catalogue has no {absent} among {list(labels)}"
            )
        return Output(feature, labels=labels, codes=tuple(labels.index(n) for n in DRAWN[fid]))
    return Output(feature)


def _number_output(feature: Feature) -> Output:
    unit, decimals = NUMBERS[feature.id]
    target = feature.unit or "1"
    try:
        linear = converter(unit, target, feature.spec.molar_mass)
    except UnitError as exc:
        raise ValueError(
            f"feature {feature.id!r}: the synthetic model draws it in {unit!r}, which does not "
            f"convert to the catalogue's unit {target!r} ({exc})"
        ) from exc
    # The same precision in the canonical unit: 0.87 mg/dL (2 decimals) is 76.9 umol/L.
    decimals -= math.floor(math.log10(abs(linear.scale))) if linear.scale else 0
    return Output(feature, linear, 0 if feature.spec.integer else decimals)


def _drawn(fid: str) -> FeatureType:
    """The type the model draws a feature as."""
    if fid in NUMBERS:
        return FeatureType.NUMBER
    return FeatureType.ENUM if fid in DRAWN else FeatureType.BOOLEAN


def schema(features: Mapping[str, Feature]) -> pa.Schema:
    """The cohort's Arrow schema: id, then one column per catalogue feature."""
    kinds = {
        FeatureType.NUMBER: pa.float64(),
        FeatureType.BOOLEAN: pa.bool_(),
        FeatureType.ENUM: pa.dictionary(pa.int8(), pa.string()),
    }
    columns = [pa.field(fid, kinds[feature.type]) for fid, feature in features.items()]
    return pa.schema([pa.field("id", pa.string(), nullable=False), *columns])


def _column(output: Output, values: Array, known: Array) -> pa.Array:
    """One Arrow column: numbers in the canonical unit, rounded (whole where the catalogue
    says so: completed units rounded down) and clipped to the range; enums dictionary-encoded
    with the catalogue's values; unknown values become nulls."""
    feature = output.feature
    if feature.type is FeatureType.NUMBER:
        number = values.astype(np.float64)
        if output.linear != IDENTITY:
            number = number * output.linear.scale + output.linear.offset
        if feature.spec.integer == "completed":
            number = np.floor(number)
        number = np.round(number, output.decimals)
        if feature.spec.range is not None:
            number = np.clip(number, *feature.spec.range)
        return pa.array(number, mask=~(known & np.isfinite(number)))
    if feature.type is FeatureType.BOOLEAN:
        return pa.array(values.astype(np.bool_), mask=~known)
    drawn = values.astype(np.int64)
    valid = known & (drawn >= 0)
    codes = np.asarray(output.codes)[np.where(valid, drawn, 0)].astype(np.int8)
    indices = pa.array(codes, mask=~valid)
    return pa.DictionaryArray.from_arrays(indices, pa.array(output.labels, pa.string()))


def _ids(start: int, count: int, width: int) -> pa.Array:
    """P0000001, P0000002, ... (1-based, zero-padded to width digits: 7 up to 9,999,999
    patients, so only cohorts of 10 million or more have longer ids)."""
    numbers = pa.array(np.arange(start + 1, start + count + 1, dtype=np.int64))
    digits = pc.utf8_lpad(pc.cast(numbers, pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise("P", digits, "")


def _table(seed: int, start: int, stop: int, n: int, outputs: Mapping[str, Output]) -> pa.Table:
    """Rows [start, stop) of a cohort of n; start is a multiple of BLOCK."""
    features = {fid: output.feature for fid, output in outputs.items()}
    blocks = [_block(seed, k, features) for k in range(start // BLOCK, -(-stop // BLOCK))]
    count = stop - start
    columns = [_ids(start, count, max(7, len(str(n))))]
    for fid in features:
        values = np.concatenate([block[fid][0] for block in blocks])[:count]
        known = np.concatenate([block[fid][1] for block in blocks])[:count]
        columns.append(_column(outputs[fid], values, known))
    return pa.Table.from_arrays(columns, schema=schema(features))


def batches(
    n: int, features: Mapping[str, Feature], *, seed: int = 0, chunk: int = CHUNK
) -> Iterator[pa.Table]:
    """The cohort of n patients as tables of about `chunk` rows (rounded up to whole blocks),
    so that memory stays bounded whatever n is. The data do not depend on `chunk`. Arguments
    and catalogue are checked now, before any file is opened, not at the first row."""
    if n < 0 or seed < 0 or chunk < 1:
        raise ValueError("n and seed must be >= 0 and chunk >= 1")
    outputs = plan_columns(features)
    step = -(-chunk // BLOCK) * BLOCK
    return (_table(seed, start, min(start + step, n), n, outputs) for start in range(0, n, step))


def synthesize(n: int, features: Mapping[str, Feature], *, seed: int = 0) -> pa.Table:
    """A synthetic cohort of n patients as one table (same seed, same table)."""
    tables = list(batches(n, features, seed=seed))
    return pa.concat_tables(tables) if tables else schema(features).empty_table()


def write_parquet(
    n: int, features: Mapping[str, Feature], path: Path, *, seed: int = 0, chunk: int = CHUNK
) -> None:
    """Stream the cohort into a Parquet file, one row group per chunk (zstd-compressed)."""
    tables = batches(n, features, seed=seed, chunk=chunk)
    with pq.ParquetWriter(path, schema(features), compression="zstd") as writer:
        for table in tables:
            writer.write_table(table)


def write_csv(
    n: int, features: Mapping[str, Feature], path: Path, *, seed: int = 0, chunk: int = CHUNK
) -> None:
    """Stream the cohort into a CSV file: a header of feature ids (canonical units), empty
    cells for unknown, true/false for booleans, as `app.batch.cohort` reads it."""
    tables = batches(n, features, seed=seed, chunk=chunk)
    with pacsv.CSVWriter(path, schema(features)) as writer:
        for table in tables:
            writer.write_table(table)
