"""A registry's codings, read from a sample of its values, for `eligo mapping init`.

Registries code what the cell grammar (app/engine/cells.py) cannot know on its own: their own
codes for unknown (`-99` in numbers, `U` in yes/no and choice columns), a decimal comma
(`8,5`), yes/no as SPSS's 1/2 with 9 for unknown, and choices as abbreviations (`dcSSc` for
diffuse cutaneous SSc). Each is only proposed where the sample leaves one reading: a sentinel
number that is a plausible value of the feature, a column with both decimal commas and points,
a code that abbreviates two of a choice's values are left to the analyst, with why. A guess
the data cannot confirm (1 = yes, 2 = no) is proposed with a comment that says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.batch.mapping import Code
from app.engine.cells import DECIMAL_COMMA
from app.engine.model import Feature
from app.engine.schema import FeatureType

# Numbers registries write for "not known" (SPSS's and SAS's habits); one is taken as such only
# where it lies outside the feature's plausible range.
SENTINELS = frozenset({-9.0, -99.0, -999.0, -9999.0, 999.0, 9999.0})
# Words for "not known" in yes/no and choice columns (compared without case).
MISSING_WORDS = frozenset({"u", "unk", "unk.", "nk", "unknown", "not known"})
SPSS_YES, SPSS_NO, SPSS_UNKNOWN = "1", "2", "9"
MAX_ABBREVIATION = 12  # letters
_THOUSANDS = re.compile(r"^[+-]?\d{1,3},\d{3}$")  # 1,500: a decimal comma, or thousands?
_POINT = re.compile(r"^[+-]?\d*\.\d+$")
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_WORD_SPLIT = re.compile(r"[_\s\-]+")


@dataclass(frozen=True, slots=True)
class Missing:
    """A registry's codes for unknown: each with the columns it was seen in, and the codes
    left to the analyst with why."""

    codes: Mapping[str, tuple[str, ...]]
    doubtful: Mapping[str, str]

    def folded(self) -> frozenset[str]:
        """The codes as the cell grammar compares them."""
        return frozenset(c.strip().casefold() for c in self.codes)


NO_MISSING = Missing({}, {})


def registry_missing(named: Iterable[tuple[str, Sequence[str], Feature]]) -> Missing:
    """The codes for unknown across a registry's columns (name, sample values, the feature its
    name suggests): a sentinel number outside the feature's range in every column it occurs in,
    a word for unknown that is none of a choice's values."""
    seen: dict[str, list[str]] = {}
    inside: dict[str, str] = {}
    for name, values, feature in named:
        for value in values:
            verdict = _missing_kind(value.strip(), feature)
            if verdict == "missing":
                seen.setdefault(value.strip(), []).append(name)
            elif verdict == "inside":
                inside.setdefault(value.strip(), f"{name} ({feature.spec.label})")
    codes = {c: tuple(columns) for c, columns in seen.items() if c not in inside}
    doubtful = {
        c: f"{c} is a plausible value in {where}; declare it where it means unknown"
        for c, where in inside.items()
    }
    return Missing(dict(sorted(codes.items())), dict(sorted(doubtful.items())))


def _missing_kind(value: str, feature: Feature) -> str | None:
    """ "missing": a code for unknown here; "inside": a sentinel that is a plausible value."""
    if feature.type is FeatureType.NUMBER:
        if not _PLAIN_NUMBER.match(value) or float(value) not in SENTINELS:
            return None
        span = feature.spec.range
        if span is not None and not span[0] <= float(value) <= span[1]:
            return "missing"
        return "inside"
    own = {v.casefold() for v in feature.spec.values or []}
    return "missing" if value.casefold() in MISSING_WORDS - own else None


def decimal(values: Sequence[str]) -> tuple[str | None, str]:
    """A number column's decimal mark ("," or "." where its values have decimals, else None),
    and why none is proposed where the values leave it open ("" otherwise)."""
    commas = [v.strip() for v in values if DECIMAL_COMMA.match(v.strip())]
    points = [v.strip() for v in values if _POINT.match(v.strip())]
    if commas and points:
        return None, (
            f"both decimal commas ({commas[0]}) and points ({points[0]}): "
            'declare decimal: "," only if the points are not thousands'
        )
    if commas and all(_THOUSANDS.match(c) for c in commas):
        return None, f"{', '.join(commas[:3])} may be thousands, not decimals: check them"
    return ("," if commas else "." if points else None), ""


def spss_yes_no(values: Iterable[str]) -> dict[str, Code] | None:
    """`values:` for a yes/no column coded 1 and 2 (9 unknown): SPSS's habit, not a rule."""
    found = {v.strip() for v in values}
    if not {SPSS_YES, SPSS_NO} <= found <= {SPSS_YES, SPSS_NO, SPSS_UNKNOWN}:
        return None
    codes: dict[str, Code] = {SPSS_YES: True, SPSS_NO: False}
    if SPSS_UNKNOWN in found:
        codes[SPSS_UNKNOWN] = None
    return codes


def abbreviated(codes: Sequence[str], allowed: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Codes that abbreviate exactly one of a choice's values (`dcSSc` -> diffuse_cutaneous),
    and those that abbreviate several (left to the analyst). An affix all the codes share
    (`SSc`: the disease, not the subtype) is tried without."""
    affix = _common_suffix(codes) if len(codes) > 1 else ""
    found: dict[str, str] = {}
    several: list[str] = []
    for code in codes:
        # Each end of the affix: with two codes, dcSSc and lcSSc share cSSc, not only SSc.
        shorts = {code[: len(code) - cut] for cut in range(len(affix) + 1)}
        fits = [a for a in allowed if any(abbreviates(short, a) for short in shorts)]
        if len(fits) == 1:
            found[code] = fits[0]
        elif fits:
            several.append(f"{code} ({' or '.join(fits)})")
    return found, several


def _common_suffix(codes: Sequence[str]) -> str:
    reversed_common = ""
    for letters in zip(*(c[::-1] for c in codes), strict=False):
        if len(set(letters)) != 1:
            break
        reversed_common += letters[0]
    shortest = min(len(c) for c in codes)
    return reversed_common[::-1] if len(reversed_common) < shortest else ""


def abbreviates(code: str, value: str) -> bool:
    """The code's letters in order in the value's words, each word giving at least its first
    letter: "dc" is diffuse_cutaneous, "lc" limited_cutaneous, not "ss"."""
    words = [w for w in _WORD_SPLIT.split(value.casefold()) if w]
    letters = "".join(ch for ch in code.casefold() if ch.isalnum())
    # An abbreviation is short; a longer text (a comment in a choice column) is none, and the
    # ways to cut it among the words would grow as its length to the words' number.
    return 0 < len(letters) <= MAX_ABBREVIATION and _pieces(letters, words)


def _pieces(letters: str, words: Sequence[str]) -> bool:
    if not words or not letters:
        return not words and not letters
    word = words[0]
    if letters[0] != word[0]:
        return False
    return any(
        _in_order(letters[1:cut], word[1:]) and _pieces(letters[cut:], words[1:])
        for cut in range(1, len(letters) + 1)
    )


def _in_order(letters: str, word: str) -> bool:
    rest = iter(word)
    return all(ch in rest for ch in letters)
