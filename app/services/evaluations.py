"""Evaluations as a service: decide and record in one go, read records back, replay them.

Every channel (the API now; CDS Hooks, the form and screening later) decides through
`decide_and_record`, so no channel can give advice that skips the audit trail. Nothing here
commits: the caller's session does, and the answer is sent only after it has.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session

from app.db import audit, clients
from app.db.models import Evaluation, RulesetVersion
from app.engine import present
from app.engine.derive import corrections, derive
from app.engine.diagnostics import RuleLoadError
from app.engine.diff import diff_rules
from app.engine.evaluate import decide
from app.engine.inputs import (
    FeatureValue,
    InputIssue,
    InvalidInput,
    normalise,
    values_from_json,
    values_to_json,
)
from app.engine.load import rebuild
from app.engine.model import Feature, RuleBase, RuleSet
from app.engine.replay import differences
from app.engine.run import evaluate_all, select
from app.fhir.mapping import Mapped, map_bundle
from app.security import pseudonym
from app.services import compact


@dataclass(frozen=True, slots=True)
class Asked:
    """One evaluation request, whichever channel it came through."""

    features: Mapping[str, Any]
    rulesets: Sequence[str] | None
    channel: str
    client_id: str | None
    patient_id: str | None = None  # pseudonymised before it is stored
    fhir: Any = None  # a FHIR R4 Bundle, or None
    hook_instance: str | None = None  # CDS Hooks: the client's id of the call
    call: Mapping[str, Any] | None = None  # CDS Hooks: what else the record keeps of the call
    clinician: str | None = None  # the web form: the signed-in clinician's user name
    view: str = "full"  # or "summary": verdicts without the trace (compact.PRESENT)


def patient_values(
    asked: Asked, features: Mapping[str, Feature], on: date
) -> tuple[dict[str, FeatureValue], Mapped | None]:
    """Explicit features over FHIR-derived ones; every input problem of both, at once."""
    issues: list[InputIssue] = []
    explicit: dict[str, FeatureValue] = {}
    mapped = None
    try:
        explicit = normalise(asked.features, features)
    except InvalidInput as exc:
        issues += exc.issues
    if asked.fhir is not None:
        try:
            mapped = map_bundle(asked.fhir, features, on)
        except InvalidInput as exc:
            issues += exc.issues
    if issues:
        raise InvalidInput(issues)
    # Derived after the merge, so an explicit value and a FHIR-derived one are held to the
    # same implications (an explicit "no alkylating agent" beside a recorded dose is refused).
    merged = {**mapped.values, **explicit} if mapped else explicit
    return derive(merged, features), mapped


def _fhir_summary(mapped: Mapped, values: Mapping[str, FeatureValue]) -> dict[str, Any]:
    """What the bundle gave: used, overridden by an explicit feature (an explicit null is
    "unknown", like an absent key, so it overrides nothing), and skipped."""
    won = {k: v for k, v in mapped.values.items() if values.get(k) is v}
    return {
        "used": {
            k: {
                "value": v.value,
                "unit": v.unit,
                "resource": v.provenance.resource,
                "date": v.provenance.date,
            }
            for k, v in won.items()
        },
        "overridden_by_features": sorted(k for k in mapped.values if k not in won),
        "skipped": [n.as_dict() for n in mapped.skipped],
    }


Extra = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Answered:
    content: dict[str, Any]  # the answer, for a channel that builds on it (cards, the form)
    body: bytes  # exactly what the API sends, and what the record's digest is the digest of


def decide_and_record(
    session: Session,
    rules: RuleBase,
    stored: audit.StoredVersions,
    asked: Asked,
    key: bytes,
    *,
    extra: Extra | None = None,
) -> Answered:
    """The answer to give, already added to the session; raises InvalidInput on bad input.
    `extra` adds a channel's own part of the answer (CDS Hooks: its cards), which the record
    then keeps too, since it is what was sent."""
    rulesets = select(rules, asked.rulesets)
    now = datetime.now(UTC)
    values, mapped = patient_values(asked, rules.features, now.date())
    decisions = evaluate_all(rulesets, values)
    answer: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "evaluated_at": now.isoformat(),
        "rules_hash": rules.hash,
        "results": [compact.PRESENT[asked.view](d, rules) for d in decisions],
    }
    if asked.view != "full":
        answer["view"] = asked.view
    replaced = corrections(values)
    if replaced:
        answer["corrections"] = [present.correction(ident, value) for ident, value in replaced]
    if mapped is not None:
        answer["fhir"] = _fhir_summary(mapped, values)
    if extra is not None:
        answer.update(extra(answer))
    body = present.render(answer)
    patient = asked.patient_id or (mapped.patient_id if mapped else None)
    received: dict[str, Any] = {"features": dict(asked.features), "rulesets": asked.rulesets}
    if mapped is not None:
        received["fhir"] = mapped.minimised
    if asked.call is not None:
        received["call"] = dict(asked.call)
    new = audit.NewEvaluation(
        id=answer["id"],
        created_at=now,
        channel=asked.channel,
        client_id=asked.client_id,
        patient_pseudonym=pseudonym(key, patient) if patient else None,
        rules_hash=rules.hash,
        input_received=received,
        input_normalised=values_to_json(values),
        result=compact.record(answer, decisions, body, asked.view),
        rulesets=rulesets,
        statuses=[d.status.value for d in decisions],
        hook_instance=asked.hook_instance,
        clinician=asked.clinician,
    )
    audit.record(session, new, stored)
    return Answered(answer, body)


def summary(
    evaluation: Evaluation, versions: Mapping[str, str], names: Mapping[str, str]
) -> dict[str, Any]:
    client = evaluation.client_id
    return {
        "id": evaluation.id,
        "created_at": evaluation.created_at,
        "channel": evaluation.channel,
        "client": {"id": client, "name": names.get(client)} if client else None,
        "patient_pseudonym": evaluation.patient_pseudonym,
        "hook_instance": evaluation.hook_instance,
        "clinician": evaluation.clinician,
        "rules_hash": evaluation.rules_hash,
        "decisions": [
            {
                "ruleset_id": d.ruleset_id,
                "version": versions.get(d.ruleset_hash),
                "hash": d.ruleset_hash,
                "status": d.status,
            }
            for d in evaluation.decisions
        ],
    }


def summaries(session: Session, rows: Sequence[Evaluation]) -> list[dict[str, Any]]:
    versions = audit.version_numbers(session, (d.ruleset_hash for e in rows for d in e.decisions))
    names = clients.names(session, (e.client_id for e in rows if e.client_id))
    return [summary(e, versions, names) for e in rows]


def full_record(session: Session, rules: RuleBase, evaluation: Evaluation) -> dict[str, Any]:
    answer = compact.answer(session, rules, evaluation)
    return {
        **summaries(session, [evaluation])[0],
        "input": {
            "received": evaluation.input_received,
            "normalised": evaluation.input_normalised,
        },
        "result": answer.content,
        "integrity": answer.integrity,
    }


def replay(session: Session, rules: RuleBase, evaluation: Evaluation) -> dict[str, Any]:
    """Decide the recorded patient again, with the recorded rule set versions and with
    today's rules, and say what differs from what was recorded."""
    stored = audit.versions(session, (d.ruleset_hash for d in evaluation.decisions))
    recorded_results = compact.verdicts(evaluation)
    return {
        "evaluation_id": evaluation.id,
        "recorded_at": evaluation.created_at,
        "replayed_at": datetime.now(UTC),
        "rules_hash_today": rules.hash,
        "rulesets": [
            _replay_one(evaluation, recorded_results[d.position], stored[d.ruleset_hash], rules)
            for d in evaluation.decisions
        ],
    }


