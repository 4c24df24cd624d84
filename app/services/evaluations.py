"""Evaluations as a service: decide, record, read records back, replay them.

Every channel (the API, the form and its SMART launch, CDS Hooks) answers through one pure
`decide` (the patient's input and the answer's options in; the answer and its exact bytes
out, no session, no clock, no I/O) and one `record` (the answer into the audit trail, with who
asked as its typed channel says). A channel sends `Decided.body` only after `record` has put
it in the session and the session has committed, so no channel gives advice that skips the
audit trail. Nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, assert_never, cast

from pydantic import ConfigDict, Field, with_config
from sqlalchemy import Engine
from sqlalchemy.orm import Session

# typing_extensions': pydantic reads field descriptions from it on Python 3.11.
from typing_extensions import TypedDict

from app.db import audit, clients
from app.db.models import Evaluation, RulesetVersion
from app.engine import evaluate, present, wire
from app.engine.derive import corrections, derive
from app.engine.diagnostics import RuleLoadError
from app.engine.diff import diff_rules
from app.engine.evaluate import Decision
from app.engine.inputs import (
    FeatureValue,
    InputIssue,
    InvalidInput,
    normalise,
    values_from_json,
    values_in_full,
    values_to_record,
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

# --- what is asked: the patient, the answer's options, and who asks ---------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientInput:
    """The patient as a channel received them: explicit feature values (feature id -> value as
    sent), a FHIR R4 Bundle, or both; the patient id is pseudonymised before it is stored."""

    features: Mapping[str, Any] = field(default_factory=dict)
    fhir: Any = None
    patient_id: str | None = None


View = Literal["full", "summary"]  # summary: verdicts without the trace (compact.PRESENT)
# present: leave out the decisions set apart as not assessed (run.set_apart).
Indications = Literal["all", "present"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What the answer holds: the rule sets asked for (None: all), its view, its indications."""

    rulesets: Sequence[str] | None = None
    view: View = "full"
    indications: Indications = "all"


@dataclass(frozen=True, slots=True)
class ApiCall:
    """`POST /v1/evaluations`: the API client that asked (None: authentication off)."""

    client_id: str | None


@dataclass(frozen=True, slots=True)
class FormEntry:
    """The clinician form, typed in or loaded from a bundle: the signed-in clinician's user
    name (None: development mode's nobody)."""

    clinician: str | None


@dataclass(frozen=True, slots=True)
class SmartLaunch:
    """The form opened from the EHR (SMART App Launch): the clinician signed in to Eligo and
    the EHR's FHIR server (`iss`) the record was read from."""

    clinician: str | None
    issuer: str


@dataclass(frozen=True, slots=True)
class CdsCall:
    """A CDS Hooks call: the client's hookInstance, and what else the record keeps of the call
    (service, hook, the JWT's issuer, the user, what was prefetched and fetched). No API
    client: a CDS client is known by its JWT issuer, which `call` holds."""

    hook_instance: str
    call: Mapping[str, Any]


Channel = ApiCall | FormEntry | SmartLaunch | CdsCall
# The channel as the record stores it (`evaluations.channel`, at most 16 characters, no CHECK
# constraint); "screening" is kept for registry screening, which records no evaluation yet.
ChannelName = Literal["api", "cds-hooks", "form", "smart-launch", "screening"]


@dataclass(frozen=True, slots=True)
class Stamp:
    """An answer's id and time: given to `decide`, so that it stays pure."""

    id: str
    at: datetime

    @classmethod
    def new(cls) -> Stamp:
        return cls(str(uuid.uuid4()), datetime.now(UTC))


# --- deciding ---------------------------------------------------------------------------------


def patient_values(
    patient: PatientInput, features: Mapping[str, Feature], on: date
) -> tuple[dict[str, FeatureValue], Mapped | None]:
    """Explicit features over FHIR-derived ones; every input problem of both, at once."""
    issues: list[InputIssue] = []
    explicit: dict[str, FeatureValue] = {}
    mapped = None
    try:
        explicit = normalise(patient.features, features)
    except InvalidInput as exc:
        issues += exc.issues
    if patient.fhir is not None:
        try:
            mapped = map_bundle(patient.fhir, features, on)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """An answer and what its record needs; nothing of who asked (that is `record`'s)."""

    answer: dict[str, Any]  # as rendered: the full view's results may be bytes (wire.py)
    body: bytes  # exactly what is sent, and what the record's digest is the digest of
    patient: PatientInput
    options: Options
    at: datetime
    rules: RuleBase = field(repr=False)
    values: dict[str, FeatureValue]  # as the rules saw them: canonical, derived
    mapped: Mapped | None  # what the FHIR bundle gave, if there was one
    answered: compact.Answered = field(repr=False)  # each decision, with why it was set apart
    wired: bool = False  # whether `answer`'s results are the full view's bytes (wire.py)
    _content: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def rules_hash(self) -> str:
        return self.rules.hash

    @property
    def content(self) -> dict[str, Any]:
        """The answer as dicts, for a channel that reads it (the form, the CLI): built on
        first use by `present` (the API sends `body` and never needs it), the same JSON."""
        if not self._content:
            results = self.answer["results"]
            if self.wired:
                results = _results(self.rules, self.answered, self.options.view, wired=False)
            self._content.append({**self.answer, "results": results})
        return self._content[0]


