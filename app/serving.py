"""`eligo serve` with several worker processes: how many, and what keeps them consistent.

One worker is uvicorn serving the app directly. With N > 1, uvicorn's supervisor binds the
socket and starts N worker processes, each of which builds the app from the environment
(`worker_app`). The supervisor builds it once first and throws it away: the rules are checked
and the schema migrated (in development) once, before any worker starts, so an invalid rule
set or an unsafe configuration refuses the start with its diagnostics just as with one
process, and N workers never race each other through a migration.

What each worker holds for itself, and why the workers still agree:
- The rules: every worker polls the same directory and reloads on its own. SIGHUP to the
  supervisor is passed on to each worker (uvicorn's own answer, replacing every worker, would
  interrupt their screening jobs, and a replacement that finds the rules invalid cannot keep
  serving the old ones), and `POST /v1/rulesets/reload`, which reaches one worker, asks the
  supervisor to do the same, so the others follow within a second even with polling off.
- Everything that must hold across requests lives in the database, which all workers share:
  the audit trail, API clients, web sessions and sign-in throttles, the CDS token ids already
  used (`DatabaseReplayGuard`), and the screening queue (claimed by one conditional UPDATE,
  fenced by the attempt; app/db/screenings.py).
- The rest is caches: rule objects' JSON, the set of rule set versions known to be stored
  (insert-or-ignore, so two workers storing one version is harmless), fetched JWK Sets.

Screening jobs: each worker runs ELIGO_SCREENING_WORKERS of them at a time, so N workers run
N times as many.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket as sockets
import sys
from socket import AF_INET6, IPPROTO_TCP, socket
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors.multiprocess import Multiprocess

from app.engine.diagnostics import RuleLoadError
from app.errors import StartupRefused
from app.main import create_app
from app.settings import Environment, Settings

log = logging.getLogger("eligo.serve")

# The production default stops here: each worker holds up to 20 PostgreSQL connections (a pool
# of 10 and 10 more at peak), and PostgreSQL allows 100 by default; on SQLite, one writer at a
# time leaves little for more processes to gain.
MAX_DEFAULT_WORKERS = 4
# Set by the supervisor for its workers: the process that passes a reload on to all of them.
SUPERVISOR_PID = "ELIGO_SUPERVISOR_PID"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# With several workers each line says whose it is (uvicorn's own lines name the process too).
WORKERS_LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def worker_count(settings: Settings) -> int:
    """ELIGO_WORKERS, else one in development (one process to debug, and the quick start's
    SQLite file) and one per usable CPU in production, at most MAX_DEFAULT_WORKERS."""
    if settings.workers is not None:
        return settings.workers
    if settings.env is Environment.DEVELOPMENT:
        return 1
    return max(1, min(_usable_cpus(), MAX_DEFAULT_WORKERS))


def _usable_cpus() -> int:
    """The CPUs this process may run on (a container's or `taskset`'s), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configure_logging(settings: Settings, workers: int) -> None:
    """Request bodies are never logged: they carry patient data."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=WORKERS_LOG_FORMAT if workers > 1 else LOG_FORMAT,
        force=True,
    )


class CannotBind(Exception):
    """The address `eligo serve` was asked for cannot be had; the message says what to do."""


class _NotHere(CannotBind):
    """The address is not one of this machine's (EADDRNOTAVAIL)."""


def bind(host: str, port: int) -> list[socket]:
    """The listening sockets' bindings, made here rather than by uvicorn: it reports a busy
    port as a logged `[Errno 98]` (and, with workers, exits from inside its own code), where a
    user needs one line saying what to do. Every address the host resolves to is bound
    (`localhost`: 127.0.0.1 and ::1, as uvicorn would), each socket saying it is TCP: uvicorn
    binds with protocol 0, accepted connections inherit that, and asyncio turns on TCP_NODELAY
    only for sockets that say IPPROTO_TCP. With Nagle's algorithm left on, the second write of
    every answer (head, then body) waits for the client's delayed ACK, ~40 ms
    (Kludex/uvicorn#3149; measured by benchmarks/bench_http_floor: a median of 8.6 ms with one
    worker, 51 ms with two)."""
    try:
        found = sockets.getaddrinfo(
            host, port, type=sockets.SOCK_STREAM, proto=IPPROTO_TCP, flags=sockets.AI_PASSIVE
        )
    except sockets.gaierror as exc:
        raise CannotBind(f"cannot bind to {host!r}: {exc.strerror}; pass --host") from None
    bound: list[socket] = []
    missing: CannotBind | None = None
    for family, kind, proto, _, address in dict.fromkeys(found):
        try:
            bound.append(_bind_one(family, kind, proto, address, port))
        except _NotHere as exc:  # e.g. ::1 where IPv6 is off: the others serve, as in asyncio
            missing = exc
        except CannotBind:
            for sock in bound:
                sock.close()
            raise
    if not bound:
        raise missing or CannotBind(f"{host!r} resolves to no address to bind: pass --host")
    return bound


