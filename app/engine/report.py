"""Plain-text rendering of decisions, for the command line and for vignette failures."""

from __future__ import annotations

from collections.abc import Mapping

from app.engine.evaluate import AtomTrace, Decision, Result, Status

_MARK = {Result.MET: "met", Result.NOT_MET: "not met", Result.UNKNOWN: "unknown"}


def render_table(
    decisions: list[Decision], indent: str = "", not_assessed: Mapping[str, str] | None = None
) -> str:
    """A plain-text report: one block per rule set, one row per criterion. `not_assessed`:
    rule set id -> why it is set apart (run.set_apart), said before its status."""
    lines: list[str] = []
    for decision in decisions:
        ruleset = decision.ruleset
        status = decision.status.value.upper().replace("_", " ")
        reason = (not_assessed or {}).get(ruleset.id)
        if reason:
            status = f"{reason} (as evaluated: {status})"
        lines.append(f"{ruleset.id} {ruleset.version} ({ruleset.review_status.value}): {status}")
        if decision.status is Status.INDETERMINATE:
            # What keeps it undecided, as the API's answer splits it: values to measure and
            # clinician confirmations (a patient may await only the latter).
            if decision.missing:
                lines.append(f"  missing: {', '.join(decision.missing)}")
            if decision.to_confirm:
                lines.append(f"  to confirm: {', '.join(decision.to_confirm)}")
        rows = [
            (r.criterion.kind.value, r.criterion.id, _MARK[r.result], _values(r.trace))
            for r in (*decision.criteria, *decision.cautions)
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines += [
            "  "
            + "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
            for row in rows
        ]
        lines.append("")
    return "".join(f"{indent}{line}\n" if line else "\n" for line in lines).rstrip() + "\n"


def _values(trace: tuple[AtomTrace, ...]) -> str:
    """Each value the criterion read, once, in reading order (a criterion may read the same
    feature in several atoms: `mrss > 14 … or mrss >= 20`)."""
    return ", ".join(dict.fromkeys(_shown(atom) for atom in trace))


def _shown(atom: AtomTrace) -> str:
    given = atom.value
    if given is None:
        return f"{atom.atom.feature}=?"
    text = f"{atom.atom.feature}={_scalar(given.value)}"
    if given.unit:
        text += f" {given.unit}"
    if given.given_unit and given.given_unit != given.unit:
        text += f" (given {_scalar(given.given_value)} {given.given_unit})"
    return text


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, int | float) else str(value)
