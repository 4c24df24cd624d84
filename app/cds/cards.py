"""Decisions -> CDS Hooks cards: one card per therapy (HSCT, MSC, CAR-T) that has an answer
worth a clinician's glance, none for therapies whose protocols are all `not_indicated` or set
apart as not assessed (`assessed: false`: an SSc patient's lupus protocols while SLE is not
recorded would otherwise be an "undecided" card for a disease nobody has diagnosed).

A card sums up the therapy's protocols in its summary (under 140 characters, as the spec
requires) and in a short Markdown detail, in the words a clinician reads (criterion titles,
values with plain units, never rule expressions or UCUM codes): per protocol the verdict and
what ruled the patient out or the cautions that apply, then what to measure next and, apart
from it, what a clinician must confirm (a judgement against the source's words, not a value to
measure), each said once for all the protocols waiting for it. The full trace, the documented
risks and the references are one link away, in Eligo's form on this evaluation: the detail is
bounded (DETAIL_LIMIT), since an EHR shows it beside the chart. A criterion shared by a whole
therapy (included from a rule fragment) says so; a derived value says why it holds.
Pure: works on the API's decision JSON.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from app.engine import words
from app.engine.present import (
    ConfirmationOut,
    CriterionOut,
    DecisionOut,
    FeatureUse,
    Provenance,
    RulesetRef,
)
from app.engine.words import (
    GOES_ON_IF,
    MEASURE_NEXT,
    STATUS_WORDS,
    TO_CONFIRM,
    derivation_words,
    number,
    still_open,
    unit_words,
)

SUMMARY_LIMIT = 139  # the spec: "<140 characters"
# The vocabulary's names of therapies and indications (the form reads them from here too).
THERAPIES, INDICATIONS = words.THERAPIES, words.INDICATIONS
# The statuses a card speaks of, in the form's words (app/engine/words.py); in the order of
# how good the news is, which the summary leads with.
WORDS = {status: STATUS_WORDS[status] for status in ("eligible", "indeterminate", "ineligible")}


@dataclass(frozen=True, slots=True)
class Card:
    card: dict[str, Any]  # the CDS Hooks card as sent
    rulesets: tuple[str, ...]  # the rule sets it speaks for (recorded with the card)


@dataclass(frozen=True, slots=True)
class Links:
    form: str  # the clinician form, opened on this evaluation
    rulesets: str  # the rule sets' public description (GET /v1/rulesets), without a "/"
    smart: str = ""  # Eligo's SMART launch URL, when the EHR may launch it ("": no link)


def cards(results: Sequence[DecisionOut], labels: Mapping[str, str], links: Links) -> list[Card]:
    """`labels`: feature id -> label, to say what to measure in words."""
    by_therapy: dict[tuple[str, str], list[DecisionOut]] = {}
    for result in results:
        # Not indicated, or not assessed (the patient has another disease recorded and not
        # this one): nothing for the chart; the form lists them apart.
        if result["status"] == "not_indicated" or result.get("assessed") is False:
            continue
        ruleset = result["ruleset"]
        by_therapy.setdefault((ruleset["therapy"], ruleset["indication"]), []).append(result)
    return [
        _card(therapy, indication, group, labels, links)
        for (therapy, indication), group in by_therapy.items()
    ]


def source_label(results: Sequence[DecisionOut]) -> str:
    """How far the card's rule sets are reviewed: the least reviewed one speaks for the card,
    since a clinician reading "approved" would weigh every verdict on it as such."""
    order = list(words.REVIEW)
    least = min(
        (r["ruleset"]["review_status"] for r in results),
        key=lambda s: order.index(s) if s in order else -1,  # an unknown status: least of all
    )
    return f"Eligo eligibility rules ({words.REVIEW.get(least, least)})"


def _card(
    therapy: str,
    indication: str,
    results: list[DecisionOut],
    labels: Mapping[str, str],
    links: Links,
) -> Card:
    ids = tuple(r["ruleset"]["id"] for r in results)
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary(therapy, indication, results),
        "indicator": indicator(results),
        "detail": detail(results, labels, links.form),
        "source": {
            "label": source_label(results),
            "url": links.rulesets + (f"/{ids[0]}" if len(ids) == 1 else ""),
            "topic": {
                "system": "https://eligo.example/fhir/CodeSystem/eligo-therapies",
                "code": therapy,
                "display": THERAPIES.get(therapy, therapy),
            },
        },
        "links": _links(links),
    }
    return Card(card, ids)


def _links(links: Links) -> list[dict[str, str]]:
    """The recorded evaluation; and, where the EHR may launch Eligo, a `smart` link (the EHR
    adds `iss` and `launch`) that opens the form on the chart's current record."""
    made = [{"label": "Open in Eligo", "url": links.form, "type": "absolute"}]
    if links.smart:
        made.append(
            {"label": "Open in Eligo with the chart's record", "url": links.smart, "type": "smart"}
        )
    return made


