"""JSON as RFC 8259 defines it: Python's `json` also accepts NaN and Infinity, which are not
JSON and must never reach a clinical comparison. Shared by the API and the CLI."""

from __future__ import annotations

import json
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str) -> Any:
    """Parse JSON; raises json.JSONDecodeError (with position) or ValueError for NaN/Infinity."""
    return json.loads(text, parse_constant=_reject_constant)
