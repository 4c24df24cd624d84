"""HTTP load on loopback: POST /v1/evaluations against a real `eligo serve` process.

    .venv/bin/python -m benchmarks.bench_http [--requests 4000] [--concurrency 16]

Starts the server on a free loopback port (one uvicorn worker), warms it up, then sends
`--requests` evaluations from `--concurrency` concurrent keep-alive connections (httpx,
asyncio) and prints requests/s and latency percentiles. Client and server share this
machine's cores, so the figures are a floor for a dedicated server. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.engine.load import load_rules
from app.settings import Settings
from benchmarks.patients import random_patient

TIME_LIMIT_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, data_dir: str) -> subprocess.Popen[bytes]:
    eligo = str(Path(sys.executable).with_name("eligo"))
    env = {
        **os.environ,
        "ELIGO_DATABASE_URL": f"sqlite:///{data_dir}/bench.db",
        "ELIGO_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [eligo, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not start")


async def worker(
    client: httpx.AsyncClient,
    bodies: list[dict[str, Any]],
    count: int,
    *,
    latencies: list[float],
    errors: list[int],
    stop_at: float,
) -> None:
    for i in range(count):
        if time.monotonic() > stop_at:
            return
        start = time.perf_counter()
        response = await client.post("/v1/evaluations", json=bodies[i % len(bodies)])
        latencies.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            errors.append(response.status_code)


async def load(
    base: str, bodies: list[dict[str, Any]], total: int, concurrency: int
) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    errors: list[int] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        # warm-up
        await worker(client, bodies, 50, latencies=[], errors=[], stop_at=time.monotonic() + 30)
        stop_at = time.monotonic() + TIME_LIMIT_S
        started = time.perf_counter()
        await asyncio.gather(
            *(
                worker(
                    client,
                    bodies,
                    total // concurrency,
                    latencies=latencies,
                    errors=errors,
                    stop_at=stop_at,
                )
                for _ in range(concurrency)
            )
        )
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rules = load_rules(Settings().rules_dir)
    rng = random.Random(7)
    bodies = [{"features": random_patient(rules, rng)} for _ in range(500)]
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        server = start_server(port, data_dir)
        try:
            latencies, errors, elapsed = asyncio.run(
                load(f"http://127.0.0.1:{port}", bodies, args.requests, args.concurrency)
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
    latencies.sort()
    print(
        f"POST /v1/evaluations, all {len(rules.rulesets)} rule sets, full trace; "
        f"{args.concurrency} connections, {len(latencies)} requests in {elapsed:.2f} s"
    )
    print(f"throughput {len(latencies) / elapsed:8.1f} req/s   errors {len(errors)}")
    print(
        f"latency p50 {statistics.median(latencies):6.2f} ms   "
        f"p99 {latencies[int(0.99 * (len(latencies) - 1))]:6.2f} ms   max {latencies[-1]:6.2f} ms"
    )


if __name__ == "__main__":
    main()