def decide(
    rules: RuleBase,
    patient: PatientInput,
    options: Options,
    stamp: Stamp,
    *,
    extra: Extra | None = None,
) -> Decided:
    """The answer, rendered once; raises InvalidInput on bad input. Pure: the same rules,
    input, options and stamp give the same bytes. `extra` adds a channel's own part of the
    answer before it is rendered (CDS Hooks: its cards), so the record keeps it too, since it
    is what was sent."""
    rulesets = select(rules, options.rulesets)
    values, mapped = patient_values(patient, rules.features, stamp.at.date())
    answered, omitted = _assessed(evaluate_all(rulesets, values), options.indications)
    # A channel that builds on the answer's dicts (`extra`) has them built; the others are
    # sent the full view's bytes, and read dicts (`content`) only if they ask.
    wired = options.view == "full" and extra is None
    answer: dict[str, Any] = {
        "id": stamp.id,
        "evaluated_at": stamp.at.isoformat(),
        "rules_hash": rules.hash,
        "results": _results(rules, answered, options.view, wired=wired),
    }
    if options.view != "full":
        answer["view"] = options.view
    if omitted is not None:
        answer["indications"] = options.indications
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
    return Decided(
        answer=answer,
        body=body,
        patient=patient,
        options=options,
        at=stamp.at,
        rules=rules,
        values=values,
        mapped=mapped,
        answered=answered,
        wired=wired,
    )


def _results(rules: RuleBase, answered: compact.Answered, view: View, *, wired: bool) -> Any:
    """Each decision as presented: a list of dicts, or the full view's array as the bytes
    `render` splices in (wire.results)."""
    if wired:
        return wire.results(answered, rules)
    return [present.marked(compact.PRESENT[view](d, rules), r) for d, r in answered]


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


# --- recording --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Who:
    """Who asked, as the record's columns hold it; each channel fills only its own."""

    channel: ChannelName
    client_id: str | None = None
    hook_instance: str | None = None
    clinician: str | None = None
    received: Mapping[str, Any] | None = None  # kept beside the input: (key, what) of the call


def _who(channel: Channel) -> _Who:
    match channel:
        case ApiCall(client_id):
            return _Who("api", client_id=client_id)
        case FormEntry(clinician):
            return _Who("form", clinician=clinician)
        case SmartLaunch(clinician, issuer):
            return _Who("smart-launch", clinician=clinician, received={"launch": {"iss": issuer}})
        case CdsCall(hook_instance, call):
            return _Who("cds-hooks", hook_instance=hook_instance, received={"call": dict(call)})
        case _:
            assert_never(channel)


def record(
    session: Session,
    stored: audit.StoredVersions,
    decided: Decided,
    channel: Channel,
    key: bytes,
) -> None:
    """Add the answer to the session as its record (written at commit), with who asked;
    `key` pseudonymises the patient id, given or read from the bundle's Patient."""
    audit.record(session, new_evaluation(decided, channel, key), stored)


def record_now(
    engine: Engine,
    stored: audit.StoredVersions,
    decided: Decided,
    channel: Channel,
    key: bytes,
) -> None:
    """`record`, committed at once in a transaction of its own (PostgreSQL only)."""
    audit.record_now(engine, new_evaluation(decided, channel, key), stored)


def new_evaluation(decided: Decided, channel: Channel, key: bytes) -> audit.NewEvaluation:
    who, mapped = _who(channel), decided.mapped
    patient = decided.patient.patient_id or (mapped.patient_id if mapped else None)
    decisions = [d for d, _ in decided.answered]
    return audit.NewEvaluation(
        id=decided.answer["id"],
        created_at=decided.at,
        channel=who.channel,
        client_id=who.client_id,
        patient_pseudonym=pseudonym(key, patient) if patient else None,
        rules_hash=decided.rules_hash,
        input_received=_received(decided, who),
        input_normalised=values_to_record(decided.values),
        result=compact.record(decided.answer, decided.answered, decided.body, decided.options.view),
        rulesets=[d.ruleset for d in decisions],  # those answered: not those left out
        statuses=[d.status.value for d in decisions],
        hook_instance=who.hook_instance,
        clinician=who.clinician,
    )


def _received(decided: Decided, who: _Who) -> dict[str, Any]:
    """The request as the record keeps it (the patient id apart, pseudonymised)."""
    options = decided.options
    received: dict[str, Any] = {
        "features": dict(decided.patient.features),
        "rulesets": options.rulesets,
    }
    if decided.mapped is not None:
        received["fhir"] = decided.mapped.minimised
    if who.received is not None:
        received.update(who.received)
    if options.indications != "all":  # what was asked, beside the answer's `omitted`
        received["indications"] = options.indications
    return received


# --- the audit payloads: one typed definition each, beside its builder -----------------------
# Like present.py's decisions, plain dicts at run time, and the OpenAPI schema of the audit
# endpoints (app/api/schemas.py uses these, it does not mirror them).

_STRICT = ConfigDict(extra="forbid")  # a key no builder writes is a contract test failure
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
    channel: ChannelName
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
        # Written only by `record`, from a `Channel` (or by a registry job: "screening").
        "channel": cast(ChannelName, evaluation.channel),
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
            "normalised": values_in_full(evaluation.input_normalised),
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
    again = present.decision(evaluate.decide(ruleset, values), then)
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
    patient = PatientInput(features=received["features"], fhir=received.get("fhir"))
    try:
        values, _ = patient_values(patient, rules.features, evaluation.created_at.date())
    except InvalidInput as exc:
        return _failed(f"the recorded input is not valid against today's catalogue: {exc}")
    now = present.decision(evaluate.decide(current, values), rules)
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