def _replay_one(
    evaluation: Evaluation, recorded: dict[str, Any], version: RulesetVersion, rules: RuleBase
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ruleset_id": version.ruleset_id,
        "recorded": {
            "version": version.version,
            "hash": version.hash,
            "status": recorded["status"],
        },
    }
    try:
        then = rebuild(version.content, version.hash)
    except RuleLoadError as exc:
        out["recorded_version"] = {"error": f"cannot rebuild the stored version: {exc.report()}"}
        return out
    ruleset = then.rulesets[version.ruleset_id]
    if isinstance(recorded.get("criteria"), str):  # a compact record: its verdict letters
        recorded = compact.verdict_view(recorded, ruleset)
    values = values_from_json(evaluation.input_normalised)
    again = present.decision(decide(ruleset, values), then)
    out["recorded_version"] = _outcome(ruleset, again, recorded)
    out["today"] = _today(evaluation, recorded, then, rules)
    return out


def _today(
    evaluation: Evaluation, recorded: dict[str, Any], then: RuleBase, rules: RuleBase
) -> dict[str, Any]:
    ruleset_id = next(iter(then.rulesets))
    current = rules.rulesets.get(ruleset_id)
    if current is None:
        return {"error": f"rule set {ruleset_id!r} is no longer served"}
    received = evaluation.input_received
    asked = Asked(received["features"], None, evaluation.channel, None, None, received.get("fhir"))
    try:
        values, _ = patient_values(asked, rules.features, evaluation.created_at.date())
    except InvalidInput as exc:
        return {"error": f"the recorded input is not valid against today's catalogue: {exc}"}
    now = present.decision(decide(current, values), rules)
    return {
        **_outcome(current, now, recorded),
        "rule_changes": [c.as_dict() for c in diff_rules(then, _alone(current, rules))],
    }


def _outcome(
    ruleset: RuleSet, decision: Mapping[str, Any], recorded: dict[str, Any]
) -> dict[str, Any]:
    found = differences(recorded, decision)
    return {
        "version": ruleset.version,
        "hash": ruleset.hash,
        "status": decision["status"],
        "same_as_recorded": not found,
        "differences": found,
    }


def _alone(ruleset: RuleSet, rules: RuleBase) -> RuleBase:
    """One rule set with the catalogue entries it uses, comparable to a rebuilt snapshot."""
    return RuleBase(
        {f: rules.features[f] for f in ruleset.snapshot["features"]},
        {e: rules.evidence[e] for e in ruleset.snapshot["evidence"]},
        {ruleset.id: ruleset},
        ruleset.hash,
    )
