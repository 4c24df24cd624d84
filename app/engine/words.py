"""The words a clinician reads, in one place: shared by the clinician form and its printed
report (app/web/view.py), the CDS Hooks cards (app/cds/cards.py) and the answer's own prose
(app/engine/present.py), so the card in the EHR and the form it links to say a verdict alike.

- Units, numbers and derivations as a clinician writes them: "73 years", not "73.0 a";
  "mL/min/1.73 m²", not "mL/min/{1.73_m2}".
- The vocabulary of a decision: status words ("candidate", "undecided: values missing"),
  criterion results, comparisons, what is still open ("2 values to measure, 1 to confirm"),
  the headings of what to measure and what to confirm, why a protocol is not assessed.
  Written in lower case where a context may start a sentence with them (`capitalised`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from app.engine.unit_names import words


def unit_words(unit: str | None) -> str:
    """A UCUM code as clinicians write it, from the one unit table (app/engine/unit_names.py;
    the form's unit select still submits the UCUM code)."""
    return words(unit)


def counted(n: int, noun: str) -> str:
    """ "1 cell", "2,000 cells": a count with its noun (regular plurals only)."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


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


# --- the vocabulary of a decision -----------------------------------------------------------

# A status (the API's `status`) in words; the form starts a badge with a capital, a card says
# it mid-sentence ("Autologous HSCT for SSc: candidate under ASTIS").
STATUS_WORDS: Final[Mapping[str, str]] = {
    "eligible": "candidate",
    "indeterminate": "undecided",
    "ineligible": "ruled out",
    "not_indicated": "not indicated",
}
SYMBOLS: Final[Mapping[str, str]] = {
    "eligible": "✓",
    "indeterminate": "?",
    "ineligible": "✕",
    "not_indicated": "–",
}
VALUES_MISSING: Final = "values missing"
CONFIRMATION_NEEDED: Final = "confirmation needed"
# An undecided verdict says what is open: a value to measure and a clinician's judgement are
# different tasks (EVIDENCE.md §8.5), so a confirmation is never called "missing".
# Key: (values to measure, confirmations awaited).
OPEN: Final[Mapping[tuple[bool, bool], str]] = {
    (True, False): VALUES_MISSING,
    (False, True): CONFIRMATION_NEEDED,
    (True, True): f"{VALUES_MISSING}, {CONFIRMATION_NEEDED}",
}
RESULT_WORDS: Final[Mapping[str, str]] = {"met": "met", "not_met": "not met", "unknown": "unknown"}
COMPARISON_SYMBOLS: Final[Mapping[str, str]] = {
    "<": "<",
    "<=": "≤",
    ">": ">",
    ">=": "≥",
    "==": "=",
    "!=": "≠",
}
# The headings of an undecided verdict's two lists, and how a confirmation says which answer
# lets the patient go on ("goes on if no").
MEASURE_NEXT: Final = "What to measure next"
TO_CONFIRM: Final = "To confirm (clinician judgement)"
GOES_ON_IF: Final = "goes on if"
# Indications and therapies as clinicians name them; another id is shown as it is.
INDICATIONS: Final[Mapping[str, str]] = {"ssc": "SSc", "sle": "SLE"}
THERAPIES: Final[Mapping[str, str]] = {
    "hsct": "Autologous HSCT",
    "msc": "MSC",
    "car_t": "CD19 CAR-T",
}
# A rule set's review status (`review_status`), least reviewed first.
REVIEW: Final[Mapping[str, str]] = {
    "draft": "draft, need local clinical review",
    "in_review": "in local clinical review",
    "approved": "approved locally",
}
# Who asked for an evaluation (its record's `channel`), as "asked through ..." says it.
CHANNELS: Final[Mapping[str, str]] = {
    "form": "the clinician form",
    "smart-launch": "the clinician form, opened from the EHR (SMART launch)",
    "cds-hooks": "the EHR (CDS Hooks)",
    "api": "the API",
    "screening": "registry screening",
}


def capitalised(text: str) -> str:
    """The first letter in capitals, the rest as written ("ruled out" -> "Ruled out")."""
    return text[:1].upper() + text[1:]


def verdict(status: str, to_measure: bool, to_confirm: bool) -> str:
    """A status in words, an undecided one with what is open: "undecided: confirmation
    needed". Undecided with nothing listed (a record from before `to_confirm` existed) is
    "values missing", as it was then."""
    word = STATUS_WORDS.get(status, status)
    if status != "indeterminate":
        return word
    return f"{word}: {OPEN.get((to_measure, to_confirm), VALUES_MISSING)}"


def still_open(measure: int, confirm: int) -> str:
    """How much is open, counted: "2 values to measure, 1 to confirm"; "" when nothing is."""
    parts = [f"{measure} value{'s' * (measure != 1)} to measure"] if measure else []
    return ", ".join([*parts, *([f"{confirm} to confirm"] if confirm else [])])


NOT_ASSESSED: Final = "Not assessed: no diagnosis recorded"  # the heading over those set apart


def not_assessed(own: str, others: str) -> str:
    """Why a protocol is set apart: its disease is not recorded, another one is."""
    return (
        f"Not assessed: no {own} diagnosis recorded (the patient has {others} recorded). "
        f"Record whether the patient has {own} to assess this protocol."
    )


# The form's tables (app/web/view.py exports them under these names, the templates read them).
STATUS: Final[Mapping[str, tuple[str, str]]] = {
    status: (capitalised(verdict(status, True, False)), SYMBOLS[status]) for status in STATUS_WORDS
}
UNDECIDED: Final[Mapping[tuple[bool, bool], str]] = {
    open_: capitalised(verdict("indeterminate", *open_)) for open_ in OPEN
}
RESULT: Final = RESULT_WORDS
COMPARISON: Final = COMPARISON_SYMBOLS
