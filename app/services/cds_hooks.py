"""Eligo as a CDS Hooks 2.0 service: what it offers (discovery), how it answers a hook call
(gather the record, decide and record, cards), and the feedback on its cards.

Every call decides and records through the evaluation service (`decide`, then `record` with a
`CdsCall`), so each CDS answer is in the audit trail with channel `cds-hooks`, its
hookInstance and the cards exactly as sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
from sqlalchemy.orm import Session

from app.cds import cards as cds_cards
from app.cds.gather import Gathered, gather
from app.cds.orders import as_given, of_tracked_drugs, selected_orders
from app.cds.schemas import FeedbackRequest, HookRequest
from app.db import audit
from app.db import cds as records
from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.engine.present import DecisionOut
from app.engine.run import evaluate_all, select
from app.errors import FieldError, InvalidPayload, NotFound
from app.fhir.medication import codes_of_derived
from app.fhir.queries import searches
from app.services import evaluations


@dataclass(frozen=True, slots=True)
class Offered:
    hook: str
    title: str
    description: str


SERVICES = {
    "eligo-patient-view": Offered(
        "patient-view",
        "Cellular therapy eligibility",
        "When a chart with systemic sclerosis or SLE opens: which of autologous HSCT, MSC and "
        "CD19 CAR-T the patient could have under each protocol, what rules them out, what is "
        "still missing to decide, the documented risks and the evidence. Decision support "
        "only; the rule sets need local clinical review.",
    ),
    "eligo-order-select": Offered(
        "order-select",
        "Cellular therapy eligibility while ordering",
        "When a cyclophosphamide order is selected: which protocols' eligibility (HSCT, MSC, "
        "CAR-T) it would change if given, counted as one dose today, since prior "
        "cyclophosphamide limits exclude. No card when it changes none. Decision support "
        "only; the rule sets need local clinical review.",
    ),
}


def service(service_id: str) -> Offered:
    offered = SERVICES.get(service_id)
    if offered is None:
        raise NotFound(f"no CDS service {service_id!r}; GET /cds-services lists them")
    return offered


def discovery(rules: RuleBase) -> dict[str, Any]:
    prefetch = {s.key: s.query for s in searches(rules.features)}
    return {
        "services": [
            {
                "hook": offered.hook,
                "id": service_id,
                "title": offered.title,
                "description": offered.description,
                "prefetch": prefetch,
            }
            for service_id, offered in SERVICES.items()
        ]
    }


@dataclass(frozen=True, slots=True)
class Context:
    """What a hook call needs besides the request: who called and where things are."""

    issuer: str | None  # the verified JWT issuer (None in development without auth)
    http: httpx.Client
    fhir_servers: Sequence[str]
    base_url: str  # public URL of this service, for links (ends without "/")
    key: bytes  # the pseudonym key
    smart_launch: str = ""  # the SMART launch URL cards link to, if the EHR may launch Eligo


def call(
    session: Session,
    rules: RuleBase,
    stored: audit.StoredVersions,
    service_id: str,
    *,
    request: HookRequest,
    context: Context,
) -> dict[str, Any]:
    """The CDS response ({"cards": [...]}); the decision and its cards are in the session."""
    offered = service(service_id)
    if request.hook != offered.hook:
        raise InvalidPayload(
            "wrong hook",
            [FieldError("hook", "wrong_hook", f"{service_id} answers {offered.hook!r}")],
        )
    call = _Call(session, rules, stored, service_id, request, context)
    if offered.hook == "order-select":
        return call.order_select()
    gathered = gather(request, searches(rules.features), context.http, context.fhir_servers)
    labels = call.labels()
    return call.decide(gathered, lambda results, links: cds_cards.cards(results, labels, links))


MakeCards = Callable[[list[DecisionOut], cds_cards.Links], list[cds_cards.Card]]


@dataclass(frozen=True, slots=True)
class _Call:
    session: Session
    rules: RuleBase
    stored: audit.StoredVersions
    service_id: str
    request: HookRequest
    context: Context

    def labels(self) -> dict[str, str]:
        return {f.id: f.spec.label for f in self.rules.features.values()}

    def order_select(self) -> dict[str, Any]:
        """Cards only for the therapies the selected orders would change, if given."""
        request, today = self.request, datetime.now(UTC).date()
        selected = selected_orders(request.context.draftOrders, request.context.selections or [])
        orders = of_tracked_drugs(selected, codes_of_derived(self.rules.features))
        given = as_given(orders, request.context.patientId, today)
        if not given:
            return {"cards": []}  # nothing selected bears on eligibility: no decision, no noise
        context = self.context
        gathered = gather(
            request, searches(self.rules.features), context.http, context.fhir_servers
        )
        before = self._statuses(gathered, today)
        gathered.add("context.draftOrders", given)
        labels = self.labels()
        return self.decide(
            gathered,
            lambda results, links: cds_cards.changes(results, before, labels, links),
            what_if=[f"MedicationRequest/{o.get('id')}" for o in orders],
        )

    def _statuses(self, gathered: Gathered, today: date) -> dict[str, str]:
        """Each rule set's status without the orders (not recorded: only the answer is)."""
        patient = evaluations.PatientInput(fhir=gathered.bundle)
        try:
            values, _ = evaluations.patient_values(patient, self.rules.features, today)
        except InvalidInput as exc:
            raise gathered.located(exc) from None
        decisions = evaluate_all(select(self.rules, None), values)
        return {d.ruleset.id: d.status.value for d in decisions}

    def decide(
        self, gathered: Gathered, make: MakeCards, what_if: list[str] | None = None
    ) -> dict[str, Any]:
        request, context = self.request, self.context
        call: dict[str, Any] = {
            "service": self.service_id,
            "hook": request.hook,
            "issuer": context.issuer,
            "user": request.context.userId,
            "prefetched": gathered.prefetched,
            "fetched": gathered.fetched,
        }
        if what_if is not None:
            call["what_if"] = what_if
        served: list[cds_cards.Card] = []

        def with_cards(answer: dict[str, Any]) -> dict[str, Any]:
            links = cds_cards.Links(
                form=f"{context.base_url}/?evaluation={answer['id']}",
                rulesets=f"{context.base_url}/v1/rulesets",
                smart=context.smart_launch,
            )
            served.extend(make(answer["results"], links))
            return {"cards": [c.card for c in served]}

        patient, stamp = evaluations.PatientInput(fhir=gathered.bundle), evaluations.Stamp.new()
        try:
            decided = evaluations.decide(
                self.rules, patient, evaluations.Options(), stamp, extra=with_cards
            )
        except InvalidInput as exc:
            raise gathered.located(exc) from None
        channel = evaluations.CdsCall(request.hookInstance, call)
        evaluations.record(self.session, self.stored, decided, channel, context.key)
        answer = decided.content
        records.record_cards(
            self.session,
            answer["id"],
            self.service_id,
            [(c.card["uuid"], c.rulesets[0]) for c in served],
        )
        return {"cards": answer["cards"]}


def feedback(
    session: Session, service_id: str, body: FeedbackRequest, issuer: str | None
) -> list[str]:
    """Store every item or none: a card this service did not serve is a 404 naming it."""
    service(service_id)
    known = records.cards_of(session, service_id, (f.card for f in body.feedback))
    unknown = [
        FieldError(f"feedback[{i}].card", "unknown_card", f"no card {f.card!r} from {service_id}")
        for i, f in enumerate(body.feedback)
        if f.card not in known
    ]
    if unknown:
        raise NotFound("feedback on unknown cards", unknown)
    items = [
        records.NewFeedback(
            card_uuid=f.card,
            outcome=f.outcome,
            accepted_suggestions=f.acceptedSuggestions,
            override_reason=f.overrideReason.model_dump(mode="json") if f.overrideReason else None,
            outcome_timestamp=f.outcomeTimestamp,
        )
        for f in body.feedback
    ]
    return records.record_feedback(session, service_id, issuer, items)
