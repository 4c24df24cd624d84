"""Units as people write them: the one table of spellings beside the UCUM converter.

Laboratories and clinicians write `µmol/L`, `mmHg`, `mg/dl`, `years`, `x10^9/L`; UCUM, which
`units` converts, writes `umol/L`, `mm[Hg]`, `mg/dL`, `a`, `10*9/L`. Every channel that reads a
unit (API JSON and FHIR Quantities through `inputs.normalise`, the form, a screening's column
units) first looks the spelling up here (`ucum`): a spelling in the table becomes its UCUM
code, anything else is taken as UCUM. So a synonym converts exactly as its code does: the table
holds no conversion factor, only names.

Every spelling names one unit. Nothing loose is listed: not `m` (metre, month or minute?),
not `mcg/dl` guessed from `mcg`; a spelling that is also valid UCUM is listed only where it means
the same unit (tests/engine/test_unit_names.py converts both), and a spelling claimed by two
codes stops the import. A unit neither here nor in UCUM is refused with the units the feature
accepts, never guessed.

The other direction, `words`, is what people read (error messages, the form): `mmHg`, not
`mm[Hg]`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator

# UCUM code -> (how people read it, other spellings people write). `µ` in a spelling stands for
# every micro sign (`_micro`), and a litre written `L` also for `l` (`_litre`).
_TABLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "a": ("years", ("years", "year", "yrs", "yr", "y")),
    "mo": ("months", ("months", "month", "mths", "mth")),
    "wk": ("weeks", ("weeks", "week", "wks")),
    "d": ("days", ("days", "day")),
    "h": ("hours", ("hours", "hour", "hrs", "hr")),
    "%": ("%", ("percent",)),
    "mm[Hg]": ("mmHg", ("mmHg", "mm Hg", "mmhg")),
    "kPa": ("kPa", ("kpa",)),
    "mL/min": ("mL/min", ("mL/min", "mL/mn")),
    "mL/s": ("mL/s", ("mL/s", "mL/sec")),
    "mL/min/{1.73_m2}": (
        "mL/min/1.73 m²",
        tuple(f"mL/min/1.73{space}m{square}" for space in ("", " ") for square in ("2", "²", "^2")),
    ),
    "mg/dL": ("mg/dL", ("mg/dL",)),
    "g/dL": ("g/dL", ("g/dL",)),
    "g/L": ("g/L", ("g/L",)),
    "mg/L": ("mg/L", ("mg/L",)),
    "mmol/L": ("mmol/L", ("mmol/L",)),
    "umol/L": ("µmol/L", ("µmol/L",)),
    "10*9/L": (
        "×10⁹/L",
        tuple(
            f"{times}10{power}/L"
            for times in ("", "x", "×", "x ", "× ")
            for power in ("^9", "*9", "⁹", "E9", "e9")
        ),
    ),
    "g/(24.h)": ("g/24 h", ("g/24h", "g/24 h", "g/24hr", "g/24 hr", "g/day")),
    "mg/(24.h)": ("mg/24 h", ("mg/24h", "mg/24 h", "mg/24hr", "mg/24 hr")),
    "mg/d": ("mg/day", ("mg/day",)),
    "g": ("g", ()),
    "mg": ("mg", ()),
    "ug": ("µg", ("µg", "mcg")),
    "g/m2": ("g/m²", ("g/m²", "g/m^2")),
    "mg/m2": ("mg/m²", ("mg/m²", "mg/m^2")),
    "cm": ("cm", ()),
    "mm": ("mm", ()),
    "mm/h": ("mm/h", ("mm/hr", "mm/hour")),
    "g/g": ("g/g", ()),
    "mg/g": ("mg/g", ()),
    "mg/mg": ("mg/mg", ()),
    "[wood'U]": ("Wood units", ("Wood units", "Wood unit", "wood units", "WU")),
    "dyn.s/cm5": (
        "dyn·s/cm⁵",
        ("dyn·s/cm⁵", "dyn·s/cm5", "dyn*s/cm5", "dyn s/cm5", "dyn·s·cm⁻⁵", "dyn.s.cm-5"),
    ),
    # Annotations: a count, a score, a class or a ratio is a plain number; the words say what.
    "{ratio}": ("× ULN", ("× ULN", "x ULN", "xULN", "×ULN")),
    "{score}": ("points", ("points",)),
    "{count}": ("", ()),
    "{class}": ("", ()),
    "1": ("", ()),
}
_MICRO_SIGNS = ("µ", "μ", "u")  # MICRO SIGN U+00B5, GREEK SMALL LETTER MU U+03BC, UCUM's u
_LITRE = re.compile(r"L(?!N)")


def _micro(spelling: str) -> Iterator[str]:
    if "µ" not in spelling:
        yield spelling
        return
    for sign in _MICRO_SIGNS:
        yield spelling.replace("µ", sign)


def _litre(spelling: str) -> Iterator[str]:
    """`mg/dL` and `mg/dl`: people write the litre both ways (every `L` of the table is a
    litre, except in `ULN`)."""
    yield spelling
    lower = _LITRE.sub("l", spelling)
    if lower != spelling:
        yield lower


def _spellings(written: Iterable[str]) -> Iterator[str]:
    for spelling in written:
        for micro in _micro(spelling):
            yield from _litre(micro)


def _build() -> dict[str, str]:
    table: dict[str, str] = {}
    for code, (_, written) in _TABLE.items():
        for spelling in _spellings(written):
            if spelling == code:
                continue
            claimed = table.setdefault(spelling, code)
            if claimed != code:  # a spelling of two units would be a guess
                raise ValueError(f"unit spelling {spelling!r} names {claimed!r} and {code!r}")
    return table


SYNONYMS: dict[str, str] = _build()
WORDS: dict[str, str] = {code: words for code, (words, _) in _TABLE.items()}


def ucum(unit: str) -> str:
    """The UCUM code of a unit as written: a listed spelling's code, else `unit` itself."""
    return SYNONYMS.get(unit, unit)


