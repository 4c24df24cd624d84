"""Process-level helpers: the installed `eligo` command and a server on a free port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.databases import app_database

ELIGO = str(Path(sys.executable).with_name("eligo"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_eligo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ELIGO, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def eligo_process(
    env: dict[str, str] | None = None,
    log: Path | None = None,
    command: tuple[str, ...] = (ELIGO, "serve"),
    ready_seconds: float = 30,
) -> Iterator[Server]:
    """`eligo serve` as a real process on a free loopback port, its output in a file (a pipe
    nobody reads would fill up and stall the server under load). Unless `env` says otherwise
    it runs like the quick start (development, authentication off) on a fresh database."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = {"ELIGO_AUTH": "off", **(env or {})}
        if "ELIGO_DATABASE_URL" not in env:
            env["ELIGO_DATABASE_URL"] = stack.enter_context(app_database(scratch))
        handle = stack.enter_context((log or scratch / "server.log").open("wb"))
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        server = Server(f"http://127.0.0.1:{port}", process, Path(handle.name))
        try:
            _wait_healthy(server, ready_seconds)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(server: Server, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n{server.output()}"
            )
        try:
            if httpx.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not become healthy within {seconds} s")
        time.sleep(0.1)


@contextmanager
def eligo_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """`eligo serve` on a free loopback port; yields its base URL."""
    with eligo_process(env) as server:
        yield server.base
