"""The audit trail's tables: what was decided, for whom (pseudonymised), by which caller, with
which exact rule set versions, and the rule set contents needed to replay it; and the registry
screening jobs.

Types are portable between SQLite and PostgreSQL: JSON is JSONB on PostgreSQL (indexable,
compact) and JSON text on SQLite; times are timezone-aware and stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base

Json = JSON().with_variant(JSONB(), "postgresql")


class Time(TypeDecorator[datetime]):
    """An aware UTC time on both databases: SQLite keeps no offset, so every value is stored
    as UTC and read back as UTC, which also keeps range filters and cursors exact."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - the signature SQLAlchemy calls
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RulesetVersion(Base):
    """Every rule set version ever served, by content hash, with what is needed to rebuild it:
    the validated rule set and the definitions of the features and citations it uses."""

    __tablename__ = "ruleset_versions"

    hash: Mapped[str] = mapped_column(String(71), primary_key=True)  # "sha256:" + 64 hex
    ruleset_id: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[str] = mapped_column(String(32))
    content: Mapped[dict[str, Any]] = mapped_column(Json)
    first_served_at: Mapped[datetime] = mapped_column(Time())


class Evaluation(Base):
    """One answer, recorded in the transaction that gives it."""

    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID
    created_at: Mapped[datetime] = mapped_column(Time(), index=True)
    channel: Mapped[str] = mapped_column(
        String(16), index=True
    )  # api | cds-hooks | form | screening
    client_id: Mapped[str | None] = mapped_column(String(36), index=True)
    patient_pseudonym: Mapped[str | None] = mapped_column(String(64), index=True)  # keyed HMAC
    rules_hash: Mapped[str] = mapped_column(String(71))
    input_received: Mapped[dict[str, Any]] = mapped_column(Json)
    input_normalised: Mapped[dict[str, Any]] = mapped_column(Json)
    result: Mapped[dict[str, Any]] = mapped_column(Json)
    # CDS Hooks: the client's hookInstance, so a call can be found from the EHR's side.
    hook_instance: Mapped[str | None] = mapped_column(String(64), index=True)
    # The web form: the user name of the clinician who asked (null for the other channels).
    clinician: Mapped[str | None] = mapped_column(String(100), index=True)

    decisions: Mapped[list[EvaluationDecision]] = relationship(
        back_populates="evaluation",
        cascade="all, delete-orphan",
        order_by="EvaluationDecision.position",
    )


class EvaluationDecision(Base):
    """One rule set's status within an evaluation: what filters and replays work on."""

    __tablename__ = "evaluation_decisions"
    __table_args__ = (Index("ix_evaluation_decisions_ruleset_status", "ruleset_id", "status"),)

    evaluation_id: Mapped[str] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    ruleset_id: Mapped[str] = mapped_column(String(100))
    ruleset_hash: Mapped[str] = mapped_column(ForeignKey("ruleset_versions.hash"), index=True)
    status: Mapped[str] = mapped_column(String(16))

    evaluation: Mapped[Evaluation] = relationship(back_populates="decisions")


class ApiClient(Base):
    """A caller with scopes; only a hash of its secret is kept."""

    __tablename__ = "api_clients"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(Time())
    revoked_at: Mapped[datetime | None] = mapped_column(Time())


class CdsCard(Base):
    """A card served by a CDS Hooks service: feedback names the card, this names the decision."""

    __tablename__ = "cds_cards"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    evaluation_id: Mapped[str] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True
    )
    service_id: Mapped[str] = mapped_column(String(64))
    ruleset_id: Mapped[str] = mapped_column(String(100))


class CdsFeedback(Base):
    """What the clinician did with a card (accepted / overridden, and why)."""

    __tablename__ = "cds_feedback"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_uuid: Mapped[str] = mapped_column(
        ForeignKey("cds_cards.uuid", ondelete="CASCADE"), index=True
    )
    service_id: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str | None] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(16))  # accepted | overridden
    accepted_suggestions: Mapped[list[Any]] = mapped_column(Json)
    override_reason: Mapped[dict[str, Any] | None] = mapped_column(Json)
    outcome_timestamp: Mapped[datetime] = mapped_column(Time())
    received_at: Mapped[datetime] = mapped_column(Time())


