"""uvicorn's command line with Kludex/uvicorn#3149 patched out, for benchmarks with workers.

    .venv/bin/python -m benchmarks.uvicorn_nodelay APP [uvicorn options...]

With `--workers N` (N > 1) uvicorn's supervisor binds the listening socket itself
(`Config.bind_socket`) with the protocol number left at 0; accepted connections inherit it,
and asyncio turns TCP_NODELAY on only for sockets that say IPPROTO_TCP. Nagle's algorithm then
holds the second write of every answer (uvicorn's h11 protocol writes the head and the body
separately) until the client's delayed ACK, about 40 ms on Linux: one worker answers in
milliseconds, two in 45 or more. Here the bound socket is re-made with IPPROTO_TCP (the same
file descriptor), as uvicorn's pending fix does. Only benchmarks/bench_http_floor.py's
`--patch-nodelay` uses it, for the floor and Eligo alike.
"""

from __future__ import annotations

import socket

import uvicorn.config
from uvicorn.main import main

_bind_socket = uvicorn.config.Config.bind_socket


def _bind_tcp_socket(config: uvicorn.config.Config) -> socket.socket:
    sock = _bind_socket(config)
    if sock.family not in {socket.AF_INET, socket.AF_INET6}:
        return sock
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


uvicorn.config.Config.bind_socket = _bind_tcp_socket  # type: ignore[method-assign, assignment]

if __name__ == "__main__":
    main()
