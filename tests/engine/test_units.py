"""UCUM conversion: the units the catalogue and the Synthea data actually use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.engine import units
from app.engine.model import RuleBase
from app.engine.units import UnitError, convert, round_significant, validate_unit

CREATININE_G_PER_MOL = 113.12


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (8, "kPa", "mm[Hg]", 60.0049261),
        (60, "mm[Hg]", "kPa", 7.99934324),
        (1000, "mg/d", "g/(24.h)", 1.0),
        (6, "g/(24.h)", "mg/d", 6000.0),
        (2, "g/(12.h)", "g/(24.h)", 4.0),
        (48, "mo", "a", 4.0),
        (0.55, "1", "%", 55.0),
        (5000, "mg", "g", 5.0),
        (1, "mL/s", "mL/min", 60.0),
        (37, "Cel", "[degF]", 98.6),
        # UCUM annotations are unity: eGFR reported as mL/min equals mL/min/{1.73_m2}
        (50, "mL/min", "mL/min/{1.73_m2}", 50.0),
    ],
)
def test_conversions(value: float, source: str, target: str, expected: float) -> None:
    assert convert(value, source, target) == pytest.approx(expected, rel=1e-9)


def test_substance_to_mass_concentration_uses_the_molar_mass() -> None:
    assert convert(177, "umol/L", "mg/dL", CREATININE_G_PER_MOL) == pytest.approx(2.002224)
    assert convert(2.0, "mg/dL", "umol/L", CREATININE_G_PER_MOL) == pytest.approx(176.8033946)


def test_substance_to_mass_needs_a_molar_mass() -> None:
    with pytest.raises(UnitError, match="not convertible"):
        convert(177, "umol/L", "mg/dL")


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("mg/dL", "mm[Hg]", "not convertible"),
        ("foo", "%", "not a valid UCUM unit"),
        ("mg/dL/", "mg/dL", "not a valid UCUM unit"),
        ("{score}", "{count}", "annotation"),
    ],
)
def test_unconvertible_units(source: str, target: str, message: str) -> None:
    with pytest.raises(UnitError, match=message):
        convert(1, source, target)


def test_identity_needs_no_parse() -> None:
    assert convert(7, "{score}", "{score}") == 7


def test_validate_unit() -> None:
    validate_unit("mL/min/{1.73_m2}")
    validate_unit("{score}")
    with pytest.raises(UnitError):
        validate_unit("mmHg]")


def test_round_significant_removes_float_noise() -> None:
    assert round_significant(1.0000000008) == 1.0
    assert round_significant(0.1 + 0.2) == 0.3
    assert round_significant(0.0) == 0.0


def test_units_parse_as_ucumverts_own_registry_parses_them(shipped_rules: RuleBase) -> None:
    """units.py uses ucumvert's parser and transformer without building PintUcumRegistry,
    whose own pint registry its from_ucum never uses: the quantities, and the errors, must
    stay the ones from_ucum gives (a ucumvert upgrade that changes this fails here)."""
    from ucumvert import PintUcumRegistry  # noqa: PLC0415 - half a second, this test only

    registry = PintUcumRegistry()
    catalogue = {u for f in shipped_rules.features.values() for u in [f.unit, *f.spec.other_units]}
    checked = [*sorted(u for u in catalogue if u), "Cel", "[degF]", "g/(12.h)", "foo", "mg/dL/"]

    def parsed(parse: Callable[[str], Any], unit: str) -> str:
        try:
            return repr(parse(unit))
        except Exception as exc:  # ucumvert raises several parser error types
            return f"{type(exc).__name__}: {exc}"

    for unit in checked:
        assert parsed(units._from_ucum(), unit) == parsed(registry.from_ucum, unit), unit
