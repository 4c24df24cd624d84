"""How many worker processes `eligo serve` starts when not told, and the sockets it binds
(app/serving.py)."""

from __future__ import annotations

import os
import socket as sockets

import pytest
from pydantic import ValidationError

from app.serving import MAX_DEFAULT_WORKERS, CannotBind, bind, worker_count
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


def test_the_sockets_say_tcp_so_answers_are_not_held_by_nagle() -> None:
    """uvicorn binds with protocol 0; asyncio sets TCP_NODELAY only on sockets that say
    IPPROTO_TCP, so without this every answer waits for a delayed ACK."""
    (made,) = bind("127.0.0.1", 0)
    address = made.getsockname()
    try:
        assert made.proto == sockets.IPPROTO_TCP
        assert made.get_inheritable()  # the workers serve on it
        made.listen()
        with sockets.create_connection(address) as client:
            accepted, _ = made.accept()
            with accepted:
                assert accepted.proto == sockets.IPPROTO_TCP
                assert client.getpeername() == address
    finally:
        made.close()


def test_a_busy_port_is_one_sentence_saying_what_to_do() -> None:
    with sockets.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(CannotBind) as refused:
            bind("127.0.0.1", port)
    assert str(refused.value) == (
        f"port {port} is in use on 127.0.0.1: stop the other server or pass --port "
        f"(e.g. --port {port + 1}; ELIGO_PORT sets the default)"
    )


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("192.0.2.1", "192.0.2.1 is not an address of this machine: pass --host"),
        ("no-such-host.invalid", "cannot bind to 'no-such-host.invalid': "),
    ],
)
def test_an_address_that_cannot_be_had_is_said_so(host: str, said: str) -> None:
    with pytest.raises(CannotBind, match="pass --host") as refused:
        bind(host, 0)
    assert str(refused.value).startswith(said)
