"""The clinician form's latency as a browser sees it, against a real `eligo serve`.

    .venv/bin/python -m benchmarks.bench_web [--rounds 200] [--fhir]

Starts the server on a free loopback port (development mode, a fresh SQLite database), then
times one clinician's round, one request at a time over a keep-alive connection:
- `GET /`: the empty form, generated from the catalogue;
- `POST /`: the ASTIS candidate's values, decided against every rule set, recorded, and
  answered with a redirect (or, with `--fhir`, `POST /fhir` with the SSc bundle pasted);
- `GET /?evaluation=<id>`: the page with every protocol's panel, criteria and references;
- `GET /report/<id>`: the printable report.
Prints percentiles per step and the page sizes. Browser rendering is not included.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime

import httpx

from tests.astis_patients import ASTIS_CANDIDATE
from tests.e2e.helpers import eligo_process
from tests.fhir.bundles import ssc_bundle
from tests.web.conftest import csrf_of, form_fields

_ID = re.compile(r"evaluation=([0-9a-f-]{36})")


def _timed(times: dict[str, list[float]], step: str, call: object) -> httpx.Response:
    started = time.perf_counter()
    response: httpx.Response = call()  # type: ignore[operator]
    times[step].append((time.perf_counter() - started) * 1000)
    return response


def _round(client: httpx.Client, times: dict[str, list[float]], fhir: str | None) -> dict[str, int]:
    # The SSc work-up (the start page alone only asks for the disease).
    form = _timed(times, "GET /", lambda: client.get("/?disease=ssc"))
    token = csrf_of(form.text)
    if fhir is None:
        fields = {**form_fields(ASTIS_CANDIDATE), "csrf_token": token}
        posted = _timed(times, "POST /", lambda: client.post("/", data=fields))
    else:
        data = {"csrf_token": token, "bundle": fhir}
        posted = _timed(times, "POST /fhir", lambda: client.post("/fhir", data=data))
    assert posted.status_code == 303, posted.text[:500]
    evaluation = _ID.search(posted.headers["location"])
    assert evaluation
    page = _timed(times, "GET /?evaluation=", lambda: client.get(posted.headers["location"]))
    report = _timed(times, "GET /report/", lambda: client.get(f"/report/{evaluation.group(1)}"))
    assert page.status_code == report.status_code == 200
    return {"form": len(form.content), "results": len(page.content), "report": len(report.content)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--fhir", action="store_true", help="load the SSc FHIR bundle instead")
    args = parser.parse_args()
    fhir = json.dumps(ssc_bundle(datetime.now(UTC).date())) if args.fhir else None
    times: dict[str, list[float]] = defaultdict(list)
    with eligo_process() as server, httpx.Client(base_url=server.base) as client:
        for _ in range(5):  # warm-up: templates compiled, first rule set versions stored
            _round(client, defaultdict(list), fhir)
        sizes = {}
        for _ in range(args.rounds):
            sizes = _round(client, times, fhir)
    print(f"{args.rounds} rounds, one at a time ({'FHIR bundle' if fhir else 'typed values'})")
    for step, values in times.items():
        cuts = statistics.quantiles(values, n=100)
        p50, p95, p99 = cuts[49], cuts[94], cuts[98]
        print(f"  {step:22} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   p99 {p99:6.1f} ms")
    print("  page sizes: " + ", ".join(f"{k} {v / 1024:.0f} kB" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
