"""Model types that must behave the same on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.db.migrate import upgrade
from app.db.models import ApiClient
from app.db.session import make_engine, session_factory
from app.security import hash_secret


def _client(created_at: datetime) -> ApiClient:
    return ApiClient(
        id="c", name="n", secret_hash=hash_secret("s"), scopes=[], created_at=created_at
    )


def test_times_are_stored_and_read_back_as_aware_utc(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    local = datetime(2026, 11, 22, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    with session_factory(engine)() as session:
        session.add(
            ApiClient(id="c", name="n", secret_hash=hash_secret("s"), scopes=[], created_at=local)
        )
        session.commit()
    with session_factory(engine)() as session:
        stored = session.scalars(select(ApiClient.created_at)).one()
        found = session.scalars(
            select(ApiClient.id).where(ApiClient.created_at >= local - timedelta(microseconds=1))
        ).all()
    engine.dispose()
    assert stored == local
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored.hour == 7
    assert found == ["c"]


def test_a_naive_time_is_refused(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with session_factory(engine)() as session:
        session.add(
            ApiClient(
                id="c",
                name="n",
                secret_hash=hash_secret("s"),
                scopes=[],
                created_at=datetime(2026, 1, 1),
            )
        )
        with pytest.raises(Exception, match="naive datetime"):
            session.commit()
    engine.dispose()
