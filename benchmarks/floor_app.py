"""The HTTP floor of shared/docs/BENCHMARK.md: the least an audited evaluation service does.

    ELIGO_FLOOR_DATABASE_URL=postgresql+psycopg://... \\
    .venv/bin/uvicorn benchmarks.floor_app:create_app --factory [--workers N] \\
        --log-level warning --no-proxy-headers

POST /floor validates a `{"features": {...}}` body with pydantic, inserts one JSON row of
about RECORD_BYTES into PostgreSQL in its own transaction, and answers a small JSON; nothing
is evaluated. It uses what Eligo uses for the same steps (FastAPI, a sync endpoint in the
thread pool, SQLAlchemy with psycopg 3 through `app.db.session.make_engine`, so the same
pool and JSON serialiser), under the same uvicorn settings (benchmarks/bench_http_floor.py
starts both). Its table, `eligo_floor.records` in the database it is given, is created if
missing (serialised by an advisory lock, so several workers starting at once do not race).

A benchmark fixture: no authentication, nothing else. GET /healthz answers when it serves.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, text

from app.db.session import make_engine

DATABASE_URL_ENV = "ELIGO_FLOOR_DATABASE_URL"
SCHEMA = "eligo_floor"
TABLE = f"{SCHEMA}.records"
RECORD_BYTES = 2048
_LOCK = 0x656C69676F  # pg_advisory_xact_lock key: "eligo"

Scalar = float | bool | str | None


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: dict[str, Scalar]


def create_table(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        connection.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id uuid PRIMARY KEY, "
                "created_at timestamptz NOT NULL, record jsonb NOT NULL)"
            )
        )


def count(engine: Engine) -> int:
    with engine.connect() as connection:
        found: int = connection.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar_one()  # noqa: S608 - constant
    return found


def record(features: dict[str, Scalar], ident: uuid.UUID, now: datetime) -> str:
    """The row's JSON: what was received, padded to RECORD_BYTES (an audit row's order of
    size for a small answer)."""
    row: dict[str, Any] = {"id": str(ident), "received_at": now.isoformat(), "features": features}
    size = len(orjson.dumps(row)) + len(',"padding":""')
    row["padding"] = "x" * max(0, RECORD_BYTES - size)
    return orjson.dumps(row).decode()


def create_app() -> FastAPI:
    engine = make_engine(os.environ[DATABASE_URL_ENV])
    create_table(engine)
    insert = text(
        f"INSERT INTO {TABLE} (id, created_at, record) "  # noqa: S608 - constant
        "VALUES (:id, :created_at, CAST(:record AS jsonb))"
    )
    app = FastAPI(title="Eligo benchmark floor")

    @app.post("/floor")
    def floor(body: Body) -> dict[str, Any]:
        ident, now = uuid.uuid4(), datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(
                insert,
                {"id": ident, "created_at": now, "record": record(body.features, ident, now)},
            )
        return {"id": str(ident), "recorded": True}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
