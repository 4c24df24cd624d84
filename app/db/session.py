"""Engines for the two supported databases, with the settings each needs to be safe.

SQLite (the embedded default): WAL, so readers never block the writer and a crash cannot
leave a half-written page; foreign keys on (SQLite ships them off); a busy timeout so
concurrent writers queue instead of failing. PostgreSQL: psycopg 3, and a connection that sat
idle in the pool is pinged before use, so one that died with a server restart is replaced
instead of failing one request after another.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 5000
# A pooled PostgreSQL connection idle longer than this is pinged when checked out. Not every
# checkout, as SQLAlchemy's pool_pre_ping does: under load the ping took a fifth of the
# evaluation handler's time, for connections that had answered milliseconds before. A restart
# cuts the connections in use all the same (their requests fail with 503 and the pool drops
# the rest at the first disconnect); the idle ones are the ones a restart or a firewall's
# idle timeout leaves dead unnoticed.
PING_AFTER_IDLE_SECONDS = 1.0


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy's default driver would be psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    # Statement parameters hold patient data: keep them out of error messages and logs.
    common: dict[str, Any] = {"hide_parameters": True, "json_serializer": json_text}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **common
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=10, **common)
    event.listen(engine, "checkin", _checked_in)
    event.listen(engine, "checkout", _pinger(engine))
    return engine


def _checked_in(_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _pinger(engine: Engine) -> Any:
    def ping_if_idle(connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("checked_in")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # just connected, or used a moment ago
        try:
            engine.dialect.do_ping(connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out another (SQLAlchemy retries).
            raise exc.DisconnectionError("an idle connection did not answer a ping") from error

    return ping_if_idle


def json_text(value: Any) -> str:
    # The recorded result is the ~200 kB answer itself; orjson writes it ~10x faster.
    return orjson.dumps(value).decode()


def _sqlite_pragmas(connection: Any, _record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # FULL: a committed audit record survives a power cut, not only a process crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def commit_lock(engine: Engine) -> AbstractContextManager[object]:
    """What a commit holds. SQLite has one writer at a time, and a writer that finds the lock
    taken polls with sleeps of up to 100 ms: under concurrent requests that, not the write,
    made the slowest answers seconds long. Queuing this process's commits on a lock wakes the
    next one as soon as the previous commits. PostgreSQL needs none."""
    if engine.dialect.name == "sqlite":
        return threading.Lock()
    return nullcontext()
