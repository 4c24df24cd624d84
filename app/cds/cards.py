"""Decisions -> CDS Hooks cards: one card per therapy (HSCT, MSC, CAR-T) that has an answer
worth a clinician's glance, none for therapies whose protocols are all `not_indicated`.

A card sums up the therapy's protocols in its summary (under 140 characters, as the spec
requires) and explains each protocol in the Markdown detail: what ruled the patient out, what
is still unknown, what to measure next and, apart from it, what a clinician must confirm (a
judgement against the source's words, not a value to measure), the cautions that apply, the
documented risks with their figures, and the references. A criterion shared by a whole therapy
(included from a rule fragment) says where it comes from; a derived value says why it holds.
Pure: works on the API's decision JSON.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from app.engine.present import ConfirmationOut, CriterionOut, DecisionOut, RulesetRef
from app.engine.unit_names import words

SUMMARY_LIMIT = 139  # the spec: "<140 characters"
THERAPIES = {"hsct": "Autologous HSCT", "msc": "MSC", "car_t": "CD19 CAR-T"}
INDICATIONS = {"ssc": "SSc", "sle": "SLE"}
# Status words for clinicians; order = how good the news is for the summary.
WORDS = {
    "eligible": "candidate",
    "indeterminate": "undecided",
    "ineligible": "ruled out",
}


@dataclass(frozen=True, slots=True)
class Card:
    card: dict[str, Any]  # the CDS Hooks card as sent
    rulesets: tuple[str, ...]  # the rule sets it speaks for (recorded with the card)


@dataclass(frozen=True, slots=True)
class Links:
    form: str  # the clinician form, opened on this evaluation
    rulesets: str  # the base URL of the rule sets' public description


def cards(results: Sequence[DecisionOut], labels: Mapping[str, str], links: Links) -> list[Card]:
    """`labels`: feature id -> label, to say what to measure in words."""
    by_therapy: dict[tuple[str, str], list[DecisionOut]] = {}
    for result in results:
        if result["status"] == "not_indicated":
            continue
        ruleset = result["ruleset"]
        by_therapy.setdefault((ruleset["therapy"], ruleset["indication"]), []).append(result)
    return [
        _card(therapy, indication, group, labels, links)
        for (therapy, indication), group in by_therapy.items()
    ]


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
        "detail": "\n\n".join([*(_protocol(r, labels) for r in results), _references(results)]),
        "source": {
            "label": "Eligo eligibility rules (draft, need local clinical review)",
            "url": links.rulesets + (ids[0] if len(ids) == 1 else ""),
            "topic": {
                "system": "https://eligo.example/fhir/CodeSystem/eligo-therapies",
                "code": therapy,
                "display": THERAPIES.get(therapy, therapy),
            },
        },
        "links": [{"label": "Open in Eligo", "url": links.form, "type": "absolute"}],
    }
    return Card(card, ids)


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
        f"{WORDS.get(before[r['ruleset']['id']], before[r['ruleset']['id']])} to "
        f"{WORDS.get(r['status'], r['status'])} under {short_name(r['ruleset'])}"
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
    """What keeps the best verdict undecided: values to measure, confirmations, or both."""
    missing = len({f for r in results for f in r["missing"]})
    # .get: answers recorded before confirmations existed have no `to_confirm`.
    confirm = len({c["feature"] for r in results for c in r.get("to_confirm") or ()})
    values = f"{missing} value{'s' * (missing != 1)} missing"
    if missing and confirm:
        return f"; {values}, {confirm} to confirm"
    if confirm:
        return f"; {confirm} confirmation{'s' * (confirm != 1)} needed to decide"
    return f"; {values} to decide"


def indicator(results: Sequence[DecisionOut]) -> str:
    """`warning` when the patient is a candidate and a caution applies to them (a risk the
    clinician must weigh before referring); `info` otherwise. Nothing here is `critical`: an
    eligibility opinion is never an emergency in the chart."""
    for result in results:
        if result["status"] == "eligible" and any(c["result"] == "met" for c in result["cautions"]):
            return "warning"
    return "info"


def _protocol(result: DecisionOut, labels: Mapping[str, str]) -> str:
    ruleset = result["ruleset"]
    lines = [
        f"**{_md(short_name(ruleset))}**: **{_md(result['status'])}** "
        f"({_md(ruleset['title'])}; rule set `{ruleset['id']}` {_md(ruleset['version'])}, "
        f"review status {_md(ruleset['review_status'])})"
    ]
    lines += _criteria(result, "Rules the patient out", _decisive)
    if result["status"] == "indeterminate":
        lines += _criteria(result, "Not yet known", lambda c: c["result"] == "unknown")
        if result["missing"]:
            measure = ", ".join(_md(labels.get(f, f)) for f in result["missing"])
            lines.append(f"- *What to measure next:* {measure}")
        lines += [_confirmation(c) for c in result.get("to_confirm") or ()]
    lines += [f"- *Caution:* {_criterion(c)}" for c in result["cautions"] if c["result"] == "met"]
    lines += [
        f"- *Documented risk:* {_md(r['title'])}: {_md(r['figure'])} ({_md(r['population'])}) "
        f"{_cite(r['citations'])}"
        for r in result["risks"]
    ]
    return "\n".join(lines)


def _confirmation(item: ConfirmationOut) -> str:
    answer = "yes" if item["proceeds_when"] else "no"
    return (
        f"- *To confirm (clinician judgement):* {_md(item['question'])} "
        f"(goes on if {answer}; `{item['feature']}`)"
    )


def _references(results: Sequence[DecisionOut]) -> str:
    """Each reference once per card, though several protocols cite it."""
    cited = {c["id"]: c for r in results for c in r["citations"]}
    return "**References**\n" + "\n".join(f"- {_reference(c)}" for c in cited.values())


def _decisive(criterion: CriterionOut) -> bool:
    kind, result = str(criterion["kind"]), str(criterion["result"])
    return (kind, result) in {("inclusion", "not_met"), ("exclusion", "met")}


def _criteria(result: DecisionOut, heading: str, chosen: Any) -> list[str]:
    return [
        f"- *{heading}:* {_criterion(c)}"
        for c in result["criteria"]
        if c["kind"] in ("inclusion", "exclusion") and chosen(c)
    ]


def _criterion(criterion: CriterionOut) -> str:
    shown = dict.fromkeys(_value(f) for f in criterion["features"] if f["value"] is not None)
    values = "; ".join(shown)  # a feature used twice in the expression is shown once
    given = f" (patient: {values})" if values else ""
    origin = criterion["origin"]
    shared = f" *({_md(origin['label'])})*" if origin else ""
    return (
        f"{_md(criterion['title'])}: `{criterion['expression']}`{given} "
        f"{_cite(criterion['citations'])}{shared}"
    )


def _value(atom: Mapping[str, Any]) -> str:
    shown = words(atom["unit"])  # as clinicians write it: mmHg, years, not mm[Hg], a
    unit = f" {shown}" if shown else ""
    provenance = atom.get("provenance") or {}
    where = provenance.get("resource")
    source = f", from {_md(where)}" if where else ""
    if provenance.get("derivation"):
        source = f", derived: {_md(provenance['derivation'])}"
    return f"{atom['feature']} = {_md(str(atom['value']))}{_md(unit)}{source}"


def _cite(ids: Sequence[str]) -> str:
    return "[" + ", ".join(ids) + "]" if ids else ""


def _reference(citation: Mapping[str, Any]) -> str:
    text = f"[{citation['id']}] {_md(citation['authors'] or '')} {_md(citation['title'])}"
    if citation.get("year"):
        text += f" ({citation['year']})"
    url = citation.get("url")
    return f"{text}. <{url}>" if url else text


_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|])")


def _md(text: Any) -> str:
    """Plain text made safe inside Markdown: no emphasis, links or HTML sneak in."""
    return _SPECIAL.sub(r"\\\1", str(text))
