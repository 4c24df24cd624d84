"""The FHIR REST client against real loopback servers: a next link off the server is refused,
a stalled server times out, and a body that is not FHIR is said to be so."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app.fhir.client import FhirServer, FhirUnavailable, fetch


@contextmanager
def serving(body: bytes, delay: float = 0.0) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/fhir"
    finally:
        server.shutdown()
        server.server_close()


def test_a_next_link_to_another_host_is_refused() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [],
        "link": [{"relation": "next", "url": "http://169.254.169.254/latest/meta-data"}],
    }
    with (
        serving(json.dumps(bundle).encode()) as base,
        httpx.Client() as http,
        pytest.raises(FhirUnavailable, match="outside the FHIR server"),
    ):
        fetch(http, FhirServer.at(base, "t"), "Observation?patient=1")


def test_a_stalled_server_times_out_after_bounded_retries() -> None:
    with serving(b"{}", delay=0.5) as base, httpx.Client(timeout=0.1) as http:
        started = time.monotonic()
        with pytest.raises(FhirUnavailable, match="ReadTimeout after 2 attempts"):
            fetch(http, FhirServer.at(base, None), "Patient/1", retries=1)
        assert time.monotonic() - started < 2


def test_an_answer_that_is_not_fhir_is_said_so() -> None:
    with (
        serving(b"<html>login</html>") as base,
        httpx.Client() as http,
        pytest.raises(FhirUnavailable, match="not JSON"),
    ):
        fetch(http, FhirServer.at(base, None), "Patient/1")
    with (
        serving(b'{"hello": 1}') as base,
        httpx.Client() as http,
        pytest.raises(FhirUnavailable, match="not a FHIR resource"),
    ):
        fetch(http, FhirServer.at(base, None), "Patient/1")
