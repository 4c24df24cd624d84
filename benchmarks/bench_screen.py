"""Registry screening end to end against its floor: `eligo screen` as a user runs it, beside
the peer rule set of shared/docs/BENCHMARK.md written by hand as one DuckDB query.

    .venv/bin/python -m benchmarks.bench_screen [--n 1000000] [--engine duckdb|postgres|spark]
                                                [--repeat 1] [--python-sample 20000] [--keep DIR]

Makes two cohorts of N patients (not timed): the peer cohort (benchmarks/peer/cohort.py: the
16 features the peer rule set reads) and a synthetic registry (`eligo synth`: every catalogue
feature). Then times, each as one fresh process from start to exit (interpreter start
included), with its CPU time (user and system, every thread) and peak resident memory (the
child's own rusage; on a shared machine the CPU ratio moves less with the load than the wall
time's):

  floor         benchmarks/peer/floor_sql.py: the peer rule set as one hand-written DuckDB
                query (CASE, NULL as unknown) over the peer cohort's Parquet, COPY to Parquet,
                two threads
  peer          `eligo screen` of the peer cohort x the peer rule set (loaded from the scratch
                rules directory of benchmarks/peer/ruleset.py), Parquet in and out
  all           `eligo screen` of the synthetic registry x every shipped rule set, with
                per-criterion results, the report and the funnels (targets: 5 s, 2 GiB)

`eligo screen` keeps the SQL it compiles (app/batch/sql_cache.py), as a registry screened
again finds it: the runs use a cache folder of their own in the scratch folder, filled by one
untimed run of each before the timed ones. `--cold` empties it before every timed run instead
(each run then compiles its SQL, importing SQLAlchemy).

`--repeat` runs each that many times, interleaved (the order rotating); medians are printed,
each with its ratio to the floor's. The floor's and Eligo's answers on the peer cohort are
then compared, patient by patient. `postgres` first loads the registry into a table of a
fresh database (not timed) and screens `all` there; `spark` runs it on Spark in local mode
(the floor and `peer` stay on DuckDB). For the older ratio, the per-patient Python evaluator
(`normalise` + `derive` + `decide` for each rule set, as the API does) is timed on a sample of
the registry and scaled to N.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from app.engine.derive import derive
from app.engine.evaluate import decide
from app.engine.inputs import InvalidInput, normalise
from app.engine.load import load_rules
from app.settings import Settings
from benchmarks.peer import cohort, floor_sql
from benchmarks.peer.ruleset import RULESET_ID, write_rules_dir

ELIGO = str(Path(sys.executable).with_name("eligo"))
ADMIN_URL = os.environ.get(
    "ELIGO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def synthesise(n: int, folder: Path) -> Path:
    path = folder / f"cohort-{n}.parquet"
    if not path.exists():
        subprocess.run([ELIGO, "synth", "--n", str(n), "--out", str(path)], check=True)
    return path


ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 5.0
TARGET_MIB = 2048.0


def timed(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """(seconds, CPU seconds, peak MiB) of one process, start to exit; the CPU time (user and
    system, all threads) and the peak are this child's own. Its output (eligo screen's
    summary) goes to `log`."""
    with log.open("ab") as output:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env=env
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"{' '.join(command)} exited with {process.returncode}:\n{tail}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


@dataclass
class Run:
    label: str
    command: list[str]
    patients: int
    root: Path | None = None  # another tree's `app` (--compare), else this one's
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def measure(runs: list[Run], repeat: int, log: Path, cache: Path, cold: bool) -> None:
    """Each run `repeat` times, interleaved, the order rotating; `eligo screen` with its SQL
    cache in `cache`, warmed first (or emptied before each run, `cold`)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    shutil.rmtree(cache, ignore_errors=True)
    if not cold:
        for run in runs:
            timed(run.command, log, _env(env, run))
    for r in range(repeat):
        for j in range(len(runs)):
            run = runs[(r + j) % len(runs)]
            if cold:
                shutil.rmtree(cache / "eligo" / "screening-sql", ignore_errors=True)
            seconds, cpu, peak = timed(run.command, log, _env(env, run))
            run.seconds.append(seconds)
            run.cpu.append(cpu)
            run.peaks.append(peak)


def compared(root: Path, runs: list[Run], folder: Path, n: int) -> list[Run]:
    """`runs` (eligo screen's) again on another tree, each writing beside its own results."""
    root = root.resolve()
    again = []
    for i, run in enumerate(runs):
        command = list(run.command)
        at = command.index("--out") + 1
        command[at] = str(folder / f"compare-{i}.parquet")
        label = f"  {root.name}: " + run.label.removeprefix("eligo screen, ")
        again.append(Run(label, command, n, root))
    return again


def same_as_compared(runs: list[Run], results: list[Path], folder: Path) -> None:
    """Whether each of `results` is the same table as the compared tree's (`compared`)."""
    for i, (run, mine) in enumerate(zip(runs, results, strict=True)):
        theirs = folder / f"compare-{i}.parquet"
        same = same_values(pq.read_table(mine), pq.read_table(theirs))
        print(f"  {run.label}: results {'identical to' if same else 'DIFFER'} {theirs.name}")


def same_values(a: pa.Table, b: pa.Table) -> bool:
    """The same columns holding the same values (a column declared never NULL in one and not
    in the other is the same column)."""
    return a.column_names == b.column_names and all(
        x.equals(y) for x, y in zip(a.columns, b.columns, strict=True)
    )


