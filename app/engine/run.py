"""Evaluate one patient's normalised values against a selection of rule sets."""

from __future__ import annotations

from collections.abc import Sequence

from app.engine.evaluate import Decision, Status, Values, decide, layout
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


def set_apart(decisions: Sequence[Decision]) -> list[tuple[str, ...]]:
    """For each decision, the other indications the patient has recorded when its own is not
    recorded at all; () for a decision that stands among the assessed ones.

    An SSc patient whose SLE is simply not entered would otherwise see every lupus protocol as
    undecided beside the SSc ones, as if SLE were a question still open for them. A decision
    is set apart when it is undecided, nothing of its indication criterion is known (every
    value it reads is missing, so it is no half-known indication such as a diagnosis without
    its subtype) and another decision, of another indication, has its indication met. Read
    from the decisions themselves (the indication criterion's result and values), never from
    feature ids, so a local rule set with an indication of its own is held to the same rule.
    Its status stays `indeterminate`: that is what it is. A protocol that rules the patient
    out whatever the diagnosis (an SSc patient under a lupus trial that excludes other
    autoimmune diseases) was assessed, and stays with the others. With no indication met,
    nothing is set apart (the diagnosis is what to record first)."""
    met = [d.ruleset.indication for d in decisions if d.record[0] is True]
    out: list[tuple[str, ...]] = []
    for decision in decisions:
        own = decision.ruleset.indication
        others = tuple(dict.fromkeys(i.value for i in met if i != own))
        undecided = decision.status is Status.INDETERMINATE
        out.append(others if others and undecided and _unrecorded(decision) else ())
    return out


def _unrecorded(decision: Decision) -> bool:
    """The indication criterion is unknown and none of the values it reads was given."""
    _, offset, below = layout(decision.ruleset)[0]  # the indication comes first
    record = decision.record
    return record[offset] is None and all(v is None for v in record[offset + 1 :: 3][: len(below)])