def changes(
    results: Sequence[DecisionOut],
    before: Mapping[str, str],
    labels: Mapping[str, str],
    links: Links,
) -> list[Card]:
    """order-select: one card per therapy whose status under some protocol the order would
    change (`before`: rule set id -> status without it); nothing when it changes none."""
    changed = [r for r in results if before.get(r["ruleset"]["id"], r["status"]) != r["status"]]
    made = []
    for card in cards(changed, labels, links):
        group = [r for r in changed if r["ruleset"]["id"] in card.rulesets]
        card.card["summary"] = _change_summary(group, before)
        card.card["indicator"] = "warning" if any(_lost(r, before) for r in group) else "info"
        made.append(card)
    return made


def _lost(result: DecisionOut, before: Mapping[str, str]) -> bool:
    """Given, the order would rule out a patient who was a candidate or still undecided."""
    was = before[result["ruleset"]["id"]]
    return result["status"] == "ineligible" and was in ("eligible", "indeterminate")


def _change_summary(group: Sequence[DecisionOut], before: Mapping[str, str]) -> str:
    ruleset = group[0]["ruleset"]
    head = (
        f"If given, this order changes {THERAPIES.get(ruleset['therapy'], ruleset['therapy'])}"
        f" for {INDICATIONS.get(ruleset['indication'], ruleset['indication'])}"
    )
    moves = [
        f"{STATUS_WORDS.get(before[r['ruleset']['id']], before[r['ruleset']['id']])} to "
        f"{STATUS_WORDS.get(r['status'], r['status'])} under {short_name(r['ruleset'])}"
        for r in group
    ]
    text = f"{head}: {'; '.join(moves)}"
    if len(text) > SUMMARY_LIMIT:
        text = f"{head} under {len(group)} protocols"
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


class Named(TypedDict):
    """What a short name needs of a rule set (a RulesetRef has more)."""

    id: str
    title: str


def short_name(ruleset: Named | RulesetRef) -> str:
    """ "… (ASTIS criteria)" -> "ASTIS": the protocol's name as clinicians say it."""
    found = re.search(r"\(([^()]*)\)\s*$", ruleset["title"])
    if not found:
        return ruleset["id"]
    return re.sub(r"\s+criteria$", "", found.group(1))


def summary(therapy: str, indication: str, results: Sequence[DecisionOut]) -> str:
    head = f"{THERAPIES.get(therapy, therapy)} for {INDICATIONS.get(indication, indication)}"
    status = next(s for s in WORDS if any(r["status"] == s for r in results))
    names = [short_name(r["ruleset"]) for r in results if r["status"] == status]
    tail = _open(results) if status == "indeterminate" else ""
    of = f" ({len(names)} of {len(results)} protocols)" if len(results) > 1 else ""
    text = f"{head}: {WORDS[status]} under {', '.join(names)}{of}{tail}"
    if len(text) > SUMMARY_LIMIT:  # too many names: the count says it
        text = f"{head}: {WORDS[status]} under {len(names)} of {len(results)} protocols{tail}"
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def _open(results: Sequence[DecisionOut]) -> str:
    """What keeps the best verdict undecided, as the form's "still open" says it: values to
    measure, confirmations, or both (each counted once for the protocols waiting for it)."""
    missing = len({f for r in results for f in r["missing"]})
    # .get: answers recorded before confirmations existed have no `to_confirm`.
    confirm = len({c["feature"] for r in results for c in r.get("to_confirm") or ()})
    counted = still_open(missing, confirm)
    return f"; {counted}" if counted else ""


def indicator(results: Sequence[DecisionOut]) -> str:
    """`warning` when the patient is a candidate and a caution applies to them (a risk the
    clinician must weigh before referring); `info` otherwise. Nothing here is `critical`: an
    eligibility opinion is never an emergency in the chart."""
    for result in results:
        if result["status"] == "eligible" and any(c["result"] == "met" for c in result["cautions"]):
            return "warning"
    return "info"


# --- the detail ----------------------------------------------------------------------------
# What a clinician reads in the EHR's side panel: per protocol the verdict and its first
# reasons, then what to measure and what to confirm (shared by the protocols, said once), and
# a link to the full trace, the documented risks and the references in Eligo. Bounded: an EHR
# shows the detail unasked next to the chart, and a long one is not read.

DETAIL_LIMIT = 2000  # bytes of UTF-8
REASONS = 2  # reasons named per protocol; the rest are counted
# How many labels and confirmations are named, tried in turn until the detail fits.
_ROOMS = ((10, 3), (6, 2), (3, 1), (0, 0))


def detail(results: Sequence[DecisionOut], labels: Mapping[str, str], form: str) -> str:
    """The card's Markdown, at most DETAIL_LIMIT bytes whatever the patient and rules."""
    verdicts = [_verdict(r, labels) for r in results]
    link = f"Every criterion, the documented risks and the references: [open in Eligo]({form})"
    for listed, asked in _ROOMS:
        parts = ["\n".join(verdicts), *_open_items(results, labels, listed, asked), link]
        text = "\n\n".join(p for p in parts if p)
        if len(text.encode()) <= DETAIL_LIMIT:
            return text
    return _cut("\n".join(verdicts), DETAIL_LIMIT - len(link.encode()) - 2) + "\n\n" + link