def _env(env: dict[str, str], run: Run) -> dict[str, str]:
    """`run`'s environment: another tree's `app` comes first on the path (`--compare`)."""
    return env if run.root is None else {**env, "PYTHONPATH": str(run.root)}


def disagreements(floor: Path, eligo: Path) -> tuple[int, int]:
    """(patients, patients whose status or any criterion differs) between the floor's
    results and `eligo screen`'s for the peer rule set."""
    same = " AND ".join(
        f'f.{c} IS NOT DISTINCT FROM e."{RULESET_ID}:{c}"' for c in ["status", *floor_sql.CRITERIA]
    )
    connection = duckdb.connect()
    found = connection.execute(
        f"SELECT count(*), count(*) FILTER (WHERE NOT ({same})) "  # noqa: S608 - benchmark's own
        f"FROM read_parquet('{floor}') f JOIN read_parquet('{eligo}') e USING (id)"
    ).fetchone()
    connection.close()
    assert found is not None
    return int(found[0]), int(found[1])


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


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=["duckdb", "postgres", "spark"], default="duckdb")
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each, interleaved")
    parser.add_argument("--python-sample", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="Folder for the cohorts and results (reused)")
    parser.add_argument(
        "--cold", action="store_true", help="No compiled SQL kept between runs (see above)"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="Another tree (e.g. `git archive` of an older commit): its `eligo screen` runs "
        "too, interleaved, with its `app` first on PYTHONPATH (DuckDB only)",
    )
    args = parser.parse_args()
    if args.compare is not None and args.engine != "duckdb":
        parser.error("--compare runs with the duckdb engine only")
    return args


def main() -> None:
    args = arguments()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="eligo-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    registry = synthesise(args.n, folder)
    _, peer_cohort = cohort.write(args.n, folder, jsonl=False)
    peer_rules = write_rules_dir(folder / "peer-rules")
    floor_out = folder / f"results-floor-{args.n}.parquet"
    peer_out = folder / f"results-peer-{args.n}.parquet"
    out = folder / f"results-{args.engine}-{args.n}.parquet"
    drop: Callable[[], None] | None = None
    if args.engine == "postgres":
        url, drop = postgres_source(registry)
        screen_args = [url, "--table", "registry", "--out", str(out)]
    else:
        screen_args = [str(registry), "--out", str(out), "--engine", args.engine]
    rulesets = len(load_rules(Settings().rules_dir).rulesets)
    floor = Run(
        "floor: hand-written DuckDB query, peer rule set",
        [sys.executable, "-m", "benchmarks.peer.floor_sql", str(peer_cohort), str(floor_out)],
        args.n,
    )
    screen = [ELIGO, "screen", "--no-progress"]
    peer_args = [str(peer_cohort), "--out", str(peer_out), "--rules-dir", str(peer_rules)]
    runs = [
        floor,
        Run("eligo screen, peer rule set", [*screen, *peer_args], args.n),
        Run(f"eligo screen, all {rulesets} shipped rule sets", [*screen, *screen_args], args.n),
    ]
    if args.compare is not None:
        runs += compared(args.compare, runs[1:], folder, args.n)
    try:
        measure(runs, args.repeat, folder / "screen.log", folder / "cache", args.cold)
    finally:
        if drop is not None:
            drop()
    patients, differ = disagreements(floor_out, peer_out)
    columns = pq.ParquetFile(out).metadata.num_columns
    print(
        f"{args.n:,} patients, Parquet in and out, one process each from start to exit, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; median of "
        f"{args.repeat}, interleaved; all-rule-sets engine: {args.engine}, {columns} columns;"
        f" compiled SQL {'compiled every run (--cold)' if args.cold else 'cached'}"
    )
    print(
        f"  {'':<48} {'seconds':>8} {'range':>13} {'patients/s':>11} {'peak MiB':>9}"
        f"   x floor (time) {'CPU s':>6}   x floor (CPU)"
    )
    for run in runs:
        print(
            f"  {run.label:<48} {run.median:8.2f} {min(run.seconds):6.2f}-{max(run.seconds):<6.2f}"
            f" {run.patients / run.median:11,.0f} {max(run.peaks):9,.0f}"
            f"   {run.median / floor.median:8.1f}x      {statistics.median(run.cpu):6.2f}"
            f"   {statistics.median(run.cpu) / statistics.median(floor.cpu):8.1f}x"
        )
    every = runs[2]
    print(
        f"  targets, all rule sets: {every.median:.2f} s (target {TARGET_SECONDS:g} s: "
        f"{'within' if every.median <= TARGET_SECONDS else 'OVER'}), peak {max(every.peaks):,.0f}"
        f" MiB (target {TARGET_MIB:,.0f}: {'within' if max(every.peaks) <= TARGET_MIB else 'OVER'})"
    )
    print(f"  floor and eligo screen differ on {differ:,} of {patients:,} peer patients")
    if args.compare is not None:
        same_as_compared(runs[1:3], [peer_out, out], folder)
    sample = min(args.python_sample, args.n)
    python = python_rate(registry, sample)
    rate = args.n / every.median
    print(
        f"  Python evaluator (normalise + derive + decide, all rule sets, sample of {sample:,}):"
        f" {python:,.0f} patients/s -> {args.n / python:.1f} s for {args.n:,};"
        f" eligo screen is {rate / python:.1f}x that"
    )


if __name__ == "__main__":
    main()
