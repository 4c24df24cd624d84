"""What differs between a recorded decision and the same patient decided again.

Both sides are decisions as presented (`present.decision`), so a replay compares exactly what
the caller was told. Only the verdict and its grounds are compared: status, reasons, missing
features and each criterion's result. Wording and layout may change between releases without
the advice changing, and are not differences.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Difference = dict[str, Any]


def differences(recorded: Mapping[str, Any], replayed: Mapping[str, Any]) -> list[Difference]:
    out: list[Difference] = []
    for field in ("status", "reasons", "missing"):
        if recorded.get(field) != replayed.get(field):
            out.append(
                {"field": field, "recorded": recorded.get(field), "replayed": replayed.get(field)}
            )
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


def _results(decision: Mapping[str, Any]) -> dict[str, str]:
    return {
        c["id"]: c["result"]
        for section in ("criteria", "cautions")
        for c in decision.get(section, [])
    }
