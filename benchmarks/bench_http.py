"""HTTP load on loopback with the audit trail on: POST /v1/evaluations against a real
`eligo serve` process, then a count of what was recorded.

    .venv/bin/python -m benchmarks.bench_http [--database sqlite|postgres]
        [--requests 4000] [--concurrency 8] [--workers 1] [--outage]

Starts the server on a free loopback port (`--workers` processes, authentication on, a fresh
database: a SQLite file or a new database on the local PostgreSQL), creates an API client,
sends `--requests` evaluations from `--concurrency` concurrent keep-alive connections and
prints requests/s and latency percentiles. It then checks the audit trail: every 200 answer's
id must be recorded, and nothing else.

`--outage` (PostgreSQL only; stops and starts this machine's whole cluster with
pg_ctlcluster, so run it where nothing else needs the database): load for 25 s, stop
PostgreSQL at 5 s, start it at 12 s, and report what the clients saw before, during and after.

Client and server share this machine's cores, so the figures are a floor for a dedicated
server. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from app.db import clients
from app.db.migrate import upgrade
from app.db.models import Evaluation
from app.db.session import make_engine, session_factory
from app.engine.load import load_rules
from app.security import Scope
from app.settings import Settings
from benchmarks.patients import random_patient
from tests.databases import database
from tests.e2e.helpers import Server, eligo_process

TIME_LIMIT_S = 300
OUTAGE = {"run": 25.0, "stop": 5.0, "start": 12.0}


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    answered: list[str] = field(default_factory=list)  # ids of the decisions served
    timeline: list[tuple[float, int | str]] = field(default_factory=list)


def api_token(url: str) -> str:
    """A fresh API client allowed to evaluate, in the database at `url` (migrated first)."""
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        _, credential = clients.create(session, "benchmark", [Scope.EVALUATE])
        session.commit()
    engine.dispose()
    return credential.token


def _recorded(url: str, ids: list[str]) -> tuple[int, int]:
    """(evaluations in the database, how many of `ids` are among them)."""
    engine = make_engine(url)
    with session_factory(engine)() as session:
        total = session.scalar(select(func.count()).select_from(Evaluation)) or 0
        found = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found += (
                session.scalar(
                    select(func.count()).select_from(Evaluation).where(Evaluation.id.in_(chunk))
                )
                or 0
            )
    engine.dispose()
    return total, found


@contextmanager
def serving(kind: str, workers: int = 1) -> Iterator[tuple[Server, str, str]]:
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = stack.enter_context(database(kind, scratch))
        token = api_token(url)
        env = {
            "ELIGO_DATABASE_URL": url,
            "ELIGO_AUTH": "on",
            "ELIGO_LOG_LEVEL": "warning",
            "ELIGO_WORKERS": str(workers),
        }
        server = stack.enter_context(eligo_process(env, log=scratch / "server.log"))
        yield server, url, token


async def _one(client: httpx.AsyncClient, body: dict[str, Any], tally: Tally, t0: float) -> None:
    start = time.perf_counter()
    try:
        response = await client.post("/v1/evaluations", json=body)
    except httpx.TransportError as exc:
        tally.statuses[type(exc).__name__] += 1
        tally.timeline.append((start - t0, type(exc).__name__))
        return
    tally.latencies.append((time.perf_counter() - start) * 1000)
    tally.statuses[response.status_code] += 1
    tally.timeline.append((start - t0, response.status_code))
    if response.status_code == 200:
        tally.answered.append(response.json()["id"])


async def _worker(
    client: httpx.AsyncClient, bodies: list[dict[str, Any]], count: int, tally: Tally, until: float
) -> None:
    t0 = until - TIME_LIMIT_S
    for i in range(count):
        if time.perf_counter() > until:
            return
        await _one(client, bodies[i % len(bodies)], tally, t0)


async def _load(
    server: Server, token: str, bodies: list[dict[str, Any]], args: argparse.Namespace
) -> tuple[Tally, float]:
    total, concurrency, warmup = args.requests, args.concurrency, args.warmup
    tally = Tally()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=server.base, limits=limits, timeout=30, headers=headers
    ) as client:
        warm = Tally()
        await _worker(client, bodies, warmup, warm, time.perf_counter() + 30)
        tally.answered += warm.answered  # recorded too: the audit count must include them
        started = time.perf_counter()
        until = started + TIME_LIMIT_S
        per_worker = total // concurrency
        await asyncio.gather(
            *(_worker(client, bodies, per_worker, tally, until) for _ in range(concurrency))
        )
        elapsed = time.perf_counter() - started
    return tally, elapsed


def _cluster(action: str) -> None:
    version = next(iter(Path("/etc/postgresql").iterdir())).name
    command = shutil.which("pg_ctlcluster")
    if command is None:
        raise SystemExit("--outage needs pg_ctlcluster (Debian's postgresql-common)")
    subprocess.run([command, "--skip-systemctl-redirect", version, "main", action], check=True)


async def _outage(
    server: Server, token: str, bodies: list[dict[str, Any]], concurrency: int
) -> Tally:
    tally = Tally()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.base, timeout=10, headers=headers) as client:
        t0 = time.perf_counter()
        until = t0 + OUTAGE["run"]

        async def worker() -> None:
            i = 0
            while time.perf_counter() < until:
                await _one(client, bodies[i % len(bodies)], tally, t0)
                i += 1

        async def operator() -> None:
            await asyncio.sleep(OUTAGE["stop"])
            await asyncio.to_thread(_cluster, "stop")
            await asyncio.sleep(OUTAGE["start"] - OUTAGE["stop"])
            await asyncio.to_thread(_cluster, "start")

        await asyncio.gather(operator(), *(worker() for _ in range(concurrency)))
    return tally


def _report_load(tally: Tally, elapsed: float, args: argparse.Namespace, rulesets: int) -> None:
    lat = sorted(tally.latencies)
    print(
        f"POST /v1/evaluations on {args.database}, audit on, all {rulesets} rule sets; "
        f"{args.concurrency} connections, {len(lat)} requests in {elapsed:.2f} s"
    )
    errors = sum(n for status, n in tally.statuses.items() if status != 200)
    print(f"throughput {len(lat) / elapsed:8.1f} req/s   errors {errors}   {dict(tally.statuses)}")
    print(
        f"latency p50 {statistics.median(lat):6.2f} ms   "
        f"p99 {lat[int(0.99 * (len(lat) - 1))]:6.2f} ms   max {lat[-1]:6.2f} ms"
    )


def _report_outage(tally: Tally) -> None:
    phases = {
        "before": Counter[int | str](),
        "down": Counter[int | str](),
        "after": Counter[int | str](),
    }
    for at, status in tally.timeline:
        phase = "before" if at < OUTAGE["stop"] else "down" if at < OUTAGE["start"] else "after"
        phases[phase][status] += 1
    print(
        f"outage: PostgreSQL stopped at {OUTAGE['stop']:.0f} s, started at {OUTAGE['start']:.0f} s,"
        f" run {OUTAGE['run']:.0f} s"
    )
    for phase, counts in phases.items():
        print(f"  {phase:6} {dict(counts)}")
    recovered = [at for at, status in tally.timeline if at >= OUTAGE["start"] and status == 200]
    if recovered:
        print(f"  first 200 after the restart: {min(recovered) - OUTAGE['start']:.2f} s later")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=0, help="requests before timing")
    parser.add_argument("--workers", type=int, default=1, help="`eligo serve` processes")
    parser.add_argument("--outage", action="store_true")
    args = parser.parse_args()
    if args.outage and args.database != "postgres":
        parser.error("--outage needs --database postgres")
    rules = load_rules(Settings().rules_dir)
    rng = random.Random(7)
    bodies = [{"features": random_patient(rules, rng)} for _ in range(500)]
    with serving(args.database, args.workers) as (server, url, token):
        if args.outage:
            tally = asyncio.run(_outage(server, token, bodies, args.concurrency))
            _report_outage(tally)
        else:
            tally, elapsed = asyncio.run(_load(server, token, bodies, args))
            _report_load(tally, elapsed, args, len(rules.rulesets))
        total, found = _recorded(url, tally.answered)
    unrecorded = len(tally.answered) - found
    print(
        f"audit: {len(tally.answered)} decisions served, {total} recorded, "
        f"{unrecorded} served without a record"
    )


if __name__ == "__main__":
    main()
