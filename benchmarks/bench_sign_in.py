"""How long a refused sign-in takes, by reason, against a real `eligo serve` (issue 17: every
refusal should read alike and take about as long, so that none tells which names exist).

    .venv/bin/python -m benchmarks.bench_sign_in [--rounds 45]

Starts the server on a free loopback port with local accounts (authentication on, a fresh
SQLite database) and one clinician made with `eligo users add`, then times `POST /sign-in`
one at a time, each reason from its own loopback addresses (127.0.0.x, so that one reason's
failures never pause another's):
- `wrong password`: the clinician's name, a wrong password;
- `unknown name`: a different name that no clinician has, each time;
- `paused`: the clinician's name, the right password, from an address where ten failures
  have paused it;
- `signed in`: the right password (the cost of success, for comparison).
A new address is taken every nine failures, below any pause. Prints percentiles per reason
and whether every refusal page was the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.e2e.helpers import ELIGO, eligo_process
from tests.web.conftest import csrf_of

PASSWORD = "correct horse battery staple clinic"  # noqa: S105 - the benchmark account's
WRONG = "not the password at all, surely"


def _addresses() -> Iterator[str]:
    for third in range(1, 255):
        for fourth in range(2, 255):
            yield f"127.0.{third}.{fourth}"


def _client(base: str, address: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(
        base_url=base, transport=httpx.HTTPTransport(local_address=address), timeout=30
    )
    return client, csrf_of(client.get("/sign-in").text)


def _attempt(client: httpx.Client, token: str, name: str, password: str) -> tuple[float, str]:
    fields = {"username": name, "password": password, "next": "/", "csrf_token": token}
    started = time.perf_counter()
    answer = client.post("/sign-in", data=fields)
    elapsed = (time.perf_counter() - started) * 1000
    page = answer.text.replace(token, "TOKEN").replace(f'value="{name}"', 'value="NAME"')
    return elapsed, f"{answer.status_code} {page}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=45)
    args = parser.parse_args()
    addresses = _addresses()
    times: dict[str, list[float]] = {}
    pages: dict[str, set[str]] = {}
    scratch = tempfile.TemporaryDirectory()
    env = {
        "ELIGO_AUTH": "on",
        "ELIGO_SIGN_IN": "local",
        "ELIGO_DATABASE_URL": f"sqlite:///{Path(scratch.name) / 'sign-in.db'}",
    }
    with scratch, eligo_process(env) as server:
        subprocess.run(
            [ELIGO, "users", "add", "dr.ng", "--name", "Dr Ng", "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
        for reason in ("wrong password", "unknown name"):
            client, token = _client(server.base, next(addresses))
            for attempt in range(args.rounds):
                if attempt and attempt % 9 == 0:
                    client.close()
                    client, token = _client(server.base, next(addresses))
                name = "dr.ng" if reason == "wrong password" else f"nobody.{attempt}"
                elapsed, page = _attempt(client, token, name, WRONG)
                times.setdefault(reason, []).append(elapsed)
                pages.setdefault(reason, set()).add(page)
            client.close()
        client, token = _client(server.base, next(addresses))
        for _ in range(10):
            _attempt(client, token, "dr.ng", WRONG)
        for _ in range(args.rounds):
            elapsed, page = _attempt(client, token, "dr.ng", PASSWORD)
            times.setdefault("paused", []).append(elapsed)
            pages.setdefault("paused", set()).add(page)
        client.close()
        for _ in range(args.rounds):
            client, token = _client(server.base, next(addresses))
            elapsed, page = _attempt(client, token, "dr.ng", PASSWORD)
            assert page.startswith("303"), page[:200]
            times.setdefault("signed in", []).append(elapsed)
            client.close()
    print(f"POST /sign-in, {args.rounds} each, one at a time (Argon2id t=3, 64 MiB, p=4)")
    for reason, values in times.items():
        cuts = statistics.quantiles(values, n=20)
        print(f"  {reason:15} p50 {statistics.median(values):6.1f} ms   p95 {cuts[18]:6.1f} ms")
    refusals = set().union(*pages.values())
    print(f"  refusal pages: {len(refusals)} distinct (1 = every reason reads alike)")


if __name__ == "__main__":
    main()