def _cut(text: str, limit: int) -> str:
    """Whole lines that fit in `limit` bytes, then an ellipsis line."""
    kept: list[str] = []
    used = len("- …".encode())
    for line in text.split("\n"):
        used += len(line.encode()) + 1
        if used > limit:
            break
        kept.append(line)
    return "\n".join([*kept, "- …"])


def _verdict(result: DecisionOut, labels: Mapping[str, str]) -> str:
    ruleset, status = result["ruleset"], result["status"]
    head = f"- **{_md(short_name(ruleset))}** ({_md(ruleset['review_status'])}): "
    word = WORDS.get(status, status)
    if status == "ineligible":
        return head + f"{word}: " + _reasons(result, labels)
    if status == "indeterminate":
        return head + word + _open([result])
    met = [c for c in result["cautions"] if c["result"] == "met"]
    cautions = "; ".join(_criterion(c, labels) for c in met[:REASONS])
    more = f" and {len(met) - REASONS} more" if len(met) > REASONS else ""
    return head + word + (f"; caution: {cautions}{more}" if met else "")


def _reasons(result: DecisionOut, labels: Mapping[str, str]) -> str:
    by_id = {c["id"]: c for c in result["criteria"]}
    settled = [by_id[r] for r in result["reasons"] if r in by_id]
    shown = "; ".join(_criterion(c, labels) for c in settled[:REASONS])
    more = len(settled) - REASONS
    return shown + (f"; and {more} more reason{'s' * (more != 1)}" if more > 0 else "")


def _criterion(criterion: CriterionOut, labels: Mapping[str, str]) -> str:
    """The criterion's title and the patient's values in words: "Age 18 to 65 years
    (patient: Age 73 years, from Patient)"."""
    shown = dict.fromkeys(
        _value(f, labels) for f in criterion["features"] if f["value"] is not None
    )
    values = "; ".join(shown)  # a feature used twice in the expression is shown once
    given = f" (patient: {values})" if values else ""
    origin = criterion["origin"]
    shared = f", applies to {_md(origin['applies_to'])}" if origin else ""
    return f"{_md(criterion['title'])}{given}{shared}"


def _value(atom: FeatureUse, labels: Mapping[str, str]) -> str:
    value, unit = atom["value"], unit_words(atom["unit"])
    label = labels.get(atom["feature"], atom["feature"])
    if isinstance(value, bool):
        text = f"{label}: {'yes' if value else 'no'}"
    elif isinstance(value, int | float):
        label = label.removesuffix(f" ({unit})") if unit else label  # "Bilirubin (× ULN)"
        text = f"{label} {number(value)}{f' {unit}' if unit else ''}"
    else:
        text = f"{label}: {str(value).replace('_', ' ')}"
    return _md(text) + _where(atom.get("provenance"), labels)


def _where(provenance: Provenance | None, labels: Mapping[str, str]) -> str:
    if not provenance:
        return ""
    if provenance.get("derivation"):
        return f", derived: {_md(derivation_words(provenance['derivation'], labels))}"
    resource, date = provenance.get("resource"), provenance.get("date")
    if resource and date:
        return f", {_md(resource.split('/')[0])} of {_md(date[:10])}"
    return f", from {_md(resource)}" if resource else ""


def _open_items(
    results: Sequence[DecisionOut], labels: Mapping[str, str], listed: int, asked: int
) -> list[str]:
    """What to measure and what to confirm for the undecided protocols, each once: the
    values most protocols wait for first."""
    undecided = [r for r in results if r["status"] == "indeterminate"]
    wanted = Counter(f for r in undecided for f in r["missing"])
    measure = [_md(labels.get(f, f)) for f, _ in wanted.most_common()]
    # .get: answers recorded before confirmations existed have no `to_confirm`.
    confirm = {c["feature"]: c for r in undecided for c in r.get("to_confirm") or ()}
    items = []
    if measure:
        items.append(f"*{MEASURE_NEXT}:* {_listed(measure, listed)}")
    if confirm:
        items += [_confirmation(c) for c in list(confirm.values())[:asked]]
        if len(confirm) > asked:
            items.append(f"*{TO_CONFIRM}:* {len(confirm) - asked} more (in Eligo)")
    return items


def _listed(items: list[str], room: int) -> str:
    if len(items) <= room:
        return ", ".join(items)
    shown = ", ".join(items[:room])
    return f"{shown} and {len(items) - room} more" if room else f"{len(items)} values"


def _confirmation(item: ConfirmationOut) -> str:
    answer = "yes" if item["proceeds_when"] else "no"
    return f"*{TO_CONFIRM}:* {_md(item['question'])} ({GOES_ON_IF} {answer})"


_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|])")


def _md(text: Any) -> str:
    """Plain text made safe inside Markdown: no emphasis, links or HTML sneak in."""
    return _SPECIAL.sub(r"\\\1", str(text))
