"""What differs between a recorded decision and the same patient decided again.

Both sides are decisions as presented (`present.decision`), so a replay compares exactly what
the caller was told. Only the verdict and its grounds are compared: status, reasons, missing
features and each criterion's result. Wording and layout may change between releases without
the advice changing, and are not differences. `ReplayDifference` is the API's type of one
difference too (a replay's `differences`, app/services/evaluations.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, with_config

# typing_extensions': pydantic cannot read typing's TypedDict on Python 3.11.
from typing_extensions import TypedDict


@with_config(ConfigDict(extra="forbid"))
class ReplayDifference(TypedDict):
    field: Literal["status", "reasons", "missing", "to_confirm", "criterion"]
    id: str | None  # the criterion's; None for the other fields
    recorded: Any
    replayed: Any


_VERDICT: tuple[Literal["status", "reasons", "missing", "to_confirm"], ...] = (
    "status",
    "reasons",
    "missing",
    "to_confirm",
)


def differences(recorded: Mapping[str, Any], replayed: Mapping[str, Any]) -> list[ReplayDifference]:
    out: list[ReplayDifference] = []
    for field in _VERDICT:
        before, after = _field(recorded, replayed, field)
        if before != after:
            out.append({"field": field, "id": None, "recorded": before, "replayed": after})
    before, after = _results(recorded), _results(replayed)
    for ident in [*before, *(k for k in after if k not in before)]:
        if before.get(ident) != after.get(ident):
            out.append(
                {
                    "field": "criterion",
                    "id": ident,
                    "recorded": before.get(ident),  # None: the criterion did not exist
                    "replayed": after.get(ident),
                }
            )
    return out


def _field(recorded: Mapping[str, Any], replayed: Mapping[str, Any], field: str) -> tuple[Any, Any]:
    """A record from before `to_confirm` existed listed confirmations under `missing`: compare
    it with both lists together, so a replay does not report a split as a change."""
    if field == "to_confirm" and "to_confirm" in recorded:
        return _features(recorded.get(field)), _features(replayed.get(field))
    if "to_confirm" in recorded or field not in ("missing", "to_confirm"):
        return recorded.get(field), replayed.get(field)
    if field == "to_confirm":
        return None, None
    together = [*replayed.get("missing", []), *replayed.get("to_confirm", [])]
    return sorted(recorded.get("missing") or []), sorted(together)


def _features(confirmations: list[Any] | None) -> list[str] | None:
    """Confirmations by feature id: an answer lists them with their questions, a compact
    record by id alone, and the question's wording is not the verdict."""
    if confirmations is None:
        return None
    return [c["feature"] if isinstance(c, dict) else c for c in confirmations]


def _results(decision: Mapping[str, Any]) -> dict[str, str]:
    return {
        c["id"]: c["result"]
        for section in ("criteria", "cautions")
        for c in decision.get(section, [])
    }