def words(unit: str | None) -> str:
    """A UCUM code as people write it (`mm[Hg]` -> `mmHg`); '' for none or a plain number."""
    if unit is None:
        return ""
    return WORDS.get(unit, unit)


def with_unit(value: float, unit: str | None) -> str:
    """`65.5 years`, `52 %`, `3` (a count): a value and its unit as a message shows them."""
    shown = words(unit)
    return f"{value:g} {shown}" if shown else f"{value:g}"


def _plain(unit: str) -> str:
    """Words for a unit one sends: none for an annotation (`{score}` is a plain number)."""
    return "" if unit.startswith("{") or unit == "1" else words(unit)


def accepted(units: Iterable[str]) -> str:
    """The units a feature takes, as words: `mg/dL or µmol/L`; a plain number for a score."""
    shown = list(dict.fromkeys(_plain(u) or "a plain number (no unit)" for u in units))
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def nearest(sent: str, units: Iterable[str]) -> str | None:
    """Of the spellings of `units`, the closest to what was sent, in words (`umol/dl` ->
    `µmol/L`); None when nothing is close."""
    spelled: dict[str, str] = {}
    for code in units:
        for spelling in (code, words(code), *_spellings(_TABLE.get(code, ("", ()))[1])):
            if spelling:
                spelled.setdefault(spelling, code)
    found = difflib.get_close_matches(sent, list(spelled), n=1, cutoff=0.5)
    if not found:
        found = difflib.get_close_matches(sent.lower(), [s.lower() for s in spelled], 1, 0.5)
        if not found:
            return None
        found = [next(s for s in spelled if s.lower() == found[0])]
    return words(spelled[found[0]]) or None


def refusal(sent: str, units: Iterable[str], *, recognised: bool) -> str:
    """Why a unit is refused, in people's words: what was sent, the units this feature takes
    and the nearest of them. `recognised`: the unit is one this service knows, of another kind
    (`mg` for an age); else it is unknown altogether."""
    units = list(units)
    shown = repr(sent[:40] + ("…" if len(sent) > 40 else ""))
    if recognised:  # a spelling is not the problem: no nearest spelling
        return f"{shown} is a unit of another kind; use {accepted(units)}"
    message = f"{shown} is not a unit Eligo recognises; use {accepted(units)}"
    close = nearest(sent, units)
    if close is not None:
        message += f" (nearest to what was sent: {close})"
    return message
