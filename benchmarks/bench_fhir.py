"""Time to map a Synthea R4 patient bundle (about 1-1.5 MB) to features.

    .venv/bin/python -m benchmarks.bench_fhir [--repeat 20]

Each run parses the JSON (orjson), validates the usable resources with fhir.resources R4B and
maps them, as `POST /v1/evaluations` does with `{"fhir": ...}`. The first run of the process,
which builds the FHIR models, is reported on its own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from app.engine.load import load_rules
from app.fhir.mapping import map_bundle
from app.settings import Settings

BUNDLES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "fhir" / "synthea"
ON = date(2021, 3, 1)  # near the records' last entries, so observations count


def _alive_on(bundle: dict[str, Any]) -> date:
    """ON, or the day before the patient died: a deceased patient is refused, not mapped."""
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    died = patient.get("deceasedDateTime")
    return ON if died is None else min(ON, date.fromisoformat(died[:10]) - timedelta(days=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rules = load_rules(Settings().rules_dir)
    for path in sorted(BUNDLES.glob("*.json")):
        raw = path.read_bytes()
        on = _alive_on(orjson.loads(raw))
        times = []
        for _ in range(args.repeat + 1):
            started = time.perf_counter()
            mapped = map_bundle(orjson.loads(raw), rules.features, on)
            times.append((time.perf_counter() - started) * 1000)
        first, rest = times[0], sorted(times[1:])
        print(
            f"{path.name[:24]:24} {len(raw) / 1e6:5.2f} MB  features {len(mapped.values):2}  "
            f"first {first:7.1f} ms  median {statistics.median(rest):6.1f} ms  "
            f"max {rest[-1]:6.1f} ms"
        )


if __name__ == "__main__":
    main()
