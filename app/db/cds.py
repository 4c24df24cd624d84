"""CDS Hooks records: the cards served with each decision, the feedback on them, and the client
JWT ids already used. Like the audit trail's queries, nothing here commits except the replay
guard, whose whole point is to remember a token id even if the call then fails."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db import writes
from app.db.models import CdsCard, CdsFeedback, CdsTokenUse, table


def record_cards(
    session: Session, evaluation_id: str, service_id: str, cards: Iterable[tuple[str, str]]
) -> None:
    """(card uuid, rule set id it speaks for first) for each card served; written at commit,
    after the evaluation they refer to (recorded the same way, before them)."""
    rows = [
        {"uuid": card, "evaluation_id": evaluation_id, "service_id": service_id, "ruleset_id": rs}
        for card, rs in cards
    ]
    if rows:
        writes.at_commit(session, insert(table(CdsCard)), rows)


def cards_of(session: Session, service_id: str, uuids: Iterable[str]) -> dict[str, CdsCard]:
    rows = session.scalars(
        select(CdsCard).where(CdsCard.uuid.in_(set(uuids)), CdsCard.service_id == service_id)
    )
    return {row.uuid: row for row in rows}


@dataclass(frozen=True, slots=True)
class NewFeedback:
    card_uuid: str
    outcome: str
    accepted_suggestions: list[Any]
    override_reason: dict[str, Any] | None
    outcome_timestamp: datetime


def record_feedback(
    session: Session, service_id: str, issuer: str | None, items: Iterable[NewFeedback]
) -> list[str]:
    now = datetime.now(UTC)
    rows = [
        CdsFeedback(
            id=str(uuid.uuid4()),
            card_uuid=item.card_uuid,
            service_id=service_id,
            issuer=issuer,
            outcome=item.outcome,
            accepted_suggestions=item.accepted_suggestions,
            override_reason=item.override_reason,
            outcome_timestamp=item.outcome_timestamp,
            received_at=now,
        )
        for item in items
    ]
    session.add_all(rows)
    return [row.id for row in rows]


def feedback_of(session: Session, evaluation_id: str) -> list[CdsFeedback]:
    statement = (
        select(CdsFeedback)
        .join(CdsCard, CdsCard.uuid == CdsFeedback.card_uuid)
        .where(CdsCard.evaluation_id == evaluation_id)
        .order_by(CdsFeedback.received_at)
    )
    return list(session.scalars(statement))


class DatabaseReplayGuard:
    """Token ids seen, in the database, so a replay is caught across workers and restarts.
    Each use is committed at once in its own transaction (under the SQLite commit lock), and
    expired rows are cleared on the way: an expired token is refused before it gets here
    (rows are kept `KEEP` past expiry, longer than any clock leeway the verifier allows)."""

    KEEP = timedelta(minutes=10)

    def __init__(
        self, sessions: sessionmaker[Session], lock: AbstractContextManager[object]
    ) -> None:
        self.sessions, self.lock = sessions, lock

    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        with self.sessions() as session, self.lock:
            session.execute(
                delete(CdsTokenUse).where(CdsTokenUse.expires_at < datetime.now(UTC) - self.KEEP)
            )
            session.add(CdsTokenUse(issuer=issuer, jti=jti, expires_at=expires_at))
            try:
                session.commit()
            except IntegrityError:
                return False
        return True
