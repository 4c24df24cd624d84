"""An answer's audit record, compact: what depends on the patient, and a digest of the rest.

An answer for all shipped rule sets is some 340 kB, of which under 1 kB depends on the patient:
the rest (titles, sources, notes, citations, risks, outcomes) is the rule set version's, and
the audit trail keeps each version once (`ruleset_versions`). So the record keeps, beside the
input as received and as normalised (columns of their own) and the versions by hash (one
`evaluation_decisions` row each):

- each decision's verdict: status, reasons, missing, to-confirm and every criterion's result
  as one letter (M met, N not met, U unknown) in the version's reading order;
- the answer's envelope (id, time, rules hash, corrections, the FHIR summary, a channel's own
  part such as CDS cards) as the JSON text sent, since a JSONB column keeps neither key
  order nor number spelling;
- the SHA-256 and length of the exact answer bytes sent.

Reading a record re-renders the answer (the recorded versions, the normalised input, the
same presentation) and proves it by the digest; a record that cannot be proven says so and
shows the verdicts it holds. Records from before this format hold the whole answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

import orjson
from pydantic import ConfigDict, Field, with_config
from sqlalchemy.orm import Session

# typing_extensions': pydantic reads field descriptions from it on Python 3.11.
from typing_extensions import TypedDict

from app.db import audit
from app.db.models import Evaluation, RulesetVersion
from app.engine import present
from app.engine.diagnostics import RuleLoadError
from app.engine.evaluate import Decision, decide, layout, settled_by
from app.engine.inputs import values_from_json
from app.engine.load import rebuild
from app.engine.model import RuleBase, RuleSet

FORMAT = "compact/1"
# By the view asked for.
PRESENT: dict[str, Callable[[Decision, RuleBase], present.Presented]] = {
    "full": present.decision,
    "summary": present.summary,
}
_LETTER = {True: "M", False: "N", None: "U"}
_RESULT = {"M": "met", "N": "not_met", "U": "unknown"}


Answered = Sequence[tuple[Decision, present.NotAssessedOut | None]]


def record(answer: dict[str, Any], answered: Answered, body: bytes, view: str) -> dict[str, Any]:
    """What the audit trail stores of an answer (`result` column): the decisions answered,
    each with why it was not assessed if it was set apart (run.set_apart)."""
    envelope = {k: v for k, v in answer.items() if k != "results"}
    return {
        "format": FORMAT,
        "view": view,
        "sha256": hashlib.sha256(body).hexdigest(),
        "bytes": len(body),
        "keys": list(answer),
        "envelope": present.render(envelope).decode(),
        "verdicts": [_verdict(d, reason) for d, reason in answered],
    }


def _verdict(decision: Decision, reason: present.NotAssessedOut | None) -> dict[str, Any]:
    """The verdict, and whether it was assessed: kept as sent (the reason's words too), since
    being set apart depends on the other decisions of the answer, and a record from before
    this field holds none and is re-rendered without it."""
    record = decision.record
    verdict: dict[str, Any] = {
        "status": decision.status.value,
        "reasons": [c.id for c in settled_by(decision)],
        "missing": list(decision.missing),
        "to_confirm": list(decision.to_confirm),
        "criteria": "".join(_LETTER[record[at]] for _, at, _ in layout(decision.ruleset)),  # type: ignore[index]
        "assessed": reason is None,
    }
    if reason is not None:
        verdict["not_assessed"] = reason
    return verdict


# Whether a record's answer is proven to be the one sent: a record's `integrity`, as the API
# gives it (app/services/evaluations.py's EvaluationRecord).
@with_config(ConfigDict(extra="forbid"))
class Integrity(TypedDict):
    verified: Annotated[
        bool | None,
        Field(
            description="true: `result` was re-rendered from the record (the rule set versions, "
            "the normalised input, the envelope) and its SHA-256 equals the digest taken of the "
            "bytes sent. false: it could not be proven (`problem`), and `result` holds the "
            "recorded verdicts only. null: a record from before digests, holding the whole "
            "answer."
        ),
    ]
    sha256: NotRequired[Annotated[str, Field(description="Of the answer's bytes as sent")]]
    bytes: NotRequired[int]
    problem: NotRequired[str]
    note: NotRequired[str]


@dataclass(frozen=True, slots=True)
class Recorded:
    content: dict[str, Any]  # the answer as sent, or (unproven) its verdicts only
    integrity: Integrity


def answer(
    session: Session, rules: RuleBase, evaluation: Evaluation, *, shown_as: str | None = None
) -> Recorded:
    """The recorded answer, re-rendered and proven against the digest taken when it was sent.

    `shown_as="full"`: once proven, the same decisions in the full view (the form shows
    every criterion of an answer the API sent as a summary)."""
    stored = evaluation.result
    if stored.get("format") != FORMAT:
        return Recorded(stored, {"verified": None, "note": "recorded whole, before digests"})
    try:
        content = _rerender(session, rules, evaluation, stored, stored["view"])
    except RuleLoadError as exc:
        problem = f"a recorded rule set version cannot be rebuilt: {exc.report()}"
        return _unproven(stored, evaluation, _unproven_integrity(stored, problem))
    body = present.render(content)
    if hashlib.sha256(body).hexdigest() != stored["sha256"]:
        problem = "the re-rendered answer differs from the one sent; its verdicts are shown"
        return _unproven(stored, evaluation, _unproven_integrity(stored, problem))
    if shown_as is not None and shown_as != stored["view"]:
        content = _rerender(session, rules, evaluation, stored, shown_as)
    return Recorded(
        content, {"sha256": stored["sha256"], "bytes": stored["bytes"], "verified": True}
    )


def _unproven_integrity(stored: dict[str, Any], problem: str) -> Integrity:
    return {
        "sha256": stored["sha256"],
        "bytes": stored["bytes"],
        "verified": False,
        "problem": problem,
    }


def _rerender(
    session: Session,
    rules: RuleBase,
    evaluation: Evaluation,
    stored: dict[str, Any],
    view: str,
) -> dict[str, Any]:
    values = values_from_json(evaluation.input_normalised)
    versions: dict[str, RulesetVersion] | None = None
    results = []
    for d, verdict in zip(evaluation.decisions, stored["verdicts"], strict=True):
        served = rules.rulesets.get(d.ruleset_id)
        if served is not None and served.hash == d.ruleset_hash:
            ruleset, base = served, rules
        else:
            if versions is None:
                versions = audit.versions(session, (x.ruleset_hash for x in evaluation.decisions))
            ruleset, base = _version(versions[d.ruleset_hash])
        presented = PRESENT[view](decide(ruleset, values), base)
        if "assessed" in verdict:  # absent from records made before it
            presented = present.marked(presented, verdict.get("not_assessed"))
        results.append(presented)
    envelope: dict[str, Any] = orjson.loads(stored["envelope"])
    if view != stored["view"]:  # another view of the same decisions: its own envelope
        envelope.pop("view", None)
        return {**envelope, "results": results}
    return {k: results if k == "results" else envelope[k] for k in stored["keys"]}


_REBUILT: dict[str, tuple[RuleSet, RuleBase]] = {}
_KEEP = 64  # rebuilt versions kept; each is one rule set with the catalogue entries it uses


def _version(version: RulesetVersion) -> tuple[RuleSet, RuleBase]:
    """A recorded version no longer served, rebuilt from its snapshot (and kept: rebuilding
    validates and compiles the whole rule set again)."""
    found = _REBUILT.get(version.hash)
    if found is None:
        base = rebuild(version.content, version.hash)
        found = (base.rulesets[version.ruleset_id], base)
        if len(_REBUILT) >= _KEEP:
            _REBUILT.pop(next(iter(_REBUILT)))
        _REBUILT[version.hash] = found
    return found


def _unproven(stored: dict[str, Any], evaluation: Evaluation, integrity: Integrity) -> Recorded:
    """The envelope and the verdicts the record holds, never a re-rendering as if it were
    what was sent."""
    envelope: dict[str, Any] = orjson.loads(stored["envelope"])
    verdicts = [
        {"ruleset": {"id": d.ruleset_id, "hash": d.ruleset_hash}, **v}
        for d, v in zip(evaluation.decisions, stored["verdicts"], strict=True)
    ]
    return Recorded({**envelope, "results": verdicts}, integrity)


def verdicts(evaluation: Evaluation) -> list[dict[str, Any]]:
    """Each decision's verdict as recorded (what a replay compares against): a compact
    record's own, stored as decided and independent of any presentation; an older record's
    whole answer."""
    stored = evaluation.result
    if stored.get("format") != FORMAT:
        return list(stored["results"])
    return list(stored["verdicts"])


def verdict_view(verdict: dict[str, Any], ruleset: RuleSet) -> dict[str, Any]:
    """A stored verdict in the shape `replay.differences` compares (criteria by id)."""
    criteria = [c for c, _, _ in layout(ruleset)]
    letters = verdict["criteria"]
    deciding = len(ruleset.deciding)
    entry = [
        {"id": c.id, "result": _RESULT[letter]} for c, letter in zip(criteria, letters, strict=True)
    ]
    return {
        "status": verdict["status"],
        "reasons": verdict["reasons"],
        "missing": verdict["missing"],
        "to_confirm": verdict["to_confirm"],
        "criteria": entry[:deciding],
        "cautions": entry[deciding:],
    }
