"""HTTP against its floor in one run: POST /v1/evaluations (audit on, PostgreSQL) beside the
floor app of shared/docs/BENCHMARK.md, at equal worker counts, from the same load generator.

    .venv/bin/python -m benchmarks.bench_http_floor [--workers 1 2] [--duration 10]
        [--warmup 3] [--connections 8] [--loadgen wrk|python] [--rounds 3] [--patch-nodelay]
        [--count-in-lua] [--compare DIR]

For each worker count, three servers on free loopback ports, each on a fresh PostgreSQL
database:
  floor        benchmarks/floor_app.py: pydantic validates `{"features": {...}}`, one ~2 kB
               JSON row is inserted in its own transaction, a small JSON answers
  eligo peer   Eligo with only the peer rule set loaded (benchmarks/peer/), the same bodies
  eligo all    Eligo with every shipped rule set, the bodies of benchmarks/bench_http.py
               (benchmarks/patients.py: every catalogue feature, some unknown)
Eligo runs with authentication on (a bearer token of a fresh API client) and the audit trail
on; the floor has neither check nor audit schema. Both run under the same uvicorn settings
(`--workers N`, log level warning, no proxy headers): Eligo as `eligo serve --workers N` where
that option exists, otherwise `uvicorn app.main:create_app --factory --workers N`, as the floor.

All three are up at once and loaded one at a time: each warmed up, then `--rounds` runs each
as hard as `--connections` keep-alive connections allow (requests/s, p50, p99; medians over
the rounds, the order rotating from round to round), then as many at half the median rate it
reached (p99 at a steady, not saturating load). wrk (Debian's; `apt-get install wrk`) is the
default load generator, with a generated Lua script that cycles through the bodies and, for
the half-rate run, paces each connection to a schedule (wrk2 is not in Debian: this is wrk
with a per-connection delay, so a late answer delays that connection's next request; at half
the maximum rate that is rare). wrk counts the answers: those over 399 (shown as status 0)
and the rest, which for these endpoints are 200s. `--count-in-lua` counts them by status in
Lua instead, as this benchmark did before 2026-12-04: wrk then keeps every answer's body and
copies it into Lua, CPU taken on the servers' cores in proportion to the answer's size (the
floor's 40 bytes, all rule sets' 341 kB). `--loadgen python` uses
httpx instead (the generator of bench_http.py's kind): closed loop for the maximum, open loop
at a fixed rate (latency from the scheduled start) for the half rate.

`--compare DIR` runs each Eligo configuration twice, from this checkout and from the one at
DIR (e.g. `git archive <commit>` unpacked), each on a database of its own and both through
uvicorn's CLI with `--app-dir` (the tree's own `app` first on the path), loaded in turn in
the same rounds: before and after in one run, each as a ratio to the same floor.

Audit: the rows in each target's database before its first request and after its server
stopped, against its 200 answers: an answer without a record is printed as such (the target
is zero). A few more rows than answers are requests still in flight when a run ended.

Several workers: uvicorn's supervisor binds the socket without IPPROTO_TCP, so asyncio leaves
Nagle's algorithm on and every answer waits ~40 ms for the client's delayed ACK
(Kludex/uvicorn#3149) under asyncio's own event loop. With uvloop (installed with Eligo since
2026-12-04, and picked by uvicorn) every connection has TCP_NODELAY and the stall is gone;
`--patch-nodelay` still runs both through benchmarks/uvicorn_nodelay.py, which patches it out
for asyncio's loop, to measure the servers rather than the stall.

Where the time goes: the CPU seconds each side spent during the maximum-rate runs, per 200
answer: the server's processes, PostgreSQL's (every process of the cluster), and the load
generator's, each from /proc and getrusage, beside the floor's total.

Every figure is printed with its ratio to the floor measured at the same worker count in the
same run: client and servers share this machine's cores (2 here), so absolute figures move
with whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
from sqlalchemy import func, select

from app.db.models import Evaluation
from app.db.session import make_engine, session_factory
from app.engine.load import load_rules
from app.settings import Settings
from benchmarks import floor_app
from benchmarks.bench_http import api_token
from benchmarks.patients import random_patient
from benchmarks.peer import cohort
from benchmarks.peer.ruleset import write_rules_dir
from tests.databases import postgres_database
from tests.e2e.helpers import Server, eligo_process

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UVICORN_SETTINGS = ("--log-level", "warning", "--no-proxy-headers")
BODIES = 500
WRK_TIMEOUT = "10s"
MARK = "ELIGO-BENCH"


@dataclass
class Load:
    """One load run as the client saw it."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)  # python generator only
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: Counter[int | str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def answered(self) -> int:
        return sum(n for status, n in self.statuses.items() if isinstance(status, int))

    @property
    def rate(self) -> float:
        return self.answered / self.seconds

    def summarise(self) -> None:
        if self.latencies_ms:
            ordered = sorted(self.latencies_ms)
            self.p50_ms = statistics.median(ordered)
            self.p99_ms = ordered[int(0.99 * (len(ordered) - 1))]
            self.max_ms = ordered[-1]


@dataclass(frozen=True)
class Pace:
    """How long, over how many connections, and at what rate (None: as fast as they go)."""

    seconds: float
    connections: int
    rate: float | None = None


@dataclass
class Target:
    name: str
    path: str
    bodies: list[bytes]
    headers: dict[str, str]
    start: Callable[[int], AbstractContextManager[Server]]
    count: Callable[[], int]  # audit rows recorded so far


# --- load generators -------------------------------------------------------------------------


_LUA = """
local bodies = {
%(bodies)s
}
local path = %(path)s
local headers = %(headers)s
local interval = %(interval)s
counts = {}
local threads = {}
local n = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("first", #threads * 61)
end

function init(args)
  n = first %% #bodies
  math.randomseed(first)
end

function request()
  n = n %% #bodies + 1
  return wrk.format("POST", path, headers, bodies[n])
end

%(response)s

%(pacing)s

function done(summary, latency, requests)
  local totals = {}
  for _, t in ipairs(threads) do
    for status, count in pairs(t:get("counts")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  local e = summary.errors
  if next(totals) == nil then
    -- no response(): wrk's own count of answers over 399, every other one a success (200)
    totals[200] = summary.requests - e.status
    if e.status > 0 then totals[0] = e.status end
  end
  io.write(string.format("%(mark)s summary %%d %%d\\n", summary.requests, summary.duration))
  io.write(string.format("%(mark)s latency %%d %%d %%d\\n",
    latency:percentile(50), latency:percentile(99), latency.max))
  io.write(string.format("%(mark)s errors %%d %%d %%d %%d\\n",
    e.connect, e.read, e.write, e.timeout))
  for status, count in pairs(totals) do
    io.write(string.format("%(mark)s status %%d %%d\\n", status, count))
  end
end
"""

# Counting answers by status in Lua makes wrk keep every answer's body and copy it into a Lua
# string (its `response` callback takes the body): on the same two cores as the server, ~0.4 ms
# of wrk's CPU per answer of every rule set (341 kB), against nothing for the floor's 40 bytes.
# By default wrk counts itself (answers over 399 apart from the rest); `--count-in-lua` restores
# the per-status count.
_RESPONSE = """
function response(status, hdrs, body)
  counts[status] = (counts[status] or 0) + 1
end
"""

# A schedule per connection (one connection per wrk thread): the next request is due
# `interval` ms after the previous one was due; a connection more than a second behind starts
# its schedule again from now rather than bursting.
_PACING = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } eligo_timespec;
int clock_gettime(int clock_id, eligo_timespec *tp);
]]
local ts = ffi.new("eligo_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local due = nil

function delay()
  local t = now_ms()
  if due == nil then
    due = t + math.random() * interval
  else
    due = due + interval
  end
  if due < t - 1000 then due = t end
  if due <= t then return 0 end
  return math.floor(due - t + 0.5)
end
"""


def _lua_string(text: str) -> str:
    level = "=" * 3
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def wrk_script(
    target: Target, interval_ms: float | None, folder: Path, count_in_lua: bool = False
) -> Path:
    headers = ", ".join(
        f"[ {_lua_string(k)} ] = {_lua_string(v)}"
        for k, v in {"Content-Type": "application/json", **target.headers}.items()
    )
    script = _LUA % {
        "bodies": ",\n".join(_lua_string(b.decode()) for b in target.bodies),
        "path": _lua_string(target.path),
        "headers": "{" + headers + "}",
        "interval": repr(interval_ms or 0.0),
        "pacing": _PACING if interval_ms else "",
        "response": _RESPONSE if count_in_lua else "",
        "mark": MARK,
    }
    path = folder / f"wrk-{abs(hash((target.name, interval_ms, count_in_lua)))}.lua"
    path.write_text(script, encoding="utf-8")
    return path


def run_wrk(
    target: Target, base: str, pace: Pace, folder: Path, count_in_lua: bool = False
) -> Load:
    """Requests as fast as the connections allow, or paced to `pace.rate` a second."""
    rate, connections = pace.rate, pace.connections
    interval = connections * 1000 / rate if rate else None
    threads = connections if rate else min(2, connections)  # paced: one connection a thread
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(pace.seconds))}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(wrk_script(target, interval, folder, count_in_lua)),
        base + target.path,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    load = Load(pace.seconds)
    for line in done.stdout.splitlines():
        if not line.startswith(MARK):
            continue
        kind, *numbers = line.split()[1:]
        values = [int(x) for x in numbers]
        if kind == "summary":
            load.seconds = values[1] / 1e6
        elif kind == "latency":
            load.p50_ms, load.p99_ms, load.max_ms = (v / 1000 for v in values)
        elif kind == "errors":
            load.errors.update(
                dict(zip(["connect", "read", "write", "timeout"], values, strict=True))
            )
        elif kind == "status":
            load.statuses[values[0]] += values[1]
    if not load.statuses and not load.errors:
        raise RuntimeError(f"wrk printed no figures:\n{done.stdout}\n{done.stderr}")
    load.errors = +load.errors
    return load


async def _python_load(target: Target, base: str, pace: Pace) -> Load:
    seconds, connections, rate = pace.seconds, pace.connections, pace.rate
    load = Load(seconds)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Content-Type": "application/json", **target.headers}
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=30, headers=headers
    ) as client:

        async def one(body: bytes, since: float) -> None:
            try:
                response = await client.post(target.path, content=body)
            except httpx.TransportError as exc:
                load.errors[type(exc).__name__] += 1
                return
            load.latencies_ms.append((time.perf_counter() - since) * 1000)
            load.statuses[response.status_code] += 1

        start = time.perf_counter()
        until = start + seconds
        if rate is None:  # closed loop: each connection sends its next request on an answer

            async def worker(offset: int) -> None:
                i = offset
                while time.perf_counter() < until:
                    i += 1
                    await one(target.bodies[i % len(target.bodies)], time.perf_counter())

            await asyncio.gather(*(worker(61 * c) for c in range(connections)))
        else:  # open loop: request i is due at start + i / rate, latency counted from then
            tasks = []
            for i in range(int(seconds * rate)):
                due = start + i / rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(one(target.bodies[i % len(target.bodies)], due)))
            await asyncio.gather(*tasks)
        load.seconds = time.perf_counter() - start
    load.summarise()
    return load


def run_python(target: Target, base: str, pace: Pace) -> Load:
    return asyncio.run(_python_load(target, base, pace))


# --- servers ---------------------------------------------------------------------------------


def _uvicorn(workers: int, patch_nodelay: bool) -> tuple[str, ...]:
    """uvicorn's CLI; with several workers and `patch_nodelay`, benchmarks/uvicorn_nodelay.py
    (uvicorn with Kludex/uvicorn#3149, Nagle's 40 ms on every answer, patched out)."""
    if workers > 1 and patch_nodelay:
        return (sys.executable, "-m", "benchmarks.uvicorn_nodelay")
    return (str(BIN / "uvicorn"),)


def _eligo_command(workers: int, patch_nodelay: bool) -> tuple[tuple[str, ...], str]:
    """`eligo serve --workers N` if this checkout has it (and no patch is asked for), else
    uvicorn's CLI with the app factory (what `eligo serve` runs), under the floor's settings."""
    eligo = str(BIN / "eligo")
    usage = subprocess.run([eligo, "serve", "--help"], capture_output=True, text=True, check=True)
    if "--workers" in usage.stdout and not (patch_nodelay and workers > 1):
        return (eligo, "serve", "--workers", str(workers)), "eligo serve --workers N"
    launcher = _uvicorn(workers, patch_nodelay)
    command = (*launcher, "app.main:create_app", "--factory", "--app-dir", str(ROOT))
    shown = " ".join(Path(part).name for part in launcher[-1:])
    return (*command, "--workers", str(workers), *UVICORN_SETTINGS), f"{shown} app.main:create_app"


def _has_uvloop() -> bool:
    """uvicorn's loop when installed: it sets TCP_NODELAY itself (no Nagle stall)."""
    return importlib.util.find_spec("uvloop") is not None


def _environment(patch_nodelay: bool) -> dict[str, str]:
    """What `python -m benchmarks.uvicorn_nodelay` needs to find this checkout."""
    if not patch_nodelay:
        return {}
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _evaluations(url: str) -> Callable[[], int]:
    engine = make_engine(url)

    def count() -> int:
        with session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(Evaluation)) or 0

    return count


def _floor_rows(url: str) -> Callable[[], int]:
    engine = make_engine(url)
    floor_app.create_table(engine)
    return lambda: floor_app.count(engine)


def _tree_command(root: Path, workers: int, patch_nodelay: bool) -> tuple[str, ...]:
    """Eligo from the checkout at `root` (its `app` package first on the path: `--app-dir`
    and PYTHONPATH), as uvicorn's CLI runs the app factory."""
    command = ("app.main:create_app", "--factory", "--app-dir", str(root))
    launcher = _uvicorn(workers, patch_nodelay)
    return (*launcher, *command, "--workers", str(workers), *UVICORN_SETTINGS)


def targets(
    stack: ExitStack, scratch: Path, patch_nodelay: bool, compare: Path | None = None
) -> list[Target]:
    """The floor and the two Eligo configurations, each with a fresh database of its own.
    With `compare` (another checkout), each Eligo configuration twice, this tree's and that
    one's, each on a database of its own, both started by uvicorn's CLI from their own tree."""
    peer_rules = write_rules_dir(scratch / "peer-rules")
    shipped = Settings().rules_dir
    rules = load_rules(shipped)
    rng = random.Random(7)
    peer_bodies = [json.dumps({"features": p}).encode() for p in cohort.patients(BODIES)]
    all_bodies = [
        json.dumps({"features": random_patient(rules, rng)}).encode() for _ in range(BODIES)
    ]
    logs = scratch / "logs"
    logs.mkdir()
    floor_url = stack.enter_context(postgres_database())

    def floor(workers: int) -> AbstractContextManager[Server]:
        command = (
            *_uvicorn(workers, patch_nodelay),
            "benchmarks.floor_app:create_app",
            "--factory",
            "--app-dir",
            str(ROOT),
            "--workers",
            str(workers),
            *UVICORN_SETTINGS,
        )
        env = {
            floor_app.DATABASE_URL_ENV: floor_url,
            "ELIGO_DATABASE_URL": floor_url,
            **_environment(patch_nodelay),
        }
        return eligo_process(env, log=logs / f"floor-{workers}.log", command=command)

    def eligo(name: str, rules_dir: Path, bodies: list[bytes]) -> list[Target]:
        if compare is None:
            return [_eligo(name, rules_dir, bodies, None)]
        return [
            _eligo(name, rules_dir, bodies, ROOT),
            _eligo(f"{name} [{compare.name}]", rules_dir, bodies, compare),
        ]

    def _eligo(name: str, rules_dir: Path, bodies: list[bytes], root: Path | None) -> Target:
        url = stack.enter_context(postgres_database())  # each its own: rows counted apart
        token = api_token(url)

        def start(workers: int) -> AbstractContextManager[Server]:
            if root is None:
                command = _eligo_command(workers, patch_nodelay)[0]
                extra = _environment(patch_nodelay)
            else:
                command = _tree_command(root, workers, patch_nodelay)
                extra = {"PYTHONPATH": os.pathsep.join((str(root), str(ROOT)))}
            env = {
                **extra,
                "ELIGO_DATABASE_URL": url,
                "ELIGO_AUTH": "on",
                "ELIGO_LOG_LEVEL": "warning",
                "ELIGO_RULES_DIR": str(rules_dir),
                "ELIGO_WORKERS": str(workers),
            }
            log = logs / f"{name.replace(' ', '-').replace(',', '')}-{workers}.log"
            return eligo_process(env, log=log, command=command)

        bearer = {"Authorization": f"Bearer {token}"}
        return Target(name, "/v1/evaluations", bodies, bearer, start, _evaluations(url))

    return [
        Target("floor", "/floor", peer_bodies, {}, floor, _floor_rows(floor_url)),
        *eligo("eligo, peer rule set", peer_rules, peer_bodies),
        *eligo(f"eligo, all {len(rules.rulesets)} shipped rule sets", shipped, all_bodies),
    ]


# --- the run ---------------------------------------------------------------------------------

Generator = Callable[[Target, str, Pace], Load]


def _median(loads: list[Load], key: Callable[[Load], float]) -> float:
    return statistics.median(key(load) for load in loads)


@dataclass
class Cpu:
    """CPU seconds (user and system) spent during the maximum-rate runs: by the server's
    processes, by PostgreSQL's (every backend and helper of the cluster), and by the load
    generator (its child processes, and this process's own for the Python one)."""

    server: float = 0.0
    postgres: float = 0.0
    generator: float = 0.0

    def add(self, other: Cpu) -> None:
        self.server += other.server
        self.postgres += other.postgres
        self.generator += other.generator


def _ticks(pids: list[int]) -> float:
    """CPU seconds so far of `pids` (/proc's utime and stime; a process gone meanwhile
    counts nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's workers, multiprocessing's helpers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        found = [int(c) for c in children.read_text().split()]
    except OSError:
        return [pid]
    return [pid, *(p for child in found for p in _tree(child))]


def _postgres() -> list[int]:
    """PostgreSQL's processes on this machine (the cluster every target writes to)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in {"postgres", "postgresql"}:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _generator_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime


@dataclass
class Outcome:
    target: Target
    full: list[Load] = field(default_factory=list)  # one a round
    half: list[Load] = field(default_factory=list)
    half_rate: float = 0.0
    ok: int = 0  # 200 answers, warm-up included
    rows: int = 0  # audit rows added meanwhile
    cpu: Cpu = field(default_factory=Cpu)  # during the maximum-rate runs

    def rate(self) -> float:
        return _median(self.full, lambda load: load.rate)

    def p50(self, loads: list[Load]) -> float:
        return _median(loads, lambda load: load.p50_ms)

    def p99(self, loads: list[Load]) -> float:
        return _median(loads, lambda load: load.p99_ms)


def measure(
    found: list[Target], workers: int, args: argparse.Namespace, generate: Generator
) -> list[Outcome]:
    """All three servers up at once (idle but for their own timers while another is loaded),
    each round loading each in turn, the order rotating; then the same at half rate."""
    outcomes = [Outcome(t) for t in found]
    before = [t.count() for t in found]
    with ExitStack() as stack:
        servers = [stack.enter_context(t.start(workers)) for t in found]
        k = len(found)
        for o, server in zip(outcomes, servers, strict=True):
            warm = generate(o.target, server.base, Pace(args.warmup, args.connections))
            o.ok += warm.statuses.get(200, 0)
        for half in (False, True):
            for o in outcomes:
                o.half_rate = o.rate() / 2 if half else 0.0
            for r in range(args.rounds):
                for j in range(k):
                    o, server = outcomes[(r + j) % k], servers[(r + j) % k]
                    pace = Pace(args.duration, args.connections, o.half_rate or None)
                    run = partial(generate, o.target, server.base, pace)
                    load, used = _counted(run, server)
                    (o.half if half else o.full).append(load)
                    o.ok += load.statuses.get(200, 0)
                    if not half:
                        o.cpu.add(used)
    # Counted after the servers stopped: whatever was in flight when a run ended is recorded.
    for o, count in zip(outcomes, before, strict=True):
        o.rows = o.target.count() - count
    return outcomes


def _counted(run: Callable[[], Load], server: Server) -> tuple[Load, Cpu]:
    """One load run, with the CPU each side spent meanwhile."""
    serving, database = _tree(server.process.pid), _postgres()
    before = Cpu(_ticks(serving), _ticks(database), _generator_seconds())
    load = run()
    after = Cpu(_ticks(serving), _ticks(database), _generator_seconds())
    return load, Cpu(
        after.server - before.server,
        after.postgres - before.postgres,
        after.generator - before.generator,
    )


def _per_answer(o: Outcome) -> list[float]:
    """Milliseconds of CPU per 200 answer at the maximum: server, PostgreSQL, generator."""
    answered = sum(load.answered for load in o.full) or 1
    return [1000 * x / answered for x in (o.cpu.server, o.cpu.postgres, o.cpu.generator)]


def report(outcomes: list[Outcome]) -> None:
    floor = outcomes[0]
    rounds = len(floor.full)
    print(
        f"  {'maximum (median of ' + str(rounds) + ')':<34} {'req/s':>8} {'range':>13} "
        f"{'p50 ms':>8} {'p99 ms':>8}   x floor: req/s   p50   p99"
    )
    for o in outcomes:
        rates = [load.rate for load in o.full]
        print(
            f"  {o.target.name:<34} {o.rate():8.1f} {min(rates):6.0f}-{max(rates):<6.0f} "
            f"{o.p50(o.full):8.2f} {o.p99(o.full):8.2f}   "
            f"{o.rate() / floor.rate():13.2f}x {o.p50(o.full) / floor.p50(floor.full):5.1f}x "
            f"{o.p99(o.full) / floor.p99(floor.full):5.1f}x"
        )
    print(
        f"  {'at half its own maximum':<34} {'target':>8} {'got':>13} {'p50 ms':>8} "
        f"{'p99 ms':>8}   p99 x floor's"
    )
    for o in outcomes:
        got = _median(o.half, lambda load: load.rate)
        print(
            f"  {o.target.name:<34} {o.half_rate:8.1f} {got:13.1f} {o.p50(o.half):8.2f} "
            f"{o.p99(o.half):8.2f}   {o.p99(o.half) / floor.p99(floor.half):12.1f}x"
        )
    print(
        f"  {'CPU per answer at the maximum':<34} {'server ms':>9} {'PostgreSQL':>10} "
        f"{'generator':>9} {'total':>6}   x floor's"
    )
    floor_each = sum(_per_answer(floor))
    for o in outcomes:
        each = _per_answer(o)
        print(
            f"  {o.target.name:<34} {each[0]:9.3f} {each[1]:10.3f} {each[2]:9.3f} "
            f"{sum(each):6.3f}   {sum(each) / floor_each:8.1f}x"
        )
    for o in outcomes:
        loads = o.full + o.half
        other = sum((load.statuses for load in loads), Counter[int | str]())
        del other[200]
        errors = sum((load.errors for load in loads), Counter[str]())
        print(
            f"  audit {o.target.name}: {o.ok:,} answered 200, {o.rows:,} rows added, "
            f"{max(0, o.ok - o.rows)} answered without a record"
            + (f"; other answers {dict(other)}" if other else "")
            + (f"; socket errors {dict(errors)}" if errors else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds before measuring")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--loadgen", choices=["wrk", "python"], default="wrk")
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each target, interleaved")
    parser.add_argument(
        "--patch-nodelay",
        action="store_true",
        help="With several workers, run the floor and Eligo with Kludex/uvicorn#3149 patched "
        "(benchmarks/uvicorn_nodelay.py)",
    )
    parser.add_argument(
        "--count-in-lua",
        action="store_true",
        help="wrk counts answers by status in Lua, which copies every answer's body into Lua "
        "on the same cores as the servers (by default wrk counts answers over 399 itself)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="DIR",
        help="Also run Eligo from the checkout at DIR (e.g. `git archive <commit>` unpacked), "
        "beside this one, in the same run: before and after",
    )
    args = parser.parse_args()
    if args.loadgen == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (or --loadgen python)")
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eligo-http-")))
        generate: Generator = (
            partial(run_wrk, folder=scratch, count_in_lua=args.count_in_lua)
            if args.loadgen == "wrk"
            else run_python
        )
        found = targets(stack, scratch, args.patch_nodelay, args.compare)
        print(
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {args.loadgen}, "
            f"{args.connections} connections on loopback; {args.rounds} rounds of "
            f"{args.duration:g} s per target, interleaved, after {args.warmup:g} s warm-up; "
            f"PostgreSQL; auth and audit on in Eligo"
        )
        for workers in args.workers:
            launch = _eligo_command(workers, args.patch_nodelay)[1]
            if args.compare is not None:
                launch = "uvicorn app.main:create_app --app-dir <each tree>"
            floor = " ".join(Path(p).name for p in _uvicorn(workers, args.patch_nodelay)[-1:])
            print(f"  {workers} worker(s): floor as `{floor} ...`, Eligo as `{launch}`")
        if max(args.workers) > 1 and not args.patch_nodelay and not _has_uvloop():
            print(
                "  with several workers uvicorn leaves Nagle's algorithm on (Kludex/uvicorn#3149):"
                " ~40 ms per answer for both; --patch-nodelay measures without it"
            )
        for target in found:
            size = statistics.median(map(len, target.bodies))
            print(f"  {target.name} bodies: median {size:,.0f} bytes")
        for workers in args.workers:
            print(f"workers: {workers} each")
            report(measure(found, workers, args, generate))


if __name__ == "__main__":
    main()
