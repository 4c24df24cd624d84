"""Registry screening end to end: `eligo screen` as a user runs it, against every shipped
rule set, with per-criterion results, the report and the funnels.

    .venv/bin/python -m benchmarks.bench_screen [--n 1000000] [--engine duckdb|postgres|spark]
                                                [--python-sample 20000] [--keep DIR]

Makes a synthetic cohort (`eligo synth`, not timed), then times one `eligo screen` process:
wall time from start to exit (interpreter start and rule loading included) and its peak
resident memory (getrusage of the child). `postgres` first loads the cohort into a table of
a fresh database (not timed) and screens it there; `spark` runs Spark in local mode on every
core. For the ratio, the per-patient Python evaluator (`normalise` + `derive` + `decide` for
each rule set, as the API does) is timed on a sample of the same cohort and scaled to N.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import sqlalchemy as sa

from app.engine.derive import derive
from app.engine.evaluate import decide
from app.engine.inputs import InvalidInput, normalise
from app.engine.load import load_rules
from app.settings import Settings

ELIGO = str(Path(sys.executable).with_name("eligo"))
ADMIN_URL = os.environ.get(
    "ELIGO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def synthesise(n: int, folder: Path) -> Path:
    cohort = folder / f"cohort-{n}.parquet"
    if not cohort.exists():
        subprocess.run([ELIGO, "synth", "--n", str(n), "--out", str(cohort)], check=True)
    return cohort


def timed_screen(args: list[str]) -> tuple[float, float]:
    """(seconds, peak MiB) of one `eligo screen` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([ELIGO, "screen", *args, "--no-progress"], check=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:
        print("  (peak RSS not above an earlier child's; figure is an upper bound)")
    return seconds, peak_kib / 1024


def python_rate(cohort: Path, sample: int) -> float:
    """Patients a second through normalise + derive + decide for every shipped rule set. A
    row the API would refuse is refused here too (the screening rejects it as well)."""
    rules = load_rules(Settings().rules_dir)
    table = pq.read_table(cohort).slice(0, sample).to_pylist()
    patients = [{k: v for k, v in row.items() if k != "id" and v is not None} for row in table]
    rulesets = list(rules.rulesets.values())
    start = time.perf_counter()
    for raw in patients:
        try:
            values = derive(normalise(raw, rules.features), rules.features)
        except InvalidInput:
            continue
        for ruleset in rulesets:
            decide(ruleset, values)
    return len(patients) / (time.perf_counter() - start)


def postgres_source(cohort: Path) -> tuple[str, Any]:
    """A fresh database with the cohort in table `registry` (loaded with COPY)."""
    name = f"eligo_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    table = pq.read_table(cohort)
    engine = sa.create_engine(url)
    types = {"double": "DOUBLE PRECISION", "bool": "BOOLEAN"}
    columns = ", ".join(f'"{f.name}" {types.get(str(f.type), "TEXT")}' for f in table.schema)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE registry ({columns})"))
        raw = connection.connection.driver_connection
        assert raw is not None
        names = ", ".join(f'"{n}"' for n in table.schema.names)
        with raw.cursor() as cursor, cursor.copy(f"COPY registry ({names}) FROM STDIN") as copy:
            for row in table.to_pylist():
                copy.write_row([row[n] for n in table.schema.names])
        connection.execute(sa.text("ANALYZE registry"))
    engine.dispose()

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["duckdb", "postgres", "spark"], default="duckdb")
    parser.add_argument("--python-sample", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="Folder for the cohort and results (reused)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="eligo-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    cohort = synthesise(args.n, folder)
    out = folder / f"results-{args.engine}-{args.n}.parquet"
    drop = None
    if args.engine == "postgres":
        url, drop = postgres_source(cohort)
        screen_args = [url, "--table", "registry", "--out", str(out)]
    else:
        screen_args = [str(cohort), "--out", str(out), "--engine", args.engine]
    try:
        seconds, peak = timed_screen(screen_args)
    finally:
        if drop is not None:
            drop()
    rate = args.n / seconds
    columns = pq.ParquetFile(out).metadata.num_columns
    print(f"engine {args.engine}: {args.n:,} patients x 11 rule sets, {columns} result columns")
    print(
        f"  eligo screen, end to end: {seconds:.2f} s, {rate:,.0f} patients/s, peak {peak:,.0f} MiB"
    )
    sample = min(args.python_sample, args.n)
    python = python_rate(cohort, sample)
    print(
        f"  Python evaluator (normalise + derive + decide, sample of {sample:,}):"
        f" {python:,.0f} patients/s -> {args.n / python:.1f} s for {args.n:,}"
    )
    print(f"  ratio: {rate / python:.1f}x")


if __name__ == "__main__":
    main()
