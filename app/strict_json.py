"""JSON as RFC 8259 defines it: Python's `json` also accepts NaN and Infinity, which are not
JSON and must never reach a clinical comparison. Shared by the API and the CLI.

`loads_checked` is the parser for what strangers send (request bodies, a pasted bundle). It
holds a document to limits before anything fans out over it, and names the place of every
problem as a field path (`features.age_years`, `entry[3].resource.code`):

- nesting depth, judged on the raw bytes *before* the parser recurses (Python's parser recurses
  once per level: a few kilobytes of `[` exhaust the stack);
- items per array or object;
- strings with U+0000 or an unpaired surrogate (keys included): no database stores them, and no
  answer can echo a lone surrogate;
- numbers that are not finite doubles (`1e400`, a 401-digit integer): `not_finite`. Integers
  longer than 18 digits are read as doubles, so every number can be compared and echoed.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson

MAX_INT_DIGITS = 18  # an integer of at most 18 digits fits in 64 bits; longer ones are doubles
SHOWN_CHARS = 60  # a key quoted in a field path is cut after this many characters


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str) -> Any:
    """Parse JSON; raises json.JSONDecodeError (with position) or ValueError for NaN/Infinity."""
    return json.loads(text, parse_constant=_reject_constant)


@dataclass(frozen=True, slots=True)
class Limits:
    depth: int  # arrays and objects nested in one another
    items: int  # elements of one array, members of one object


@dataclass(frozen=True, slots=True)
class Issue:
    field: str  # a path into the document; "body" for the document as a whole
    code: str
    message: str


def located(issue: Issue) -> str:
    """An issue as a file's reader is told it: the field path, unless it is the whole
    document ("body" is a request's word for it)."""
    return issue.message if issue.field == "body" else f"{issue.field}: {issue.message}"


class Refused(ValueError):
    """Well-formed JSON that breaks a limit or the string and number policy: the first issues
    found, and how many more there were."""

    def __init__(self, issues: list[Issue], omitted: int = 0) -> None:
        super().__init__("; ".join(f"{i.field}: {i.message}" for i in issues))
        self.issues = issues
        self.omitted = omitted


def loads_checked(raw: bytes, limits: Limits, *, max_issues: int = 100) -> Any:
    """Parse a UTF-8 JSON document within `limits`. Raises UnicodeDecodeError, JSONDecodeError
    (malformed, with line and column), ValueError (NaN, Infinity) or Refused (naming fields)."""
    if _deeper_than(raw, limits.depth):
        deeper = f"arrays and objects nest deeper than {limits.depth} levels"
        raise Refused([Issue("body", "too_deep", deeper)])
    if _plain(raw, limits):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # parsed again below, where the error is found and named
    text = raw.decode("utf-8")
    numbers = _Numbers()
    value = json.loads(
        text,
        parse_constant=_reject_constant,
        parse_int=numbers.integer,
        parse_float=numbers.double,
    )
    walk = _Walk(limits, max_issues, strings=_ESCAPED.search(raw) is not None, numbers=numbers.odd)
    walk.run(value)
    if walk.issues:
        raise Refused(walk.issues, walk.omitted)
    return value


# Depth, before parsing ------------------------------------------------------------------------

# A JSON string (possessive: no backtracking however the body is made). Over the part of a body
# the parser accepts, this finds exactly the strings the parser finds, so the brackets left are
# the ones it would recurse on.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def _deeper_than(raw: bytes, limit: int) -> bool:
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case, at the cost of two scans in C
    steps = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS).translate(_STEPS)
    return max(accumulate(array("b", steps)), default=0) > limit


# The fast path ----------------------------------------------------------------------------------

