"""Hostile input against a real `eligo serve`: amplification, anonymous work and a parser
crash, each next to a reference measured in the same run (issue 17's figures).

    .venv/bin/python -m benchmarks.bench_hostile [--root DIR] [--seconds 10]

Serves the `app` package of `--root` (default: this checkout; point it at a pristine
`git worktree` to measure "before"): the server runs as a child process of this script with
`PYTHONPATH` and the working directory set to DIR, authentication on, a fresh SQLite
database migrated and given one API client (`evaluate` scope) with DIR's own `eligo db
upgrade` and `eligo clients create`. Every case gets a freshly started server, so its peak
memory is its own. The cases:

  a1. amplification: `POST /v1/evaluations` with `{"features": {}, "rulesets": [1,000,000 x
      "x"]}` (4.0 MB) and a valid token: status, response bytes, seconds;
  a2. two such requests at once: the same, plus `/healthz` p50 and worst latency during the
      attack and the server's peak RSS (VmHWM, reset when the attack starts);
  b.  358,000 unknown feature keys in one body (3.6 MB) with a valid token;
  c.  anonymous bodies: four concurrent senders of 4.0 MB bodies without a token for
      `--seconds`: the refusals' statuses and mean time per refusal, `/healthz` during. The
      body is 1,333,333 empty arrays (`[[],[],...]`), the costliest 4 MB to parse of those
      tried (about 1 s each on the served event loop before issue 17, where the ids body
      above took 25 ms and 358,000 keys 130 ms);
  d.  1,000 nested `[` (2 kB) without a token: status, whether the connection was reset,
      and the bytes the server logged for it.

References, measured on each case's server just before its attack: `/healthz` latency idle
(a third client polls it every 50 ms from a process of its own, idle and during the attack),
the server's RSS at rest, and one small evaluation (`{"features": {}}`) with the token. The
last line counts traceback lines ("Traceback (most recent call last):") in the servers' logs
(stdout and stderr, log level warning) over the whole run.

Every request has a timeout and every case a deadline: a request that fails (reset, timeout)
is printed as such and the run goes on; a server that dies is reported and the next case
starts a new one. Client and server share this machine's cores, and the machine is shared:
compare figures only with the references printed beside them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx

CHECKOUT = Path(__file__).resolve().parents[1]
LAUNCH = "import sys; from app.cli import main; sys.argv[0] = 'eligo'; main()"
EVALUATIONS = "/v1/evaluations"
JSON = {"Content-Type": "application/json", "Accept-Encoding": "identity"}

IDS = 1_000_000  # rule set ids in the amplification body
KEYS = 358_000  # unknown feature keys
DEPTH = 1_000  # nesting of the parser-crash body
SENDERS = 4  # anonymous senders
EMPTY_ARRAYS = 1_333_333  # in the anonymous body: 4,000,000 bytes

POLL_EVERY_S = 0.05
POLL_TIMEOUT_S = 60.0
IDLE_S = 3.0  # idle /healthz baseline before each attack
REQUEST_TIMEOUT_S = 180.0  # one hostile request, start to last byte
STARTUP_S = 60.0
HEAD_BYTES = 160  # start of each answer, printed


# --- bodies -------------------------------------------------------------------------------


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, rest = divmod(n, 36)
        out = digits[rest] + out
        if n == 0:
            return out


def amplification_body() -> bytes:
    return _compact({"features": {}, "rulesets": ["x"] * IDS})


def unknown_keys_body() -> bytes:
    return _compact({"features": {"u" + _base36(i): 1 for i in range(KEYS)}})


def costly_body() -> bytes:
    """About 4 MB of `[[],[],...]`: a million small containers, slow to parse and collect."""
    return b"[" + b",".join([b"[]"] * EMPTY_ARRAYS) + b"]"


def deep_body() -> bytes:
    return b"[" * DEPTH + b"]" * DEPTH


# --- the served tree ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Tree:
    """The `app` of `root`, run by this interpreter, on one SQLite database."""

    root: Path
    scratch: Path
    database_url: str
    token: str = ""
    logs: list[Path] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(self.root),
            "ELIGO_DATABASE_URL": self.database_url,
            "ELIGO_AUTH": "on",
            "ELIGO_LOG_LEVEL": "warning",
        }

    def python(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def eligo(self, *args: str) -> str:
        done = self.python("-c", LAUNCH, *args)
        if done.returncode != 0:
            raise SystemExit(f"eligo {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def prepare(self) -> None:
        self.eligo("db", "upgrade")
        self.token = self.eligo("clients", "create", "bench-hostile", "--scope", "evaluate")
        self.token = self.token.strip().splitlines()[-1]

    def describe(self) -> str:
        imported = self.python("-c", "import app; print(app.__file__)").stdout.strip()
        commit = subprocess.run(
            ["git", "-C", str(self.root), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(self.root), "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()
        return (
            f"root {self.root}: app imported from {imported or '?'}; "
            f"git {commit or '?'}, {len(changed)} tracked file(s) modified"
        )


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_bytes(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def memory_kib(self, key: str) -> int | None:
        """VmRSS or VmHWM from /proc, in KiB; None once the process is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None

    def reset_peak(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True


@contextmanager
def serving(tree: Tree, case: str) -> Iterator[Server]:
    """A fresh `eligo serve` of the tree on a free loopback port, this script's child."""
    port = free_port()
    log = tree.scratch / f"server-{case}.log"
    tree.logs.append(log)
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tree.root,
            env=tree.env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        server = Server(f"http://127.0.0.1:{port}", process, log)
        try:
            _wait_healthy(server)
            yield server
        finally:
            code = process.poll()
            if code is not None:
                print(f"  !! the server had exited during the case, code {code}")
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"server exited with {server.process.returncode}:\n" + _tail(server))
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server not healthy within {STARTUP_S:.0f} s:\n" + _tail(server))


