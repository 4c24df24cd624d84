"""The audit trail's queries: record a decision, read one back, list them, and the rule set
versions they were made with. Functions take the request's session and never commit: the
session dependency commits, so a decision and its record succeed or fail together."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Engine,
    Executable,
    Select,
    and_,
    event,
    exists,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, defer, selectinload
from sqlalchemy.pool import PoolProxiedConnection

from app.db import writes
from app.db.models import Evaluation, EvaluationDecision, RulesetVersion, table
from app.db.session import json_text
from app.engine.model import RuleSet
from app.errors import Unauthorized

MAX_PAGE = 500


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class NewEvaluation:
    id: str
    created_at: datetime
    channel: str
    client_id: str | None
    patient_pseudonym: str | None
    rules_hash: str
    input_received: dict[str, Any]
    input_normalised: dict[str, Any]
    result: dict[str, Any]
    rulesets: list[RuleSet]
    statuses: list[str]
    hook_instance: str | None = None
    clinician: str | None = None


class StoredVersions:
    """Hashes of rule set versions known to be in the database, so each is inserted once per
    process rather than once per decision. A hash joins the set only when the transaction that
    stored it commits: a failed write never leaves a version believed stored that is not."""

    def __init__(self) -> None:
        self._known: set[str] = set()

    def missing(self, rulesets: Iterable[RuleSet]) -> list[RuleSet]:
        return [r for r in {r.hash: r for r in rulesets}.values() if r.hash not in self._known]

    def forget(self) -> None:
        """After a database error: the database may have been restored without these rows,
        and re-inserting (insert-or-ignore) costs one statement, so assume nothing."""
        self._known.clear()

    def mark_on_commit(self, session: Session, hashes: list[str]) -> None:
        if hashes:
            event.listen(session, "after_commit", lambda _: self.add(hashes), once=True)

    def add(self, hashes: list[str]) -> None:
        """Once the transaction that stored them has committed."""
        self._known.update(hashes)


def record(session: Session, new: NewEvaluation, stored: StoredVersions) -> None:
    """Add the decision and any rule set version not yet stored; written only at commit."""
    versions = stored.missing(new.rulesets)
    if versions:
        dialect = session.get_bind().dialect.name
        writes.at_commit(session, _versions_insert(dialect, versions, new.created_at))
        stored.mark_on_commit(session, [r.hash for r in versions])
    if session.get_bind().dialect.name == "postgresql":
        _record_guarded(session, new)
        return
    writes.at_commit(session, insert(table(Evaluation)), _evaluation_row(new))
    decisions = [
        {
            "evaluation_id": new.id,
            "position": i,
            "ruleset_id": r.id,
            "ruleset_hash": r.hash,
            "status": status,
        }
        for i, (r, status) in enumerate(zip(new.rulesets, new.statuses, strict=True))
    ]
    if decisions:
        writes.at_commit(session, insert(table(EvaluationDecision)), decisions)


# PostgreSQL: the evaluation and its decisions in one statement, written only if the API
# client that asked is still active. One round trip and one statement's overhead instead of
# three (a confirming read, two INSERTs): on a recorded evaluation's path that was a quarter
# of the time. The decisions come as one JSON array of [rule set id, hash, status], in order
# (numbered from 1): psycopg adapting three Python lists as arrays cost more than the rest of
# the statement's parameters together.
_GUARDED_SQL = """
WITH guarded AS (
    INSERT INTO evaluations (id, created_at, channel, client_id, patient_pseudonym,
        rules_hash, input_received, input_normalised, result, hook_instance, clinician)
    SELECT :id, :created_at, :channel, :client_id, :patient_pseudonym, :rules_hash,
        CAST(:input_received AS jsonb), CAST(:input_normalised AS jsonb),
        CAST(:result AS jsonb), :hook_instance, :clinician
    WHERE CAST(:client_id AS varchar) IS NULL OR EXISTS (
        SELECT FROM api_clients WHERE id = :client_id AND revoked_at IS NULL)
    RETURNING id
), decided AS (
    INSERT INTO evaluation_decisions (evaluation_id, position, ruleset_id, ruleset_hash, status)
    SELECT guarded.id, d.position - 1, d.item ->> 0, d.item ->> 1, d.item ->> 2
    FROM guarded, json_array_elements(CAST(:decisions AS json)) WITH ORDINALITY AS d(item,
        position)
)
SELECT count(*) FROM guarded
"""
_GUARDED_RECORD = text(_GUARDED_SQL)
# The same statement in psycopg's own placeholders, for `record_now`.
_GUARDED_PSYCOPG = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", _GUARDED_SQL)


def _record_guarded(session: Session, new: NewEvaluation) -> None:
    writes.at_commit(session, _GUARDED_RECORD, _guarded_row(new), _client_active)
    if new.client_id is not None:
        writes.guards_client(session)


def record_now(engine: Engine, new: NewEvaluation, stored: StoredVersions) -> None:
    """PostgreSQL: write the record at once, as a transaction of its own (the guarded
    statement above, in autocommit: one round trip, no BEGIN nor COMMIT), through psycopg on a
    pooled connection. The request's path then needs no Session nor SQLAlchemy Connection,
    which with the two extra round trips were ~60 % of the CPU of writing a record (~410 ->
    ~150 µs, measured here). Returns once the record is committed; raises what the Session's
    commit would (SQLAlchemy's errors, so the same handlers answer 503 or 422, or Unauthorized
    for a client revoked meanwhile)."""
    versions = stored.missing(new.rulesets)
    if versions:  # rarely: once per rule set version and process
        with engine.begin() as connection:
            connection.execute(_versions_insert(engine.dialect.name, versions, new.created_at))
        stored.add([r.hash for r in versions])
    if _execute_autocommit(engine, _guarded_row(new)) == 0:
        raise Unauthorized("this client has been revoked")


def _execute_autocommit(engine: Engine, row: dict[str, Any]) -> int:
    dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error
    pooled: PoolProxiedConnection | None = None
    try:
        pooled = engine.raw_connection()
        driver = pooled.driver_connection
        if driver is None:  # pragma: no cover - a checked-out connection always has one
            raise RuntimeError("no database connection")
        driver.autocommit = True
        try:
            found = driver.execute(_GUARDED_PSYCOPG, row).fetchone()
        finally:
            driver.autocommit = False  # as the pool lends it to a Session
    except dbapi_error as exc:
        # Wrapped as SQLAlchemy wraps what it runs (the same handlers answer), and a lost
        # connection handled as it handles one: this connection and the pool's others of its
        # generation are replaced, so one restart fails one request, not one per connection.
        # `Pool._invalidate` is what SQLAlchemy's own Connection calls for that (no public
        # name does it); tests/db/test_outage.py fails if it stops doing it.
        dead = pooled is not None and (
            engine.dialect.is_disconnect(cast(Any, exc), pooled.dbapi_connection, None)
            or bool(getattr(pooled.driver_connection, "closed", False))
        )
        if dead and pooled is not None:
            engine.pool._invalidate(pooled, exc)
        raise DBAPIError.instance(
            None,
            None,
            exc,
            dbapi_error,
            hide_parameters=True,
            connection_invalidated=dead,
            dialect=engine.dialect,
        ) from exc
    finally:
        if pooled is not None:
            pooled.close()
    return int(found[0]) if found else 0


def _guarded_row(new: NewEvaluation) -> dict[str, Any]:
    row = _evaluation_row(new)
    for column in ("input_received", "input_normalised", "result"):
        row[column] = json_text(row[column])
    decisions = zip(new.rulesets, new.statuses, strict=True)
    row["decisions"] = json_text([[r.id, r.hash, status] for r, status in decisions])
    return row


def _client_active(result: CursorResult[Any]) -> None:
    if result.scalar_one() == 0:
        raise Unauthorized("this client has been revoked")


def _evaluation_row(new: NewEvaluation) -> dict[str, Any]:
    return {
        "id": new.id,
        "created_at": new.created_at,
        "channel": new.channel,
        "client_id": new.client_id,
        "patient_pseudonym": new.patient_pseudonym,
        "rules_hash": new.rules_hash,
        "input_received": new.input_received,
        "input_normalised": new.input_normalised,
        "result": new.result,
        "hook_instance": new.hook_instance,
        "clinician": new.clinician,
    }


def _versions_insert(dialect: str, rulesets: list[RuleSet], now: datetime) -> Executable:
    """Insert-or-ignore: another process may have stored the same version meanwhile."""
    rows = [
        {
            "hash": r.hash,
            "ruleset_id": r.id,
            "version": r.version,
            "content": dict(r.snapshot),
            "first_served_at": now,
        }
        for r in rulesets
    ]
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        upsert(table(RulesetVersion)).values(rows).on_conflict_do_nothing(index_elements=["hash"])
    )


def get(session: Session, evaluation_id: str) -> Evaluation | None:
    return session.get(Evaluation, evaluation_id, options=[selectinload(Evaluation.decisions)])


def versions(session: Session, hashes: Iterable[str]) -> dict[str, RulesetVersion]:
    rows = session.scalars(select(RulesetVersion).where(RulesetVersion.hash.in_(set(hashes))))
    return {row.hash: row for row in rows}


def version_numbers(session: Session, hashes: Iterable[str]) -> dict[str, str]:
    """Version strings by hash, without loading the stored contents."""
    statement = select(RulesetVersion.hash, RulesetVersion.version).where(
        RulesetVersion.hash.in_(set(hashes))
    )
    return {h: v for h, v in session.execute(statement).all()}


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    ruleset: str | None = None
    status: str | None = None
    channel: str | None = None
    client_id: str | None = None


def page(
    session: Session, filters: Filters, limit: int, cursor: str | None
) -> tuple[list[Evaluation], str | None]:
    """Newest first; the cursor is the (time, id) of the last row returned, so pages stay
    stable while new decisions are recorded (no offsets that shift)."""
    statement = _filtered(filters)
    if cursor is not None:
        at, last_id = decode_cursor(cursor)
        statement = statement.where(
            or_(
                Evaluation.created_at < at,
                and_(Evaluation.created_at == at, Evaluation.id < last_id),
            )
        )
    statement = statement.order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
    rows = list(session.scalars(statement.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more else None


def _filtered(filters: Filters) -> Select[Evaluation]:
    conditions: list[ColumnElement[bool]] = []
    if filters.since is not None:
        conditions.append(Evaluation.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(Evaluation.created_at < filters.until)
    if filters.channel is not None:
        conditions.append(Evaluation.channel == filters.channel)
    if filters.client_id is not None:
        conditions.append(Evaluation.client_id == filters.client_id)
    decision: list[ColumnElement[bool]] = []
    if filters.ruleset is not None:
        decision.append(EvaluationDecision.ruleset_id == filters.ruleset)
    if filters.status is not None:
        decision.append(EvaluationDecision.status == filters.status)
    if decision:
        # ruleset and status together mean one decision with both, not one of each
        conditions.append(
            exists().where(EvaluationDecision.evaluation_id == Evaluation.id, *decision)
        )
    # A listing shows who, when and what status; the inputs and full results stay unread.
    heavy = (Evaluation.input_received, Evaluation.input_normalised, Evaluation.result)
    return (
        select(Evaluation)
        .where(*conditions)
        .options(selectinload(Evaluation.decisions), *(defer(column) for column in heavy))
    )


def encode_cursor(row: Evaluation) -> str:
    payload = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, last_id = json.loads(raw)
        when = datetime.fromisoformat(at)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCursor("not a cursor this service returned") from exc
    if not isinstance(last_id, str) or when.tzinfo is None:
        raise BadCursor("not a cursor this service returned")
    return when.astimezone(UTC), last_id