class CdsTokenUse(Base):
    """A CDS client JWT id already accepted: a second use is a replay. Rows can go once the
    token has expired, since an expired token is refused anyway."""

    __tablename__ = "cds_token_uses"

    issuer: Mapped[str] = mapped_column(String(500), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(Time(), index=True)


class Clinician(Base):
    """A local account for the web form. Never deleted, so the audit trail's `clinician` always
    names someone who existed; disabled instead. Only an Argon2id hash of the password is kept.
    Failed sign-ins are counted apart, per source (SignInThrottle)."""

    __tablename__ = "clinicians"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID
    # Stripped and casefolded, so "Dr.Ng" and "dr.ng " are one account.
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id PHC string
    created_at: Mapped[datetime] = mapped_column(Time())
    disabled_at: Mapped[datetime | None] = mapped_column(Time())
    last_sign_in_at: Mapped[datetime | None] = mapped_column(Time())
    password_changed_at: Mapped[datetime] = mapped_column(Time())


class WebSession(Base):
    """A signed-in browser. The row is keyed by the SHA-256 of the cookie's token, so a copy of
    the database holds no usable session: the token itself is never stored."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex
    clinician_id: Mapped[str] = mapped_column(
        ForeignKey("clinicians.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(Time())
    last_seen_at: Mapped[datetime] = mapped_column(Time())
    expires_at: Mapped[datetime] = mapped_column(Time())  # absolute end, however active

    # Declared so that a flush inserts the clinician before the sessions that refer to it.
    clinician: Mapped[Clinician] = relationship()


class SignInThrottle(Base):
    """Failed sign-ins, counted per (user name, source) and per source (app/services/accounts
    .py), so guessing is paused where it comes from and nobody can lock a clinician out from
    elsewhere. Kept in the database so the count holds across workers and restarts.

    `account` is the SHA-256 of the user name as typed (normalised), whether or not such a
    clinician exists: the table neither lists typed names (sometimes a password typed in the
    wrong field) nor behaves differently for names that exist. "*" counts a source's failures
    against every name. `source` is the client's address (an IPv6 /64 network)."""

    __tablename__ = "sign_in_throttles"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex, or "*"
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int]  # in the window that started at window_started_at
    window_started_at: Mapped[datetime] = mapped_column(Time(), index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(Time())


class ScreeningState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({ScreeningState.SUCCEEDED, ScreeningState.FAILED, ScreeningState.CANCELLED})


class Screening(Base):
    """A registry screening run as a server job (app/services/screening_jobs.py).

    The row says what was asked and how far it got; the files (the upload, the results) are
    in the job's folder. It never holds a patient value or a registry identifier: `request`
    names the source and the options, `summary` holds counts per rule set, and `error` is
    either a message about the input's shape or a generic one.
    """

    __tablename__ = "screenings"
    __table_args__ = (
        CheckConstraint(
            "state IN (" + ", ".join(f"'{s.value}'" for s in ScreeningState) + ")", name="state"
        ),
        # The worker's claim: the oldest queued job; the stale-heartbeat sweep: running ones.
        Index("ix_screenings_state_created_at", "state", "created_at"),
        # A client's recent jobs, newest first.
        Index("ix_screenings_client_id_created_at", "client_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Time())
    started_at: Mapped[datetime | None] = mapped_column(Time())  # of the current attempt
    finished_at: Mapped[datetime | None] = mapped_column(Time())
    heartbeat_at: Mapped[datetime | None] = mapped_column(Time())
    # Incremented by each claim: it also fences a worker that lost its job to a restart.
    attempts: Mapped[int] = mapped_column(default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    request: Mapped[dict[str, Any]] = mapped_column(Json)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_total: Mapped[int | None] = mapped_column(BigInteger)
    summary: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    # The rules asked with, then those the screening ran with (a reload may come between).
    rules_hash: Mapped[str] = mapped_column(String(71))
    client_id: Mapped[str | None] = mapped_column(String(36))  # who may see it; None: auth off
    requested_by: Mapped[str] = mapped_column(String(200))


def table(model: type[Base]) -> Table:
    """A model's Core table, for INSERTs that skip the ORM (app/db/writes.py)."""
    return cast(Table, model.__table__)
