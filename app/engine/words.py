"""Units, numbers and derivations as a clinician writes them, shared by the clinician form
(app/web/view.py) and the CDS Hooks cards (app/cds/cards.py), so both say a value alike:
"73 years", not "73.0 a"; "mL/min/1.73 m²", not "mL/min/{1.73_m2}".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from app.engine.unit_names import words


def unit_words(unit: str | None) -> str:
    """A UCUM code as clinicians write it, from the one unit table (app/engine/unit_names.py;
    the form's unit select still submits the UCUM code)."""
    return words(unit)


def number(value: float) -> str:
    """Numbers as a clinician writes them: no trailing `.0`, at most four significant digits
    beyond the integer part (a converted 11.5 kPa is 86.26 mmHg, not 86.25604…)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


_FEATURE_ID = re.compile(r"\b[a-z][a-z0-9_]*\b")


def derivation_words(text: str, labels: Mapping[str, str]) -> str:
    """A derivation as the engine writes it ("<condition> (<reason>)") with labels for the
    feature ids of its condition. Only the condition holds feature ids (the reason is prose,
    where "dialysis" is a word, not the feature)."""
    split = _reason_start(text)
    condition, reason = text[:split], text[split:]
    return _FEATURE_ID.sub(lambda m: labels.get(m.group(), m.group()), condition) + reason


def _reason_start(text: str) -> int:
    """Where the trailing parenthesised reason begins (len(text) if there is none)."""
    if not text.endswith(")"):
        return len(text)
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return i - 1 if i > 0 and text[i - 1] == " " else i
    return len(text)
