"""Units as people write them (app/engine/unit_names.py): each family of spellings is read,
every spelling converts exactly as its UCUM code, none is loose or ambiguous, and a refused
unit is explained in people's words."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine import unit_names
from app.engine.inputs import InvalidInput, normalise
from app.engine.model import RuleBase
from app.engine.unit_names import SYNONYMS, WORDS, ucum
from app.engine.units import UnitError, converter, validate_unit

MICRO_SIGN, GREEK_MU = "\u00b5", "\u03bc"


def value_of(rules: RuleBase, feature: str, value: float, unit: str) -> float:
    got = normalise({feature: {"value": value, "unit": unit}}, rules.features)[feature].value
    assert isinstance(got, float)
    return got


@pytest.mark.parametrize(
    ("feature", "value", "spellings", "expected"),
    [
        # micro: the micro sign, the Greek mu and UCUM's u, litre as L or l
        (
            "serum_creatinine",
            88.4,
            [f"{MICRO_SIGN}mol/L", f"{GREEK_MU}mol/L", "umol/L", f"{MICRO_SIGN}mol/l", "umol/l"],
            0.99998,
        ),
        ("pao2_mmhg", 80, ["mmHg", "mm Hg", "mmhg", "mm[Hg]"], 80.0),
        ("pao2_mmhg", 10, ["kPa", "kpa"], 75.0061683),
        ("serum_creatinine", 1.2, ["mg/dl", "mg/dL"], 1.2),
        ("hemoglobin_g_dl", 12, ["g/dl", "g/dL"], 12.0),
        ("hemoglobin_g_dl", 120, ["g/L", "g/l"], 12.0),
        ("age_years", 40, ["years", "year", "yrs", "yr", "y", "a"], 40.0),
        ("age_years", 480, ["months", "month", "mo"], 40.0),
        ("prior_cyclophosphamide_oral_months", 8, ["weeks", "week", "wk"], 1.83983573),
        ("lvef_percent", 55, ["%", "percent"], 55.0),
        ("egfr", 60, ["ml/min/1.73m2", "mL/min/1.73 m²", "ml/min/1.73m^2", "mL/min/{1.73_m2}"], 60),
        ("creatinine_clearance_ml_min", 90, ["ml/min", "mL/min"], 90.0),
        ("proteinuria_g_24h", 500, ["mg/day", "mg/24h", "mg/24 h", "mg/d"], 0.5),
        ("proteinuria_g_24h", 0.5, ["g/24h", "g/day", "g/24 h", "g/(24.h)"], 0.5),
        ("prior_cyclophosphamide_iv_g_m2", 500, ["mg/m²", "mg/m^2", "mg/m2"], 0.5),
        ("pvr_wood_units", 3, ["Wood units", "WU", "[wood'U]"], 3.0),
        ("pvr_wood_units", 240, ["dyn·s/cm⁵", "dyn·s/cm5", "dyn.s/cm5"], 3.0002463),
        ("esr_mm_h", 20, ["mm/hr", "mm/h"], 20.0),
        ("alt_x_uln", 2, ["× ULN", "x ULN", "xULN", "{ratio}"], 2.0),
    ],
)
def test_each_family_of_spellings_is_read(
    shipped_rules: RuleBase, feature: str, value: float, spellings: list[str], expected: float
) -> None:
    for spelling in spellings:
        assert value_of(shipped_rules, feature, value, spelling) == pytest.approx(expected), (
            spelling
        )


@pytest.mark.parametrize(
    "spelling",
    ["10^9/L", "10*9/L", "x10^9/L", "×10^9/L", "x 10^9/L", "10⁹/L", "x10E9/L", "10^9/l", "x10^9/l"],
)
def test_cell_counts_per_litre_are_one_unit(spelling: str) -> None:
    """No shipped feature is a cell count yet; the spellings laboratories print all name UCUM's
    10*9/L, which converts to itself and to /nL (10^9/L is 1/nL)."""
    assert ucum(spelling) == "10*9/L"
    assert converter(ucum(spelling), "/nL").scale == 1.0


def test_every_synonym_converts_exactly_as_its_ucum_code(shipped_rules: RuleBase) -> None:
    """Through `normalise`, for every feature whose canonical unit the code converts to (by
    molar mass too), at both ends and the middle of its range: the same value and the UCUM code
    kept as the unit given, or the same refusal."""
    checked = 0
    for spelling, code in SYNONYMS.items():
        for feature in shipped_rules.features.values():
            if feature.unit is None:
                continue
            try:
                linear = converter(code, feature.unit, feature.spec.molar_mass)
            except UnitError:
                continue
            low, high = feature.spec.range or (0.0, 1.0)
            for target in (low, (low + high) / 2, high):
                sent = (target - linear.offset) / linear.scale
                by_name = outcome(shipped_rules, feature.id, sent, spelling)
                assert by_name == outcome(shipped_rules, feature.id, sent, code), spelling
                if not isinstance(by_name, list):
                    assert by_name.given_unit == code
                checked += 1
    assert checked > 300


def outcome(rules: RuleBase, ident: str, value: float, unit: str) -> Any:
    try:
        return normalise({ident: {"value": value, "unit": unit}}, rules.features)[ident]
    except InvalidInput as exc:
        return [(i.field, i.code, i.message) for i in exc.issues]


def test_every_code_in_the_table_is_ucum() -> None:
    for code in WORDS:
        validate_unit(code)


def test_a_spelling_that_is_also_ucum_means_the_same_unit() -> None:
    """A synonym may shadow a UCUM code only where both name one unit (`mg/dl`, `10^9/L`):
    never where UCUM reads the spelling as something else."""
    for spelling, code in SYNONYMS.items():
        try:
            validate_unit(spelling)
        except UnitError:
            continue  # not UCUM: nothing shadowed
        linear = converter(spelling, code)
        assert (linear.scale, linear.offset) == (1.0, 0.0), spelling


@pytest.mark.parametrize("loose", ["m", "mg/", "M", "G/L", "U", "l", "min ", "mcg/dl", "Mmol/L"])
def test_no_loose_spelling_is_listed(loose: str) -> None:
    """`m` could be metre, month or minute: only spellings that name one unit are listed."""
    assert loose not in SYNONYMS


def test_no_spelling_names_two_units() -> None:
    """`_build` stops the import on a spelling claimed twice; the table as built agrees."""
    for spelling, code in SYNONYMS.items():
        assert ucum(spelling) == code
        assert spelling not in WORDS or WORDS.get(spelling) is not None


def test_every_catalogue_unit_has_words_without_ucum_notation(shipped_rules: RuleBase) -> None:
    """What the form and the messages show: `mmHg`, never `mm[Hg]` or `{count}`."""
    for feature in shipped_rules.features.values():
        for unit in filter(None, [feature.unit, *feature.spec.other_units]):
            assert unit in WORDS, (feature.id, unit)
            shown = unit_names.words(unit)
            assert not any(mark in shown for mark in "[]{}"), (unit, shown)
            assert "." not in shown.replace("1.73", ""), (unit, shown)


def unit_issue(rules: RuleBase, features: dict[str, Any]) -> tuple[str, str, str]:
    with pytest.raises(InvalidInput) as raised:
        normalise(features, rules.features)
    (issue,) = raised.value.issues
    return issue.field, issue.code, issue.message


def test_an_unknown_unit_lists_the_accepted_ones_and_the_nearest(shipped_rules: RuleBase) -> None:
    field, code, message = unit_issue(
        shipped_rules, {"serum_creatinine": {"value": 150, "unit": "umol/dL!"}}
    )
    assert (field, code) == ("features.serum_creatinine.unit", "unit")
    assert message == (
        "'umol/dL!' is not a unit Eligo recognises; use mg/dL or µmol/L "
        "(nearest to what was sent: µmol/L)"
    )
    _, _, message = unit_issue(shipped_rules, {"pao2_mmhg": {"value": 80, "unit": "mm hgg"}})
    assert message.endswith("use mmHg or kPa (nearest to what was sent: mmHg)")
    _, _, message = unit_issue(shipped_rules, {"age_years": {"value": 40, "unit": "yeers"}})
    assert message.endswith("use years or months (nearest to what was sent: years)")


def test_a_unit_of_another_kind_lists_the_accepted_ones(shipped_rules: RuleBase) -> None:
    field, _, message = unit_issue(shipped_rules, {"age_years": {"value": 40, "unit": "mg"}})
    assert field == "features.age_years.unit"
    assert message == "'mg' is a unit of another kind; use years or months"
    _, _, message = unit_issue(shipped_rules, {"mrss": {"value": 20, "unit": "kg"}})
    assert message == "'kg' is a unit of another kind; use a plain number (no unit)"


@pytest.mark.parametrize("unit", ["furlong", "mmHg]", "mg/dL/", "10^9/L/", "µ", "", "m[Hg"])
def test_no_message_shows_the_ucum_parser(shipped_rules: RuleBase, unit: str) -> None:
    _, _, message = unit_issue(shipped_rules, {"pao2_mmhg": {"value": 80, "unit": unit}})
    assert "use mmHg or kPa" in message
    for internal in ("UCUM", "unexpected", "column", "token", "Lark", "mm[Hg]"):
        assert internal not in message, message


def test_a_long_unit_is_shortened_in_the_message(shipped_rules: RuleBase) -> None:
    _, _, message = unit_issue(shipped_rules, {"pao2_mmhg": {"value": 80, "unit": "x" * 500}})
    assert len(message) < 200
