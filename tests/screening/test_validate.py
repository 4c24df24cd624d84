"""Validation SQL (app/batch/validate.py) on the engines that run it, against the API's
own functions: `round9` rounds to nine significant digits as `units.round_significant` does.

`round9` finds a value's magnitude by halving the 31 bands it rounds in, and on DuckDB is a
macro the engine defines. Whichever way it is printed, it must pick the ROUND that trying each
band in turn picks (`_in_turn`, the formulation it replaced), on every magnitude and at every
power of ten, where a band ends; and a whole number, which DuckDB's macro gives back as it is
below 10^9, and a number of three decimals or fewer below 10^6, as both do on each side of
those bounds."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import sqlalchemy as sa

from app.batch.backends import DuckDBBackend
from app.batch.validate import round9
from app.engine.sql import number
from app.engine.units import round_significant
from tests.screening.backends import Backend

pytestmark = pytest.mark.one_pass

TABLE = sa.Table("numbers", sa.MetaData(), sa.Column("i", sa.Integer), sa.Column("x", sa.Double))


def _values() -> list[float | None]:
    draw = random.Random(18)
    values: list[float | None] = [None, 0.0, -0.0, 1.0, -1.0, 0.1 + 0.2, 60.0049261]
    for exponent in range(-17, 18):
        power = 10.0**exponent
        values += [power, math.nextafter(power, 0.0), math.nextafter(power, math.inf)]
        values += [-power, draw.uniform(1, 10) * power, -draw.uniform(1, 10) * power]
    values += [round(draw.uniform(0, 300), 1) for _ in range(200)]
    values += [draw.uniform(-1000, 1000) for _ in range(200)]
    # Whole numbers, which DuckDB's round9 gives back without rounding below 10^9: every
    # magnitude, both ends of that shortcut, and whole numbers above it that do round.
    # (Drawn below 10^9 only: above it a whole number ending in 5 is an exact half, which
    # DuckDB's ROUND takes away from zero and Python's to even, with or without the shortcut.)
    values += [float(draw.randrange(10**e, 10 ** (e + 1))) for e in range(9) for _ in range(20)]
    values += [-float(draw.randrange(1, 10**9)) for _ in range(50)]
    for edge in (999_999_999.0, 1e9, 1_000_000_001.0, 1_234_567_891.0, 2.0**53, 2.0**53 + 2):
        values += [edge, -edge, math.nextafter(edge, 0.0), math.nextafter(edge, math.inf)]
    # Numbers of one to four decimals, which DuckDB's round9 gives back below 10^6 when they
    # have three or fewer: every magnitude, both ends of that shortcut, and the doubles beside.
    # (Nine significant digits at most: past them a decimal ending in 5 is the exact-half case
    # above, whichever way it is rounded.)
    for decimals in range(1, 5):
        values += [
            round(draw.uniform(-1, 1) * 10.0**e, decimals)
            for e in range(9 - decimals)
            for _ in range(10)
        ]
    for edge in (999_999.999, 1e6 - 0.0005, 1_000_000.001, 999_999.9999, 0.001, 0.0005):
        values += [edge, -edge, math.nextafter(edge, 0.0), math.nextafter(edge, math.inf)]
    return values


VALUES = _values()


def _in_turn(value: Any) -> Any:
    """`round9` as it was written before: each band's upper end tried in turn."""
    size = sa.func.abs(value)
    bands = [(size < number(10.0 ** (e + 1)), sa.func.round(value, 8 - e)) for e in range(-15, 16)]
    return sa.case((size < number(10.0**-15), value), *bands, else_=value)


@pytest.mark.parametrize("engine", ["duckdb_backend", "spark_backend"])
def test_round9_rounds_as_the_api_and_as_trying_each_band(
    engine: str, request: pytest.FixtureRequest
) -> None:
    backend: Backend = request.getfixturevalue(engine)
    x = TABLE.c.x
    query = sa.select(TABLE.c.i, round9(x, backend.name), _in_turn(x)).order_by(TABLE.c.i)
    rows = backend.run(TABLE, [{"i": i, "x": v} for i, v in enumerate(VALUES)], query)
    assert len(rows) == len(VALUES)
    for i, rounded, in_turn in rows:
        given = VALUES[i]
        assert rounded == in_turn or (rounded is None and in_turn is None), given
        # The engines' ROUND parts from Python's below 1e-14 (scaling by 10^23 first).
        if given is not None and 1e-12 <= abs(given) < 1e16:
            assert rounded == round_significant(given), given


def test_the_duckdb_engine_defines_round9() -> None:
    engine = DuckDBBackend()
    try:
        found = engine.connection.execute("SELECT eligo_round9(2.0 / 3.0)").fetchall()
    finally:
        engine.close()
    assert found == [(round_significant(2.0 / 3.0),)]
