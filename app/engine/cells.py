"""One grammar for a value typed as text: a registry's cell, a cohort file's cell, a form field.

Registries write "unknown" many ways (an empty cell, `NA`, `n/a`, SPSS's `.`), booleans as
words or codes (`yes`, `Y`, `1`; `1/2` in many registries), and numbers with a decimal comma
where that is the local habit. Each reader used to have its own idea of these; this is the one
they share (the screening's SQL writes the same rules as SQL, app/batch/validate.py, held
to this by a property test).

A cell reads as a value (then checked and converted by `normalise`, like any API value), as
unknown (a missing-value code, or a code the mapping sends to null), or as a problem: text
that is no value of the feature's type. A problem is the cell's, never the patient's: the
caller makes that value unknown and reports it (three-valued logic keeps an unknown from ever
making anyone eligible), unless it was asked to be strict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.engine.schema import FeatureType

# Unknown in every registry unless a mapping says otherwise, compared without case: the empty
# cell, R's and SAS's NA, "n/a", SQL's NULL as text, NaN, and SPSS's system-missing ".".
DEFAULT_MISSING = frozenset({"", "na", "n/a", "null", "nan", "."})
TRUE_WORDS = ("true", "yes", "y", "1")
FALSE_WORDS = ("false", "no", "n", "0")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")  # "61,5"; the web form and the starter too
MAX_CELL = 64  # characters: no value is longer (a form field's limit too)


@dataclass(frozen=True, slots=True)
class Grammar:
    """How one source column writes its values.

    `missing`: codes that mean unknown (compared without case and surrounding spaces);
    `decimal_comma`: `61,5` is 61.5 (declared: in a file where `,` may also separate
    thousands it cannot be guessed); `values`: registry code -> feature value, for every type
    (`{1: true, 2: false}`, `{F: female}`, `{99: null}`), codes compared as written, then
    without case."""

    missing: frozenset[str] = DEFAULT_MISSING
    decimal_comma: bool = False
    values: Mapping[str, Any] = field(default_factory=dict)
    # `values` by code without case and spaces, built once: a cell is read per row.
    folded: Mapping[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folded = {str(k).strip().casefold(): v for k, v in self.values.items()}
        object.__setattr__(self, "folded", folded)


DEFAULT = Grammar()


class Unknown:
    """The cell says the value is not known (a missing-value code, or a code mapped to null)."""

    __slots__ = ("code",)

    def __init__(self, code: str) -> None:
        self.code = code

    def __repr__(self) -> str:
        return f"Unknown({self.code!r})"


@dataclass(frozen=True, slots=True)
class Problem:
    """The cell holds no value of the feature's type; `message` says what was expected,
    `code` which problem it is (a caller adds its own hint: a mapping's `values:`, say)."""

    text: str
    code: str  # not_boolean | not_number | decimal_comma | not_finite | too_long
    message: str


Read = Unknown | Problem | bool | float | int | str


def read(text: str, kind: FeatureType, grammar: Grammar = DEFAULT) -> Read:
    """A cell as a value the engine's `normalise` takes, or Unknown, or a Problem."""
    cell = text.strip()
    if len(cell) > MAX_CELL:
        return Problem(cell[:20] + "…", "too_long", f"a cell of {len(cell)} characters is no value")
    folded = cell.casefold()
    if cell in grammar.values or folded in grammar.folded:
        mapped = grammar.values[cell] if cell in grammar.values else grammar.folded[folded]
        return Unknown(cell) if mapped is None else mapped
    if folded in grammar.missing:
        return Unknown(cell)
    if kind is FeatureType.BOOLEAN:
        return _boolean(cell, folded)
    if kind is FeatureType.NUMBER:
        return _number(cell, grammar)
    return cell  # an enum value: `normalise` says whether the feature has it


def _boolean(cell: str, folded: str) -> Read:
    if folded in TRUE_WORDS:
        return True
    if folded in FALSE_WORDS:
        return False
    words = f"{'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}"
    return Problem(cell, "not_boolean", f"{cell!r} is not yes/no ({words})")


def _number(cell: str, grammar: Grammar) -> Read:
    if DECIMAL_COMMA.match(cell):
        if grammar.decimal_comma:
            return _finite(cell, float(cell.replace(",", ".")))
        return Problem(cell, "decimal_comma", f"{cell!r} has a decimal comma, not declared")
    if not _NUMBER.match(cell):
        return Problem(cell, "not_number", f"{cell!r} is not a number")
    if _INTEGER.match(cell):
        return int(cell)  # as JSON would give it: `normalise` tells counts from measures
    return _finite(cell, float(cell))


def _finite(cell: str, number: float) -> Read:
    if math.isfinite(number):
        return number
    return Problem(cell, "not_finite", f"{cell!r} is not a finite number")
