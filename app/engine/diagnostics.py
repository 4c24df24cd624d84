"""Diagnostics for rule files: a stable code, a message and a position.

Loading collects every diagnostic it can before failing, the way compilers do, so an author
fixes a whole file in one pass instead of one error per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Code(StrEnum):
    """Stable diagnostic codes. Never renumber: reviewers and CI logs refer to them."""

    YAML_SYNTAX = "E001"
    DUPLICATE_KEY = "E002"
    SCHEMA = "E003"
    FILE_MISSING = "E004"
    EXPR_SYNTAX = "E010"
    UNKNOWN_FEATURE = "E011"
    TYPE_MISMATCH = "E012"
    UNIT = "E013"
    THRESHOLD_RANGE = "E014"
    UNKNOWN_ENUM_VALUE = "E015"
    UNKNOWN_CITATION = "E020"
    DUPLICATE_ID = "E021"
    UNVERIFIED_THRESHOLD = "E022"
    EMPTY_RANGE = "E023"
    UNKNOWN_FRAGMENT = "E024"
    INCLUDE_CYCLE = "E025"
    INCLUDE_CLASH = "E026"
    FRAGMENT_THERAPY = "E027"
    SAFETY_FLOOR = "E028"
    DERIVATION = "E029"
    UNKNOWN_RULESET = "E030"
    UNKNOWN_CRITERION = "E031"
    INVALID_INPUT = "E032"


NAMES: dict[Code, str] = {
    Code.YAML_SYNTAX: "yaml-syntax",
    Code.DUPLICATE_KEY: "duplicate-key",
    Code.SCHEMA: "schema",
    Code.FILE_MISSING: "file-missing",
    Code.EXPR_SYNTAX: "expression-syntax",
    Code.UNKNOWN_FEATURE: "unknown-feature",
    Code.TYPE_MISMATCH: "type-mismatch",
    Code.UNIT: "unit",
    Code.THRESHOLD_RANGE: "threshold-out-of-range",
    Code.UNKNOWN_ENUM_VALUE: "unknown-enum-value",
    Code.UNKNOWN_CITATION: "unknown-citation",
    Code.DUPLICATE_ID: "duplicate-id",
    Code.UNVERIFIED_THRESHOLD: "unverified-threshold",
    Code.EMPTY_RANGE: "empty-range",
    Code.UNKNOWN_FRAGMENT: "unknown-fragment",
    Code.INCLUDE_CYCLE: "include-cycle",
    Code.INCLUDE_CLASH: "include-id-clash",
    Code.FRAGMENT_THERAPY: "fragment-not-for-therapy",
    Code.SAFETY_FLOOR: "safety-floor",
    Code.DERIVATION: "derivation",
    Code.UNKNOWN_RULESET: "unknown-ruleset",
    Code.UNKNOWN_CRITERION: "unknown-criterion",
    Code.INVALID_INPUT: "invalid-input",
}


@dataclass(frozen=True, slots=True)
class Position:
    """1-based line and column in a file, as editors and compilers print them."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: Code
    message: str
    position: Position

    def __str__(self) -> str:
        return f"{self.position}: error {self.code.value} {NAMES[self.code]}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code.value,
            "name": NAMES[self.code],
            "message": self.message,
            "file": self.position.file,
            "line": self.position.line,
            "col": self.position.col,
        }


class RuleLoadError(Exception):
    """Raised once, after a load, with every diagnostic collected."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(
            diagnostics, key=lambda d: (d.position.file, d.position.line, d.position.col)
        )
        count = len(self.diagnostics)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in rule files")

    def report(self) -> str:
        return "\n".join([*(str(d) for d in self.diagnostics), str(self)])