# orjson parses a request body several times faster than `json` calling a Python hook for every
# number (a tenth of a recorded evaluation's interpreter time went to parsing). It is used only
# where its value is provably the one the strict path returns, with nothing left to check: no
# run of 19 digits (an integer that long is a double here, an int in orjson), no escape of NUL
# or a surrogate (strings to check), and fewer commas than the items limit (so no array or
# object can break it). What orjson refuses (malformed JSON, a number that overflows a double,
# invalid UTF-8) is parsed again by the strict path, which names the problem as it always did.
# tests/test_strict_json.py holds the two paths to the same values, types and errors.
#
# Every digit as "0" (other bytes as they are): a run of 19 digits is then a substring search,
# two passes in C (a regular expression took ten times as long: ~19 µs on a 2 kB body).
_DIGIT_RUNS = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * (MAX_INT_DIGITS + 1)


def _plain(raw: bytes, limits: Limits) -> bool:
    return (
        raw.count(b",") < limits.items
        and _LONG_RUN not in raw.translate(_DIGIT_RUNS)
        and _ESCAPED.search(raw) is None
    )


# Numbers, while parsing ---------------------------------------------------------------------


class _Numbers:
    """Parse hooks: long integers as doubles; remember whether any number is not finite."""

    def __init__(self) -> None:
        self.odd = False

    def integer(self, text: str) -> int | float:
        if len(text.lstrip("-")) <= MAX_INT_DIGITS:
            return int(text)
        return self.double(text)

    def double(self, text: str) -> float:
        number = float(text)  # never raises: too large is inf
        if not math.isfinite(number):
            self.odd = True
        return number


# Strings, sizes and numbers, after parsing ----------------------------------------------------

# NUL and surrogates can only come from \u escapes: raw control characters are invalid JSON and
# raw surrogates invalid UTF-8. Without such an escape the strings need no look.
_ESCAPED = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_SURROGATE = re.compile("[\ud800-\udfff]")


def character_problem(text: str) -> str | None:
    """What makes `text` unacceptable (U+0000, an unpaired surrogate), or None."""
    if "\x00" in text:
        return "contains U+0000 (NUL), which cannot be accepted"
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found:
            return f"contains an unpaired surrogate (U+{ord(found.group()):04X}); not valid text"
    return None


def printable(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` safe to echo in an answer or a log: NUL and surrogates as escapes, cut short."""
    cut = text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
    if cut.isascii() and "\x00" not in cut:
        return cut
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", cut).replace("\x00", "\\u0000")


def field_path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = printable(part)
            out += f".{shown}" if out else shown
    return out or "body"


class _Walk:
    def __init__(self, limits: Limits, max_issues: int, *, strings: bool, numbers: bool) -> None:
        self.limits = limits
        self.max_issues = max_issues
        self.strings = strings
        self.numbers = numbers
        self.issues: list[Issue] = []
        self.omitted = 0

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        if len(self.issues) < self.max_issues:
            self.issues.append(Issue(field_path(path), code, message))
        else:
            self.omitted += 1

    def run(self, root: Any) -> None:
        """Depth first (a container's own values before what nests in it), without recursion."""
        self.scalar((), root)
        stack: list[tuple[tuple[str | int, ...], Any]] = (
            [((), root)] if isinstance(root, dict | list) else []
        )
        while stack:
            path, node = stack.pop()
            if len(node) > self.limits.items:
                kind = "members" if isinstance(node, dict) else "items"
                self.add(path, "too_long", f"{len(node)} {kind}; at most {self.limits.items}")
                continue
            pairs = node.items() if isinstance(node, dict) else enumerate(node)
            nested: list[tuple[tuple[str | int, ...], Any]] = []
            for key, child in pairs:
                if self.strings and isinstance(key, str):
                    problem = character_problem(key)
                    if problem:
                        self.add((*path, key), "invalid_character", f"the key {problem}")
                if isinstance(child, dict | list):
                    nested.append(((*path, key), child))
                elif (self.strings and isinstance(child, str)) or (
                    self.numbers and isinstance(child, float)
                ):
                    self.scalar((*path, key), child)
            stack.extend(reversed(nested))

    def scalar(self, path: tuple[str | int, ...], value: Any) -> None:
        if self.strings and isinstance(value, str):
            problem = character_problem(value)
            if problem:
                self.add(path, "invalid_character", problem)
        elif self.numbers and isinstance(value, float) and not math.isfinite(value):
            self.add(path, "not_finite", "expected a finite number (this one overflows a double)")
