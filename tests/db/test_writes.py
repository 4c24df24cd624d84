"""Writes held until the commit (app.db.writes): in order, only at commit, never after a
rollback; on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from app.db import writes
from app.db.models import ApiClient, CdsCard, Evaluation, table
from app.db.session import session_factory
from app.security import hash_secret

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _evaluation(ident: str) -> dict[str, object]:
    return {
        "id": ident,
        "created_at": NOW,
        "channel": "api",
        "client_id": None,
        "patient_pseudonym": None,
        "rules_hash": "sha256:" + "0" * 64,
        "input_received": {},
        "input_normalised": {},
        "result": {},
        "hook_instance": None,
        "clinician": None,
    }


def _count(engine: Engine, table: type[Evaluation] | type[CdsCard]) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_writes_wait_for_the_commit_and_run_in_order(engine: Engine) -> None:
    with session_factory(engine)() as session:
        writes.at_commit(session, insert(table(Evaluation)), _evaluation("e1"))
        # The card refers to the evaluation: in the other order the foreign key fails.
        card = {"uuid": "c1", "evaluation_id": "e1", "service_id": "s", "ruleset_id": "r"}
        writes.at_commit(session, insert(table(CdsCard)), [card])
        assert writes.anything_to_commit(session)
        assert not session.in_transaction()  # nothing sent yet
        assert _count(engine, Evaluation) == 0
        session.commit()
        assert not writes.anything_to_commit(session)
    assert (_count(engine, Evaluation), _count(engine, CdsCard)) == (1, 1)


def test_the_writes_run_before_the_orm_flush(engine: Engine) -> None:
    """ORM objects added in the same session are flushed after the held writes."""
    with session_factory(engine)() as session:
        writes.at_commit(session, insert(table(Evaluation)), _evaluation("e1"))
        session.add(CdsCard(uuid="c1", evaluation_id="e1", service_id="s", ruleset_id="r"))
        session.commit()
    assert _count(engine, CdsCard) == 1


def test_a_rollback_forgets_the_writes(engine: Engine) -> None:
    with session_factory(engine)() as session:
        session.execute(select(ApiClient.id))  # a transaction is open
        writes.at_commit(session, insert(table(Evaluation)), _evaluation("e1"))
        session.rollback()
        assert not writes.anything_to_commit(session)
        writes.at_commit(session, insert(table(Evaluation)), _evaluation("e2"))
        session.commit()
    with engine.connect() as connection:
        assert connection.execute(select(Evaluation.id)).scalars().all() == ["e2"]


def test_a_failed_commit_writes_nothing(engine: Engine) -> None:
    with session_factory(engine)() as session:
        writes.at_commit(session, insert(table(Evaluation)), _evaluation("e1"))
        # No such evaluation: the card's foreign key fails the commit, the first row goes too.
        orphan = {"uuid": "c1", "evaluation_id": "nope", "service_id": "s", "ruleset_id": "r"}
        writes.at_commit(session, insert(table(CdsCard)), [orphan])
        failed = _commit_fails(session)
    assert failed
    assert _count(engine, Evaluation) == 0


def _commit_fails(session: Session) -> bool:
    try:
        session.commit()
    except Exception:  # which error depends on the database
        session.rollback()
        return True
    return False


def test_nothing_to_commit_costs_no_transaction(engine: Engine) -> None:
    with session_factory(engine)() as session:
        assert not writes.anything_to_commit(session)
        session.add(ApiClient(id="c", name="n", secret_hash=hash_secret("s"), scopes=[]))
        assert writes.anything_to_commit(session)
