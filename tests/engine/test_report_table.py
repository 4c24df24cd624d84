"""The plain-text table of `eligo evaluate` and of vignette failures (app/engine/report.py)."""

from __future__ import annotations

from app.engine.derive import derive
from app.engine.evaluate import decide
from app.engine.inputs import normalise
from app.engine.load import load_rules
from app.engine.report import render_table
from tests.astis_patients import ASTIS_CANDIDATE
from tests.conftest import SHIPPED_RULES

RULES = load_rules(SHIPPED_RULES)
ASTIS = RULES.rulesets["hsct-ssc-astis"]


def _table(features: dict[str, object]) -> str:
    values = derive(normalise(features, RULES.features), RULES.features)
    return render_table([decide(ASTIS, values)])


def test_a_patient_awaiting_only_a_confirmation_is_told_what_to_confirm() -> None:
    """Every value given but the clinician's confirmation: the API lists it under
    `to_confirm`; the table said "missing:" with nothing after it."""
    unconfirmed = {k: v for k, v in ASTIS_CANDIDATE.items() if k != "severe_comorbidity"}
    table = _table(unconfirmed)
    assert "INDETERMINATE" in table
    assert "  to confirm: severe_comorbidity\n" in table
    assert "  missing:" not in table


def test_values_to_measure_and_to_confirm_are_both_said() -> None:
    features = {k: v for k, v in ASTIS_CANDIDATE.items() if k not in ("severe_comorbidity", "mrss")}
    lines = _table(features).splitlines()
    missing = next(line for line in lines if line.startswith("  missing: "))
    assert "mrss" in missing.removeprefix("  missing: ").split(", ")
    assert "  to confirm: severe_comorbidity" in lines


def test_a_value_read_by_several_atoms_is_shown_once() -> None:
    """The entry criterion reads mRSS in both branches (> 14, >= 20): one `mrss=?` on its row."""
    features = {k: v for k, v in ASTIS_CANDIDATE.items() if k != "mrss"}
    lines = _table(features).splitlines()
    row = next(line for line in lines if "skin-and-organ-involvement" in line)
    assert row.count("mrss=?") == 1, row
    assert row.count("disease_duration_years=") == 1, row
