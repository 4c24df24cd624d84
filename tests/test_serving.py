"""How many worker processes `eligo serve` starts when not told (app/serving.py)."""

from __future__ import annotations

import os
import socket as sockets

import pytest
from pydantic import ValidationError

from app.serving import MAX_DEFAULT_WORKERS, tcp_socket, worker_count
from app.settings import Environment, Settings

pytestmark = pytest.mark.one_pass


def test_development_serves_from_one_process() -> None:
    assert worker_count(Settings(env=Environment.DEVELOPMENT)) == 1


def test_production_uses_the_cpus_this_process_may_run_on_up_to_a_cap() -> None:
    usable = len(os.sched_getaffinity(0))
    count = worker_count(Settings(env=Environment.PRODUCTION))
    assert count == min(usable, MAX_DEFAULT_WORKERS)
    assert 1 <= count <= MAX_DEFAULT_WORKERS


@pytest.mark.parametrize("env", list(Environment))
def test_a_number_given_is_used_as_it_is(env: Environment) -> None:
    assert worker_count(Settings(env=env, workers=6)) == 6


def test_zero_workers_is_refused() -> None:
    with pytest.raises(ValidationError, match="workers"):
        Settings(workers=0)


def test_the_shared_socket_says_tcp_so_answers_are_not_held_by_nagle() -> None:
    """uvicorn binds with protocol 0; asyncio sets TCP_NODELAY only on sockets that say
    IPPROTO_TCP, so without this every answer of a worker waits for a delayed ACK."""

    bound = sockets.socket(sockets.AF_INET, sockets.SOCK_STREAM, 0)
    bound.bind(("127.0.0.1", 0))
    address = bound.getsockname()
    made = tcp_socket(bound)
    try:
        assert made.proto == sockets.IPPROTO_TCP
        assert made.getsockname() == address
        made.listen()
        with sockets.create_connection(address) as client:
            accepted, _ = made.accept()
            with accepted:
                assert accepted.proto == sockets.IPPROTO_TCP
                assert client.getpeername() == address
    finally:
        made.close()
