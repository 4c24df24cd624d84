"""UCUM unit conversion.

Units are parsed by ucumvert (a UCUM grammar mapped onto pint), never by a hand-written table.
Conversions are cached per (source, target, molar mass) as a linear map, so after the first
patient a conversion costs a multiplication. The UCUM parser and pint's registry take about half
a second to build, so they are created on first need: a request in canonical units never pays
for them, and neither does a load whose answers (validity, linear maps) unit_memo kept from an
earlier process.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from app.engine import unit_memo

_ANNOTATION_ONLY = re.compile(r"^\{[^{}]*\}$")


class UnitError(ValueError):
    """A unit that is not valid UCUM, or that cannot be converted to the one required."""


@dataclass(frozen=True, slots=True)
class Linear:
    """value_in_target = value_in_source * scale + offset (offset only for Cel/[degF])."""

    scale: float
    offset: float

    def __call__(self, value: float) -> float:
        return round_significant(value * self.scale + self.offset)


IDENTITY = Linear(1.0, 0.0)


def round_significant(value: float, digits: int = 9) -> float:
    """Drop float noise from conversions (1 g/(24.h) is 0.0416666667 g/h inside pint).

    Nine significant digits is far beyond any laboratory's precision, and keeps a value entered
    exactly on a threshold in another unit from landing a hair beside it.
    """
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


@cache
def _from_ucum() -> Callable[[str], Any]:
    """ucumvert's `PintUcumRegistry().from_ucum`, without building that registry.

    PintUcumRegistry loads pint's definitions into a registry of its own (about half a
    second), yet its transformer converts through pint's application registry (ucumvert
    0.3 creates it without one): every quantity comes from there. The parser and that
    transformer are all from_ucum uses, so the same quantities come for half the cost.
    """
    # Deferred: importing pint, lark and ucumvert and building the registry take ~0.5 s.
    from ucumvert.parser import get_ucum_parser, parse_ucum  # noqa: PLC0415
    from ucumvert.ucum_pint import UcumToPintTransformer  # noqa: PLC0415

    parser = get_ucum_parser()
    transform = UcumToPintTransformer().transform
    return lambda unit: transform(parse_ucum(unit, parser))


@lru_cache(maxsize=512)
def _parse(unit: str) -> Any:
    """A pint Quantity for a UCUM code. Annotation-only units ({score}) are not quantities."""
    if _ANNOTATION_ONLY.match(unit):
        raise UnitError(f"{unit!r} is an annotation, only convertible to itself")
    try:
        parsed = _from_ucum()(unit)
    except Exception as exc:  # ucumvert raises several parser error types
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnitError(f"{unit!r} is not a valid UCUM unit ({first_line})") from exc
    if not hasattr(parsed, "to"):
        raise UnitError(f"{unit!r} is not a valid UCUM unit")
    return parsed


def validate_unit(unit: str) -> None:
    """Raise UnitError unless `unit` is valid UCUM (annotation-only units are valid)."""
    if not _ANNOTATION_ONLY.match(unit):
        problem = unit_memo.unit(unit, _problem)
        if problem is not None:
            raise UnitError(problem)


def _problem(unit: str) -> unit_memo.Verdict:
    try:
        _parse(unit)
    except UnitError as exc:
        return str(exc)
    return None


def converter(source: str, target: str, molar_mass: float | None = None) -> Linear:
    """The linear map from `source` to `target` units.

    `molar_mass` (g/mol) lets a substance concentration (umol/L) convert to a mass
    concentration (mg/dL): that is chemistry, not a unit table, so it comes from the feature
    catalogue, and pint applies it.
    """
    if source == target:
        return IDENTITY
    if unit_memo.is_recording():  # a load: what it asks must reach the memo, not an lru hit
        return _remembered(source, target, molar_mass)
    return _remembered_here(source, target, molar_mass)


def _remembered(source: str, target: str, molar_mass: float | None) -> Linear:
    answer = unit_memo.conversion((source, target, molar_mass), _conversion)
    if isinstance(answer, str):
        raise UnitError(answer)
    return Linear(*answer)


# Requests: a conversion already made costs an lru lookup, as it did before unit_memo.
_remembered_here = lru_cache(maxsize=1024)(_remembered)


def anticipate(source: str, target: str, molar_mass: float | None = None) -> None:
    """Work out a conversion that requests will ask for (a form's other units) while a load
    records, so that a fresh process answers the first of them without building pint. Whether
    it converts is for that request to say."""
    with contextlib.suppress(UnitError):
        converter(source, target, molar_mass)


@lru_cache(maxsize=1024)
def _conversion(key: unit_memo.ConversionKey) -> unit_memo.Conversion:
    """`converter`'s answer as plain data (what unit_memo keeps): (scale, offset) or why not."""
    try:
        linear = _linear_map(*key)
    except UnitError as exc:
        return str(exc)
    return linear.scale, linear.offset


def _linear_map(source: str, target: str, molar_mass: float | None) -> Linear:
    src, dst = _parse(source), _parse(target)
    candidates = [src]
    if molar_mass is not None:
        molar = _parse("g/mol") * molar_mass
        candidates += [src * molar, src / molar]
    for candidate in candidates:
        try:
            return _linear(candidate, dst)
        except UnitError:
            continue
    raise UnitError(f"{source!r} is not convertible to {target!r}")


def _linear(src: Any, dst: Any) -> Linear:
    try:
        make = type(src)
        zero = float(make(0.0, src.units).to(dst.units).magnitude)
        one = float(make(float(src.magnitude), src.units).to(dst.units).magnitude)
    except Exception as exc:  # pint.DimensionalityError and friends
        raise UnitError(str(exc)) from exc
    # ucumvert folds numeric factors (24 in g/(24.h)) into the quantity's magnitude: one
    # source unit is `src.magnitude` of `src.units`, and the target's factor is divided out.
    target_factor = float(dst.magnitude)
    return Linear((one - zero) / target_factor, zero / target_factor)


def convert(value: float, source: str, target: str, molar_mass: float | None = None) -> float:
    return converter(source, target, molar_mass)(value)