def _bind_one(family: int, kind: int, proto: int, address: tuple[Any, ...], port: int) -> socket:
    sock = socket(family, kind, proto)
    try:
        sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_REUSEADDR, 1)  # restart over TIME_WAIT
        if family == AF_INET6:  # ::1 beside 127.0.0.1, each on its own socket, as asyncio does
            sock.setsockopt(sockets.IPPROTO_IPV6, sockets.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        refusal = _NotHere if exc.errno == errno.EADDRNOTAVAIL else CannotBind
        raise refusal(_why(exc, str(address[0]), port)) from None
    sock.set_inheritable(True)  # the workers' processes serve on it
    return sock


def _why(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is in use on {host}: stop the other server or pass --port "
            f"(e.g. --port {port + 1 if port < 65535 else 8000}; ELIGO_PORT sets the default)"
        )
    if exc.errno == errno.EACCES:
        return f"not allowed to bind to port {port} on {host}: pass --port 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: pass --host"
    return f"cannot bind to {host} port {port}: {exc.strerror}"


def serve(app: FastAPI, settings: Settings, bound: list[socket]) -> None:
    """One process serving `app` on the sockets bound by `bind`."""
    config = uvicorn.Config(app, log_level=settings.log_level, proxy_headers=False)
    server = uvicorn.Server(config)
    log.info("serving on %s (Ctrl+C to stop)", _urls(bound))
    try:
        server.run(sockets=bound)
    except KeyboardInterrupt:
        pass
    finally:
        for sock in bound:
            sock.close()
    if not server.started:  # uvicorn said why (the lifespan failed)
        sys.exit(1)


def _urls(bound: list[socket]) -> str:
    urls = []
    for sock in bound:
        host, port = sock.getsockname()[:2]
        urls.append(
            f"http://[{host}]:{port}" if sock.family == AF_INET6 else f"http://{host}:{port}"
        )
    return ", ".join(urls)


def serve_workers(settings: Settings, host: str, bound: list[socket], workers: int) -> None:
    """Serve with `workers` processes on the sockets bound by `bind`, the app already built
    once in this one (so the configuration and rules are known to be good and the schema
    current)."""
    port = bound[0].getsockname()[1]
    # The workers read their settings from the environment: give them the address chosen here.
    os.environ["ELIGO_HOST"] = host
    os.environ["ELIGO_WORKERS"] = str(workers)
    os.environ[SUPERVISOR_PID] = str(os.getpid())
    config = uvicorn.Config(
        "app.serving:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        proxy_headers=False,
    )
    log.info("serving on %s with %d workers (Ctrl+C to stop)", _urls(bound), workers)
    try:
        Supervisor(config, sockets=bound).run()
    except KeyboardInterrupt:
        pass
    finally:
        for sock in bound:
            sock.close()


def worker_app() -> FastAPI:
    """The app in one worker process (uvicorn's factory), built from the environment the
    supervisor set. Rules that turned invalid since the supervisor checked them (a worker
    replaced after a crash) end this worker with the diagnostics; uvicorn starts it again,
    and the other workers keep serving meanwhile."""
    settings = Settings()
    configure_logging(settings, worker_count(settings))
    try:
        app = create_app(settings)
    except RuleLoadError as exc:
        log.error("worker not started: the rules are invalid\n%s", exc.report())
        sys.exit(1)
    except StartupRefused as exc:
        log.error("worker not started: %s", "; ".join(exc.reasons))
        sys.exit(1)
    app.state.reloader.others = _ask_supervisor
    return app


def _ask_supervisor() -> None:
    """SIGHUP to the supervisor, which passes it on to every worker. Only to the process that
    started this one as a worker: never to whatever else a parent might be."""
    supervisor = os.environ.get(SUPERVISOR_PID)
    if supervisor is not None and int(supervisor) == os.getppid():
        os.kill(int(supervisor), signal.SIGHUP)


class Supervisor(Multiprocess):
    """uvicorn's supervisor (starts the workers, replaces one that dies, stops them all on
    SIGTERM or SIGINT), except that SIGHUP reloads the rules in every worker, as it does in
    one process, rather than replacing the workers. A worker still starting is sent it once
    it serves (before, SIGHUP's default action would end it, and its rules may predate the
    change); one started after the signal loads the rules afresh anyway."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.owed: set[int] = set()  # pids of the workers still to be sent SIGHUP

    def handle_hup(self) -> None:
        self.owed = {pid for pid in (p.pid for p in self.processes) if pid is not None}
        log.info("SIGHUP: reloading the rules in %d workers", len(self.owed))
        self.pass_on_hup()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self.pass_on_hup()

    def pass_on_hup(self) -> None:
        if not self.owed:
            return
        for process in self.processes:
            pid = process.pid
            if pid is not None and pid in self.owed and process.is_ready(timeout=1):
                os.kill(pid, signal.SIGHUP)
                self.owed.discard(pid)
        # A worker replaced meanwhile is gone; its replacement loaded the rules when it started.
        self.owed &= {p.pid for p in self.processes}
