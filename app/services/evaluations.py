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
from typing import Annotated, Any, Generic, Literal, TypeVar, cast

from pydantic import ConfigDict, Field, with_config
from sqlalchemy.orm import Session

# typing_extensions': pydantic reads field descriptions from it on Python 3.11.
from typing_extensions import TypedDict

from app.db import audit, clients
from app.db.models import Evaluation, RulesetVersion
from app.engine import present
from app.engine.derive import corrections, derive
from app.engine.diagnostics import RuleLoadError
from app.engine.diff import diff_rules
from app.engine.evaluate import Decision, decide
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
from app.engine.present import StatusText
from app.engine.replay import ReplayDifference, differences
from app.engine.run import evaluate_all, select, set_apart
from app.fhir.mapping import Mapped, map_bundle
from app.security import pseudonym
from app.services import compact
from app.services.compact import Integrity


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
    # Or "present": leave out the decisions set apart as not assessed (run.set_apart).
    indications: str = "all"


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
    answered, omitted = _assessed(evaluate_all(rulesets, values), asked.indications)
    decisions = [d for d, _ in answered]
    answer: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "evaluated_at": now.isoformat(),
        "rules_hash": rules.hash,
        "results": [present.marked(compact.PRESENT[asked.view](d, rules), r) for d, r in answered],
    }
    if asked.view != "full":
        answer["view"] = asked.view
    if omitted is not None:
        answer["indications"] = asked.indications
        answer["omitted"] = omitted
    if not values:  # answered and recorded all the same: an empty request is still a request
        answer["warnings"] = [present.NO_FEATURES]
    replaced = corrections(values)
    if replaced:
        answer["corrections"] = [present.correction(ident, value) for ident, value in replaced]
    if mapped is not None:
        answer["fhir"] = _fhir_summary(mapped, values)
    if extra is not None:
        answer.update(extra(answer))
    body = present.render(answer)
    patient = asked.patient_id or (mapped.patient_id if mapped else None)
    new = audit.NewEvaluation(
        id=answer["id"],
        created_at=now,
        channel=asked.channel,
        client_id=asked.client_id,
        patient_pseudonym=pseudonym(key, patient) if patient else None,
        rules_hash=rules.hash,
        input_received=_received(asked, mapped),
        input_normalised=values_to_json(values),
        result=compact.record(answer, answered, body, asked.view),
        rulesets=[d.ruleset for d in decisions],  # those answered: not those left out
        statuses=[d.status.value for d in decisions],
        hook_instance=asked.hook_instance,
        clinician=asked.clinician,
    )
    audit.record(session, new, stored)
    return Answered(answer, body)


def _assessed(
    decided: Sequence[Decision], indications: str
) -> tuple[compact.Answered, present.OmittedOut | None]:
    """Each decision with why it is not assessed, if it is set apart (run.set_apart); with
    `indications="present"`, only the others, and which were left out."""
    answered = [
        (d, present.not_assessed(d.ruleset, others) if others else None)
        for d, others in zip(decided, set_apart(decided), strict=True)
    ]
    if indications == "all":
        return answered, None
    left_out = [d.ruleset.id for d, reason in answered if reason is not None]
    kept = [(d, reason) for d, reason in answered if reason is None]
    return kept, {"code": present.NOT_ASSESSED, "count": len(left_out), "rulesets": left_out}


def _received(asked: Asked, mapped: Mapped | None) -> dict[str, Any]:
    """The request as the record keeps it (the patient id apart, pseudonymised)."""
    received: dict[str, Any] = {"features": dict(asked.features), "rulesets": asked.rulesets}
    if mapped is not None:
        received["fhir"] = mapped.minimised
    if asked.call is not None:
        received["call"] = dict(asked.call)
    if asked.indications != "all":  # what was asked, beside the answer's `omitted`
        received["indications"] = asked.indications
    return received


# --- the audit payloads: one typed definition each, beside its builder -----------------------
# Like present.py's decisions, plain dicts at run time, and the OpenAPI schema of the audit
# endpoints (app/api/schemas.py uses these, it does not mirror them).

_STRICT = ConfigDict(extra="forbid")  # a key no builder writes is a contract test failure
Channel = Literal["api", "cds-hooks", "form", "screening"]
Answer = TypeVar("Answer")  # a record's `result`: the answer, as the API types it


@with_config(_STRICT)
class ClientRef(TypedDict):
    id: str
    name: str | None


@with_config(_STRICT)
class DecisionRef(TypedDict):
    ruleset_id: str
    version: str | None
    hash: str
    status: StatusText


@with_config(_STRICT)
class EvaluationSummary(TypedDict):
    id: str
    created_at: datetime
    channel: Channel
    client: Annotated[
        ClientRef | None, Field(description="The API client that asked; null: auth off")
    ]
    patient_pseudonym: str | None
    hook_instance: Annotated[
        str | None, Field(description="CDS Hooks only: the client's hookInstance")
    ]
    clinician: Annotated[
        str | None,
        Field(description="The web form only: the user name of the clinician who asked"),
    ]
    rules_hash: str
    decisions: list[DecisionRef]


@with_config(_STRICT)
class RecordedInput(TypedDict):
    received: Annotated[
        dict[str, Any], Field(description="As sent, with the patient id pseudonymised")
    ]
    normalised: Annotated[
        dict[str, Any], Field(description="Canonical units, as the rules saw them")
    ]


# Generic in its `result` only: the answer's envelope is typed by the API's models
# (app/api/schemas.py), which the service does not depend on.
@with_config(_STRICT)
class EvaluationRecord(EvaluationSummary, Generic[Answer]):
    input: RecordedInput
    result: Annotated[Answer, Field(description="Exactly what was answered")]
    integrity: Integrity