def _tail(server: Server) -> str:
    return server.log.read_text(errors="replace")[-4000:]


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request: its status, or the error that ended it."""

    seconds: float
    status: int | None = None
    error: str | None = None
    size: int = 0
    head: bytes = b""

    def label(self) -> str:
        return str(self.status) if self.status is not None else str(self.error)

    def line(self) -> str:
        text = f"{self.label()}, {self.size:,} response bytes, {self.seconds:.2f} s"
        if self.head:
            text += f"; answer begins {self.head.decode(errors='replace')!r}"
        return text


def send(base: str, body: bytes, token: str | None, client: httpx.Client | None = None) -> Outcome:
    """POST the body to /v1/evaluations, counting the answer's bytes without keeping them;
    bounded by REQUEST_TIMEOUT_S from start to last byte."""
    headers = dict(JSON)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    own = client is None
    http = client or httpx.Client(timeout=REQUEST_TIMEOUT_S)
    start = time.monotonic()
    deadline = start + REQUEST_TIMEOUT_S
    outcome = Outcome(seconds=0.0)
    try:
        with http.stream("POST", base + EVALUATIONS, content=body, headers=headers) as response:
            outcome.status = response.status_code
            for chunk in response.iter_raw():
                if len(outcome.head) < HEAD_BYTES:
                    outcome.head = (outcome.head + chunk)[:HEAD_BYTES]
                outcome.size += len(chunk)
                if time.monotonic() > deadline:
                    outcome.error = f"gave up reading after {REQUEST_TIMEOUT_S:.0f} s"
                    break
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {str(exc) or 'no message'}"
    finally:
        if own:
            http.close()
    outcome.seconds = time.monotonic() - start
    if outcome.error and outcome.status is not None:
        outcome.error = f"status {outcome.status} then {outcome.error}"
        outcome.status = None
    return outcome


def _poll(base: str, stop: Event, out: Connection) -> None:
    """In a process of its own: GET /healthz every POLL_EVERY_S until `stop`; sends "ready"
    after the first answer, then [(start, seconds, ok)] on monotonic clock time."""
    samples: list[tuple[float, float, bool]] = []
    with httpx.Client(base_url=base, timeout=POLL_TIMEOUT_S) as client:
        while not stop.is_set():
            start = time.monotonic()
            try:
                ok = client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            elapsed = time.monotonic() - start
            if not samples:
                out.send("ready")
            samples.append((start, elapsed, ok))
            time.sleep(max(0.0, POLL_EVERY_S - elapsed))
    out.send(samples)


@dataclass
class Watch:
    """/healthz latencies and server memory around one attack."""

    idle: list[float] = field(default_factory=list)  # ms, polls that ended before the attack
    during: list[float] = field(default_factory=list)  # ms, polls started during the attack
    failed: int = 0
    rss_rest: int | None = None
    hwm_rest: int | None = None
    rss_max: int = 0
    peak: int | None = None
    reset: bool = False


@contextmanager
def watching(server: Server) -> Iterator[Watch]:
    """Idle /healthz baseline for IDLE_S, then the body of the `with` is the attack, with
    /healthz polled and VmRSS sampled throughout."""
    watch = Watch()
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    poller = context.Process(target=_poll, args=(server.base, stop, sender), daemon=True)
    poller.start()
    if not receiver.poll(STARTUP_S):
        raise SystemExit("the /healthz poller did not start")
    receiver.recv()
    idle_from = time.monotonic()
    time.sleep(IDLE_S)
    watch.rss_rest = server.memory_kib("VmRSS")
    watch.hwm_rest = server.memory_kib("VmHWM")
    watch.reset = server.reset_peak()
    sampling = threading.Event()
    sampler = threading.Thread(target=_sample, args=(server, watch, sampling), daemon=True)
    sampler.start()
    attack_from = time.monotonic()
    try:
        yield watch
    finally:
        attack_to = time.monotonic()
        sampling.set()
        sampler.join(5)
        watch.peak = server.memory_kib("VmHWM")
        time.sleep(0.5)
        stop.set()
        samples: list[tuple[float, float, bool]] = []
        if receiver.poll(POLL_TIMEOUT_S + 10):
            samples = receiver.recv()
        poller.join(5)
        if poller.is_alive():
            poller.terminate()
        _classify(watch, samples, idle_from, attack_from, attack_to)


def _sample(server: Server, watch: Watch, done: threading.Event) -> None:
    while not done.is_set():
        rss = server.memory_kib("VmRSS")
        if rss is None:
            return
        watch.rss_max = max(watch.rss_max, rss)
        done.wait(POLL_EVERY_S)


def _classify(
    watch: Watch,
    samples: list[tuple[float, float, bool]],
    idle_from: float,
    attack_from: float,
    attack_to: float,
) -> None:
    for start, seconds, ok in samples:
        if idle_from <= start and start + seconds < attack_from:
            watch.idle.append(seconds * 1000)
        elif attack_from <= start < attack_to:
            watch.during.append(seconds * 1000)
            watch.failed += not ok


def _latencies(values: list[float]) -> str:
    if not values:
        return "no polls"
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        f"p50 {statistics.median(ordered):8.1f} ms   p90 {p90:8.1f} ms   "
        f"worst {ordered[-1]:8.1f} ms   ({len(ordered)} polls)"
    )


def _mib(kib: int | None) -> str:
    return "?" if kib is None else f"{kib / 1024:,.0f} MiB"


def report_watch(watch: Watch) -> None:
    print(f"  reference /healthz idle    {_latencies(watch.idle)}")
    failed = f", {watch.failed} failed" if watch.failed else ""
    print(f"  /healthz during the attack {_latencies(watch.during)}{failed}")
    print(
        f"  reference server RSS at rest {_mib(watch.rss_rest)} "
        f"(peak since start {_mib(watch.hwm_rest)})"
    )
    if watch.reset and watch.peak is not None and watch.rss_rest is not None:
        print(
            f"  server peak RSS during the attack {_mib(watch.peak)} "
            f"(+{_mib(watch.peak - watch.rss_rest)} over rest; VmHWM reset when it began)"
        )
    else:
        print(
            f"  server peak RSS {_mib(watch.peak)} (VmHWM since start; not reset), "
            f"highest VmRSS sampled during the attack {_mib(watch.rss_max)}"
        )


def reference_evaluation(server: Server, token: str) -> None:
    small = send(server.base, _compact({"features": {}}), token)
    print(f'  reference POST {EVALUATIONS} {{"features": {{}}}} with the token: {small.line()}')


def report_log(server: Server, since: int) -> None:
    text = server.log.read_bytes()[since:].decode(errors="replace")
    tracebacks = sum(
        line.startswith("Traceback (most recent call last)") for line in text.split("\n")
    )
    print(f"  server log during the case: {len(text.encode()):,} bytes, {tracebacks} traceback(s)")


# --- the cases ------------------------------------------------------------------------------


def case_amplification(tree: Tree, copies: int) -> None:
    body = amplification_body()
    label = "one request" if copies == 1 else f"{copies} requests at once"
    print(
        f'[a{copies}] amplification, {label}: {{"features": {{}}, "rulesets": [{IDS:,} x "x"]}} '
        f"({len(body):,} bytes) with an evaluate token"
    )
    with serving(tree, f"a{copies}") as server:
        reference_evaluation(server, tree.token)
        logged = server.log_bytes()
        with watching(server) as watch, ThreadPoolExecutor(copies) as pool:
            outcomes = list(pool.map(lambda _: send(server.base, body, tree.token), range(copies)))
        for i, outcome in enumerate(outcomes, 1):
            print(f"  request {i}: {outcome.line()}")
        report_watch(watch)
        report_log(server, logged)


def case_unknown_keys(tree: Tree) -> None:
    body = unknown_keys_body()
    print(
        f"[b] {KEYS:,} unknown feature keys in one body ({len(body):,} bytes) with an "
        "evaluate token"
    )
    with serving(tree, "b") as server:
        reference_evaluation(server, tree.token)
        logged = server.log_bytes()
        with watching(server) as watch:
            outcome = send(server.base, body, tree.token)
        print(f"  request: {outcome.line()}")
        report_watch(watch)
        report_log(server, logged)


def _anonymous_sender(base: str, body: bytes, until: float) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < until:
            outcomes.append(send(base, body, None, client))
    return outcomes


def case_anonymous(tree: Tree, seconds: float) -> None:
    body = costly_body()
    print(
        f"[c] anonymous bodies: {SENDERS} concurrent senders of {len(body):,}-byte JSON bodies "
        f"([[],[],...], {EMPTY_ARRAYS:,} empty arrays) without a token to POST {EVALUATIONS} "
        f"for {seconds:.0f} s"
    )
    with serving(tree, "c") as server:
        reference_evaluation(server, tree.token)
        logged = server.log_bytes()
        with watching(server) as watch, ThreadPoolExecutor(SENDERS) as pool:
            until = time.monotonic() + seconds
            futures = [
                pool.submit(_anonymous_sender, server.base, body, until) for _ in range(SENDERS)
            ]
            outcomes = [o for future in futures for o in future.result()]
        statuses = Counter(o.label() for o in outcomes)
        times = [o.seconds for o in outcomes]
        mean = statistics.fmean(times) if times else float("nan")
        worst = max(times, default=float("nan"))
        print(
            f"  refusals: {len(outcomes)} requests, statuses {dict(statuses)}; "
            f"mean {mean * 1000:.0f} ms per refusal, worst {worst * 1000:.0f} ms"
        )
        heads = {o.head for o in outcomes if o.head}
        for head in sorted(heads)[:3]:
            print(f"  an answer begins {head.decode(errors='replace')!r}")
        report_watch(watch)
        report_log(server, logged)


def case_deep(tree: Tree) -> None:
    body = deep_body()
    print(f"[d] {DEPTH:,} nested '[' ({len(body):,} bytes) without a token")
    with serving(tree, "d") as server:
        reference_evaluation(server, tree.token)
        logged = server.log_bytes()
        outcome = send(server.base, body, None)
        time.sleep(1.0)  # let the server finish logging
        reset = outcome.error is not None and any(
            word in outcome.error
            for word in ("RemoteProtocolError", "ReadError", "reset", "disconnected")
        )
        print(f"  request: {outcome.line()}")
        print(f"  connection reset: {'yes' if reset else 'no'}")
        alive = server.process.poll() is None
        print(
            f"  server still answering afterwards: {'yes' if alive and _healthy(server) else 'no'}"
        )
        report_log(server, logged)


def _healthy(server: Server) -> bool:
    try:
        return httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def tracebacks(logs: list[Path]) -> tuple[int, int]:
    """(traceback lines, bytes) over the given logs."""
    lines = size = 0
    for log in logs:
        if log.exists():
            text = log.read_text(errors="replace")
            size += len(text.encode())
            lines += sum(
                line.startswith("Traceback (most recent call last)") for line in text.split("\n")
            )
    return lines, size


def _run(name: str, case: Callable[[], None]) -> None:
    """One case; a failure of the harness itself is printed, and the run goes on."""
    started = time.monotonic()
    try:
        case()
    except (OSError, RuntimeError, subprocess.SubprocessError, SystemExit) as exc:
        print(f"  !! case {name} could not run: {type(exc).__name__}: {exc}")
    print(f"  (case {name}: {time.monotonic() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=CHECKOUT, help="tree whose `app` to serve")
    parser.add_argument("--seconds", type=float, default=10.0, help="case c's duration")
    args = parser.parse_args()
    root: Path = args.root.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as scratch:
        tree = Tree(root, Path(scratch), f"sqlite:///{Path(scratch) / 'eligo.db'}")
        print(tree.describe())
        print(
            f"SQLite, authentication on, log level warning; python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        tree.prepare()
        _run("a1", lambda: case_amplification(tree, 1))
        _run("a2", lambda: case_amplification(tree, 2))
        _run("b", lambda: case_unknown_keys(tree))
        _run("c", lambda: case_anonymous(tree, args.seconds))
        _run("d", lambda: case_deep(tree))
        lines, size = tracebacks(tree.logs)
        print(
            f"traceback lines in the log: {lines} (all {len(tree.logs)} servers of this run, "
            f"{size:,} bytes of log in all)"
        )


if __name__ == "__main__":
    main()
