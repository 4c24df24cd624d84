"""Evaluate one patient's normalised values against a selection of rule sets."""

from __future__ import annotations

from collections.abc import Sequence

from app.engine.evaluate import Decision, Values, decide
from app.engine.inputs import InputIssue, InvalidInput
from app.engine.model import RuleBase, RuleSet


def select(rules: RuleBase, ids: Sequence[str] | None, *, field: str = "rulesets") -> list[RuleSet]:
    """The requested rule sets in request order (all of them when none are named)."""
    if ids is None:
        return list(rules.rulesets.values())
    issues = [
        InputIssue(
            f"{field}[{i}]",
            "unknown_ruleset",
            f"unknown rule set {ident!r}; known: {', '.join(sorted(rules.rulesets))}",
        )
        for i, ident in enumerate(ids)
        if ident not in rules.rulesets
    ]
    if not ids:
        issues.append(InputIssue(field, "empty", "name at least one rule set, or omit the field"))
    if issues:
        raise InvalidInput(issues)
    return [rules.rulesets[ident] for ident in dict.fromkeys(ids)]


def evaluate_all(rulesets: Sequence[RuleSet], values: Values) -> list[Decision]:
    return [decide(ruleset, values) for ruleset in rulesets]
