"""Did-you-mean for a mistyped id (a feature id, a request key): the catalogue's ids are long
and snake_case (`lvef_percent`, `dlco_percent_predicted`), and a caller who sends `lvef` or
`dlco` should be told the id, not only that theirs is unknown."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

LONGEST = 64  # a longer word is no typo of an id: not compared (and not worth the time)
SHOWN = 3


def close_to(word: str, choices: Iterable[str]) -> list[str]:
    """At most SHOWN choices, the closest first: difflib's close matches, then ids that are the
    word's first parts or begin with it as a whole part (`lvef` -> `lvef_percent`, which
    difflib finds too far)."""
    if not word or len(word) > LONGEST:
        return []
    wanted = word.strip().lower()
    options = list(choices)
    found = difflib.get_close_matches(wanted, options, n=SHOWN, cutoff=0.75)
    found += [c for c in options if wanted.startswith(c + "_")]  # `egfr_ml` -> `egfr`
    found += sorted((c for c in options if c.startswith(wanted + "_")), key=len)
    return list(dict.fromkeys(found))[:SHOWN]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" (or 'x' or 'y'), or "" when nothing is close."""
    found = close_to(word, choices)
    if not found:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in found) + "?"
