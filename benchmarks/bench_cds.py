"""End-to-end latency of a CDS Hooks `patient-view` call with full prefetch.

    .venv/bin/python -m benchmarks.bench_cds [--calls 300] [--concurrency 1] [--no-prefetch]

Starts a real `eligo serve` (one uvicorn worker, authentication on, a fresh SQLite database,
the sandbox issuer trusted) and the tests' loopback FHIR server holding the hand-written SSc
patient and a 1.5 MB Synthea record. For each patient it runs the discovery's prefetch
templates against the FHIR server once, as an EHR does before calling, then times calls
carrying that full prefetch: JWT verification (ES384), the jti replay check (a database
write), mapping, deciding all 11 rule sets, the cards and the audit record. Tokens are
signed before the clock starts, since signing is the EHR's cost. `--no-prefetch` times the
same calls with no prefetch, so Eligo fetches every search from the FHIR server itself.

Client, server and FHIR server share this machine's two cores: the figures are a ceiling on
latency, not a floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.cds.conftest import hook_request
from tests.cds.fhir_server import FhirStore, fhir_server
from tests.cds.keys import SANDBOX_ISSUER, claims, sandbox_jwks, sign
from tests.e2e.helpers import Server, eligo_process
from tests.fhir.bundles import FIXTURES, ssc_bundle, today

SERVICE = "eligo-patient-view"
SYNTHEA = FIXTURES / "synthea" / "Tristan_Gleason_0a22e990-5251-4a91-8395-2afbab2fbc7d.json"


def _patients(store: FhirStore) -> dict[str, str]:
    """Label -> patient id, each bundle loaded into the FHIR server."""
    synthea = json.loads(Path(SYNTHEA).read_text())
    store.load(ssc_bundle(today()))
    store.load(synthea)
    synthea_id = next(
        e["resource"]["id"] for e in synthea["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    return {"SSc patient (hand-written)": "ssc-1", "Synthea record, 1.5 MB": synthea_id}


@contextmanager
def setting() -> Iterator[tuple[Server, str, dict[str, str]]]:
    with ExitStack() as stack:
        store = FhirStore()
        patients = _patients(store)
        fhir = stack.enter_context(fhir_server(store))
        env = {
            "ELIGO_AUTH": "on",
            "ELIGO_LOG_LEVEL": "warning",
            "ELIGO_CDS_ISSUERS": json.dumps({SANDBOX_ISSUER: {"jwks": sandbox_jwks()}}),
            "ELIGO_CDS_FHIR_SERVERS": json.dumps([fhir + "/"]),
        }
        server = stack.enter_context(eligo_process(env))
        yield server, fhir, patients


def _prefetch(server: Server, fhir: str, patient: str) -> dict[str, Any]:
    services = httpx.get(f"{server.base}/cds-services").json()["services"]
    templates = next(s for s in services if s["id"] == SERVICE)["prefetch"]
    found = {}
    for key, query in templates.items():
        url = urljoin(fhir + "/", query.replace("{{context.patientId}}", patient))
        found[key] = httpx.get(url).json()
    return found


def _body(fhir: str, patient: str, prefetch: dict[str, Any] | None) -> dict[str, Any]:
    body = hook_request(fhir, patient)
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _run(url: str, body: bytes, calls: int, concurrency: int) -> tuple[list[float], float]:
    tokens = [sign(claims(aud=url, exp=int(time.time()) + 3600)) for _ in range(calls)]
    with httpx.Client(timeout=30) as client:
        warm = sign(claims(aud=url))
        client.post(url, content=body, headers=_headers(warm)).raise_for_status()

        def one(token: str) -> float:
            started = time.perf_counter()
            response = client.post(url, content=body, headers=_headers(token))
            response.raise_for_status()
            return time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(one, tokens))
        return latencies, time.perf_counter() - started


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _report(label: str, size: int, cards: int, latencies: list[float], elapsed: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)]
    print(
        f"{label}: {len(ms)} calls, request {size / 1024:.0f} kB, {cards} cards | "
        f"p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms | "
        f"{len(ms) / elapsed:.1f} calls/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--no-prefetch", action="store_true")
    args = parser.parse_args()
    with setting() as (server, fhir, patients):
        url = f"{server.base}/cds-services/{SERVICE}"
        for label, patient in patients.items():
            prefetch = None if args.no_prefetch else _prefetch(server, fhir, patient)
            body = json.dumps(_body(fhir, patient, prefetch)).encode()
            check = httpx.post(url, content=body, headers=_headers(sign(claims(aud=url))))
            cards = len(check.json()["cards"])
            latencies, elapsed = _run(url, body, args.calls, args.concurrency)
            _report(label, len(body), cards, latencies, elapsed)


if __name__ == "__main__":
    main()
