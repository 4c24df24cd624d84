"""What a request holds in PostgreSQL while its body arrives, watched from PostgreSQL's side
(pg_stat_activity) on a real server: nothing. The credential check is answered from the
verified clients or in a short session of its own (app.api.deps), the request's transaction
begins only when its work does, and a sender who stalls gets 408 after
`ELIGO_BODY_TIMEOUT_SECONDS` (app.api.body).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.security import Scope
from tests.databases import postgres_database
from tests.e2e.helpers import Server, eligo_process, run_eligo

pytestmark = [pytest.mark.e2e, pytest.mark.one_pass]

TIMEOUT_SECONDS = 2
GRACE_SECONDS = 0.5
BODY = {"features": {"age_years": 40}, "rulesets": ["hsct-ssc-astis"]}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Server, str, str]]:
    with postgres_database() as url:
        env = {"ELIGO_DATABASE_URL": url, "ELIGO_AUTH": "on"}
        assert run_eligo("db", "upgrade", env=env).returncode == 0
        scopes = ("--scope", Scope.EVALUATE.value, "--scope", Scope.SCREEN.value)
        created = run_eligo("clients", "create", "held", *scopes, env=env)
        token = created.stdout.strip().splitlines()[-1]
        env["ELIGO_BODY_TIMEOUT_SECONDS"] = str(TIMEOUT_SECONDS)
        with eligo_process(env) as server:
            yield server, url, token


def _open_transactions(url: str) -> int:
    """Connections to the server's database idle inside a transaction whose last statement
    read the API clients: a credential check's. (The screening worker's polls, also idle in
    a transaction for a moment between their statements, are not what this is about.)"""
    database = make_url(url).database
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            query = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                "AND state LIKE 'idle in transaction%' AND query LIKE '%api_clients%' "
                "AND pid <> pg_backend_pid()"
            )
            return int(connection.execute(query, {"db": database}).scalar_one())
    finally:
        engine.dispose()


@contextmanager
def _stalled(server: Server, head: str, first: bytes) -> Iterator[socket.socket]:
    """A request whose head and first body bytes are sent, and the rest never."""
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as connection:
        connection.sendall(head.encode() + first)
        yield connection


def _answer(connection: socket.socket) -> bytes:
    """The whole response: the head, then as many body bytes as it announces (on a loaded
    machine the body can arrive in a later segment than the head)."""
    answer = b""
    while not _complete(answer):
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def _complete(answer: bytes) -> bool:
    head, blank, body = answer.partition(b"\r\n\r\n")
    if not blank:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is None or len(body) >= int(length.group(1))


def _evaluate(server: Server, token: str) -> httpx.Response:
    return httpx.post(
        f"{server.base}/v1/evaluations?view=summary",
        json=BODY,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _never(condition: Callable[[], bool], seconds: float) -> bool:
    """`condition` stays false for `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("verified", [False, True], ids=["first request", "verified client"])
def test_a_body_that_stalls_holds_no_transaction_and_gets_408(
    served: tuple[Server, str, str], verified: bool
) -> None:
    server, url, token = served
    if verified:  # the credential is then known without the database
        assert _evaluate(server, token).status_code == 200
    head = (
        "POST /v1/evaluations HTTP/1.1\r\nHost: eligo\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 200\r\n\r\n"
    )
    started = time.monotonic()
    with _stalled(server, head, b'{"features": {') as connection:
        # A grace for the credential check itself (its own short transaction, a moment idle
        # between its SELECT and its ROLLBACK on a loaded machine); then nothing is held.
        time.sleep(GRACE_SECONDS)
        assert _never(lambda: _open_transactions(url) > 0, TIMEOUT_SECONDS / 3)
        answer = _answer(connection)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert b"ELIGO_BODY_TIMEOUT_SECONDS" in answer
    assert time.monotonic() - started >= TIMEOUT_SECONDS - 0.5


def test_a_large_upload_arrives_with_no_transaction_open(
    served: tuple[Server, str, str],
) -> None:
    server, url, token = served
    head = (
        "POST /v1/screenings HTTP/1.1\r\nHost: eligo\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {1024 * 1024}\r\n\r\n"
    )
    first = b'--b\r\nContent-Disposition: form-data; name="file"; filename="r.csv"\r\n\r\nage\n'
    with _stalled(server, head, first):
        time.sleep(GRACE_SECONDS)
        assert _never(lambda: _open_transactions(url) > 0, 1)
        # Meanwhile others are answered, and recorded.
        answer = _evaluate(server, token)
        assert answer.status_code == 200, answer.text