@with_config(_STRICT)
class RecordedVersion(TypedDict):
    version: str
    hash: str
    status: StatusText


# Every key is always there (None where it does not apply), as the API has always sent it.
@with_config(_STRICT)
class ReplayOutcome(TypedDict):
    version: str | None
    hash: str | None
    status: StatusText | None
    same_as_recorded: bool | None
    differences: list[ReplayDifference]
    rule_changes: Annotated[
        list[dict[str, str | None]] | None,
        Field(description="How today's rule set differs from the recorded version"),
    ]
    error: Annotated[str | None, Field(description="Why this replay could not run")]


@with_config(_STRICT)
class RulesetReplay(TypedDict):
    ruleset_id: str
    recorded: RecordedVersion
    recorded_version: Annotated[
        ReplayOutcome,
        Field(
            description="Re-evaluated with the exact rule set version recorded; should be the same"
        ),
    ]
    today: Annotated[
        ReplayOutcome | None,
        Field(description="Re-evaluated with the rule set as served today"),
    ]


@with_config(_STRICT)
class Replay(TypedDict):
    evaluation_id: str
    recorded_at: datetime
    replayed_at: datetime
    rules_hash_today: str
    rulesets: list[RulesetReplay]


# --- the audit builders -----------------------------------------------------------------------


def summary(
    evaluation: Evaluation, versions: Mapping[str, str], names: Mapping[str, str]
) -> EvaluationSummary:
    client = evaluation.client_id
    return {
        "id": evaluation.id,
        "created_at": evaluation.created_at,
        # Written only by decide_and_record, from an `Asked.channel` of this vocabulary.
        "channel": cast(Channel, evaluation.channel),
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
                "status": cast(StatusText, d.status),  # written as a Status's value
            }
            for d in evaluation.decisions
        ],
    }


def summaries(session: Session, rows: Sequence[Evaluation]) -> list[EvaluationSummary]:
    versions = audit.version_numbers(session, (d.ruleset_hash for e in rows for d in e.decisions))
    names = clients.names(session, (e.client_id for e in rows if e.client_id))
    return [summary(e, versions, names) for e in rows]


def full_record(
    session: Session, rules: RuleBase, evaluation: Evaluation
) -> EvaluationRecord[dict[str, Any]]:
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


def replay(session: Session, rules: RuleBase, evaluation: Evaluation) -> Replay:
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
) -> RulesetReplay:
    try:
        then = rebuild(version.content, version.hash)
    except RuleLoadError as exc:
        failed = _failed(f"cannot rebuild the stored version: {exc.report()}")
        return _ruleset_replay(version, recorded, failed, None)
    ruleset = then.rulesets[version.ruleset_id]
    if isinstance(recorded.get("criteria"), str):  # a compact record: its verdict letters
        recorded = compact.verdict_view(recorded, ruleset)
    values = values_from_json(evaluation.input_normalised)
    again = present.decision(decide(ruleset, values), then)
    outcome = _outcome(ruleset, again, recorded)
    return _ruleset_replay(version, recorded, outcome, _today(evaluation, recorded, then, rules))


def _ruleset_replay(
    version: RulesetVersion,
    recorded: dict[str, Any],
    outcome: ReplayOutcome,
    today: ReplayOutcome | None,
) -> RulesetReplay:
    return {
        "ruleset_id": version.ruleset_id,
        "recorded": {
            "version": version.version,
            "hash": version.hash,
            "status": recorded["status"],
        },
        "recorded_version": outcome,
        "today": today,
    }


def _today(
    evaluation: Evaluation, recorded: dict[str, Any], then: RuleBase, rules: RuleBase
) -> ReplayOutcome:
    ruleset_id = next(iter(then.rulesets))
    current = rules.rulesets.get(ruleset_id)
    if current is None:
        return _failed(f"rule set {ruleset_id!r} is no longer served")
    received = evaluation.input_received
    asked = Asked(received["features"], None, evaluation.channel, None, None, received.get("fhir"))
    try:
        values, _ = patient_values(asked, rules.features, evaluation.created_at.date())
    except InvalidInput as exc:
        return _failed(f"the recorded input is not valid against today's catalogue: {exc}")
    now = present.decision(decide(current, values), rules)
    changes = [c.as_dict() for c in diff_rules(then, _alone(current, rules))]
    return _outcome(current, now, recorded, changes)


def _outcome(
    ruleset: RuleSet,
    decision: present.DecisionOut,
    recorded: dict[str, Any],
    rule_changes: list[dict[str, str | None]] | None = None,
) -> ReplayOutcome:
    found = differences(recorded, decision)
    return {
        "version": ruleset.version,
        "hash": ruleset.hash,
        "status": decision["status"],
        "same_as_recorded": not found,
        "differences": found,
        "rule_changes": rule_changes,
        "error": None,
    }


def _failed(error: str) -> ReplayOutcome:
    return {
        "version": None,
        "hash": None,
        "status": None,
        "same_as_recorded": None,
        "differences": [],
        "rule_changes": None,
        "error": error,
    }


def _alone(ruleset: RuleSet, rules: RuleBase) -> RuleBase:
    """One rule set with the catalogue entries it uses, comparable to a rebuilt snapshot."""
    return RuleBase(
        {f: rules.features[f] for f in ruleset.snapshot["features"]},
        {e: rules.evidence[e] for e in ruleset.snapshot["evidence"]},
        {ruleset.id: ruleset},
        ruleset.hash,
    )
