"""The one cell grammar (app/engine/cells.py): registry cells as values, unknowns or problems."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.cells import DEFAULT, Grammar, Problem, Unknown, read
from app.engine.schema import FeatureType

NUMBER, BOOLEAN, ENUM = FeatureType.NUMBER, FeatureType.BOOLEAN, FeatureType.ENUM


@pytest.mark.parametrize("cell", ["", "  ", "NA", "na", "N/A", "n/a", "NULL", "NaN", "."])
@pytest.mark.parametrize("kind", [NUMBER, BOOLEAN, ENUM])
def test_the_usual_missing_codes_are_unknown_for_every_type(cell: str, kind: FeatureType) -> None:
    assert isinstance(read(cell, kind), Unknown)


@pytest.mark.parametrize(
    ("cell", "value"),
    [("61", 61), ("-3", -3), ("61.5", 61.5), (" 61.5 ", 61.5), (".5", 0.5), ("1e3", 1000.0)],
)
def test_numbers_read_as_json_gives_them(cell: str, value: float) -> None:
    got = read(cell, NUMBER)
    assert got == value
    assert type(got) is type(value)  # an integer stays one: `normalise` tells counts apart


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        ("high", "not_number"),
        ("1_000", "not_number"),  # Python's float() takes it; no registry means it
        ("inf", "not_number"),
        ("0x10", "not_number"),
        ("1e999", "not_finite"),
        ("61,5", "decimal_comma"),  # undeclared: 61.5, or 615 with a thousands separator?
        ("1" * 65, "too_long"),
    ],
)
def test_text_that_is_no_number_is_a_problem_of_the_cell(cell: str, code: str) -> None:
    got = read(cell, NUMBER)
    assert isinstance(got, Problem)
    assert got.code == code
    # The message quotes the cell, except one too long to quote (its length is said instead).
    assert (repr(cell) if code != "too_long" else "65 characters") in got.message


def test_a_declared_decimal_comma_reads() -> None:
    comma = Grammar(decimal_comma=True)
    assert read("61,5", NUMBER, comma) == 61.5
    assert read("-0,25", NUMBER, comma) == -0.25
    assert read("61.5", NUMBER, comma) == 61.5  # a point still reads
    assert isinstance(read("1,234,5", NUMBER, comma), Problem)


@pytest.mark.parametrize(
    ("cell", "value"), [("yes", True), ("Y", True), ("1", True), ("TRUE", True)]
)
def test_boolean_words_and_codes(cell: str, value: bool) -> None:
    assert read(cell, BOOLEAN) is value
    assert read({"yes": "no", "Y": "N", "1": "0", "TRUE": "FALSE"}[cell], BOOLEAN) is (not value)


def test_a_boolean_that_is_no_word_is_a_problem_naming_the_words() -> None:
    got = read("2", BOOLEAN)
    assert isinstance(got, Problem)
    assert got.code == "not_boolean"
    assert "'2' is not yes/no (true/yes/y/1 or false/no/n/0)" in got.message


def test_values_recode_every_type_and_can_mean_unknown() -> None:
    spss = Grammar(values={"1": True, "2": False, "9": None})
    assert (read("1", BOOLEAN, spss), read("2", BOOLEAN, spss)) == (True, False)
    assert isinstance(read("9", BOOLEAN, spss), Unknown)
    assert read("yes", BOOLEAN, spss) is True  # the words still read
    sex = Grammar(values={"F": "female", "M": "male", "U": None})
    assert read("f", ENUM, sex) == "female"  # codes compared without case, after as written
    assert isinstance(read("U", ENUM, sex), Unknown)
    dx = Grammar(values={"SSC": True, "SLE": False})  # one diagnosis column, one feature
    assert (read("SSc", BOOLEAN, dx), read("SLE", BOOLEAN, dx)) == (True, False)
    below = Grammar(values={"<5": 4.9})
    assert read("<5", NUMBER, below) == 4.9


def test_declared_missing_codes_replace_the_defaults() -> None:
    registry = Grammar(missing=frozenset({"", "-99", "unknown"}))
    assert isinstance(read("-99", NUMBER, registry), Unknown)
    assert isinstance(read("Unknown", ENUM, registry), Unknown)
    assert read("-98", NUMBER, registry) == -98
    assert read("NA", ENUM, registry) == "NA"  # not a code here: an enum value to check


@given(st.text(max_size=80))
def test_any_text_reads_as_one_of_the_three_outcomes(text: str) -> None:
    for kind in (NUMBER, BOOLEAN, ENUM):
        got = read(text, kind, DEFAULT)
        assert isinstance(got, Unknown | Problem | bool | int | float | str)
        if kind is NUMBER and not isinstance(got, Unknown | Problem):
            assert isinstance(got, int | float)
            assert math.isfinite(got)
