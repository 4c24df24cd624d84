"""A small FHIR R4 server of the tests' own, on loopback: it serves patient bundles (the
fixtures) through the REST reads and searches the CDS service runs, and records every request.

Searches implement what Eligo's queries use: `patient`, `code` (system|code, comma = or),
`status`, `_sort=-date`, `_count` and `_include=<Type>:medication`, with `next` links for
paging. Like a real server that
imported a transaction bundle, references come back as `Type/id`. A test can make it fail:
answer 500 a number of times, refuse tokens, or stall.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Behaviour:
    token: str | None = None  # the bearer token required, if any
    fail_times: int = 0  # answer 500 this many times first
    delay: float = 0.0  # seconds before each answer
    page_size: int = 50


@dataclass
class FhirStore:
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by type
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, auth)
    behaviour: Behaviour = field(default_factory=Behaviour)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, bundle: dict[str, Any]) -> None:
        """Import a bundle's resources, rewriting `urn:uuid:` references to `Type/id`."""
        names = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle["entry"]
            if "fullUrl" in e
        }
        for entry in bundle["entry"]:
            resource = json.loads(json.dumps(entry["resource"]))
            _rewrite(resource, names)
            self.resources.setdefault(resource["resourceType"], []).append(resource)


def _rewrite(value: Any, names: dict[str, str]) -> None:
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference in names:
            value["reference"] = names[reference]
        for item in value.values():
            _rewrite(item, names)
    elif isinstance(value, list):
        for item in value:
            _rewrite(item, names)


def _codes(resource: dict[str, Any]) -> set[str]:
    codings = (resource.get("code") or resource.get("medicationCodeableConcept") or {}).get(
        "coding", []
    )
    return {f"{c.get('system')}|{c.get('code')}" for c in codings}


def _date(resource: dict[str, Any]) -> str:
    for key in ("effectiveDateTime", "onsetDateTime", "recordedDate", "authoredOn", "issued"):
        if key in resource:
            return str(resource[key])
    period = resource.get("effectivePeriod") or {}
    return str(period.get("start", ""))


def _matches(resource: dict[str, Any], params: dict[str, list[str]]) -> bool:
    if "patient" in params:
        subject = (resource.get("subject") or resource.get("patient") or {}).get("reference")
        if subject != f"Patient/{params['patient'][0]}":
            return False
    if "code" in params and not _codes(resource) & set(params["code"][0].split(",")):
        return False
    return "status" not in params or resource.get("status") in params["status"][0].split(",")


def search(store: FhirStore, kind: str, params: dict[str, list[str]]) -> list[dict[str, Any]]:
    found = [r for r in store.resources.get(kind, []) if _matches(r, params)]
    if params.get("_sort") == ["-date"]:
        found.sort(key=_date, reverse=True)
    if "_count" in params:
        found = found[: int(params["_count"][0])]
    return found


def included(
    store: FhirStore, page: list[dict[str, Any]], params: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """`_include=…:medication`: the Medications the page's records refer to."""
    if not any(v.endswith(":medication") for v in params.get("_include", [])):
        return []
    wanted = {r["medicationReference"]["reference"] for r in page if "medicationReference" in r}
    return [m for m in store.resources.get("Medication", []) if f"Medication/{m['id']}" in wanted]


class _Handler(BaseHTTPRequestHandler):
    store: FhirStore  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        store = self.store
        with store.lock:
            store.requests.append((self.path, self.headers.get("Authorization")))
            behaviour = store.behaviour
            failing = behaviour.fail_times > 0
            behaviour.fail_times -= failing
        time.sleep(behaviour.delay)
        if failing:
            self._send(500, {"resourceType": "OperationOutcome"})
        elif behaviour.token and self.headers.get("Authorization") != f"Bearer {behaviour.token}":
            self._send(401, {"resourceType": "OperationOutcome"})
        else:
            self._answer()

    def _answer(self) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p][1:]  # after the /fhir base
        params = parse_qs(url.query)
        if len(parts) == 2:
            found = [r for r in self.store.resources.get(parts[0], []) if r["id"] == parts[1]]
            self._send(200, found[0]) if found else self._send(404, {})
            return
        matches = search(self.store, parts[0], params)
        offset = int(params.pop("_offset", ["0"])[0])
        size = self.store.behaviour.page_size
        page = matches[offset : offset + size]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in page]
            + [{"resource": r, "search": {"mode": "include"}} for r in self._included(page)],
        }
        if offset + size < len(matches):
            query = "&".join(f"{k}={v[0]}" for k, v in params.items())
            next_url = f"{self.server_base()}{parts[0]}?{query}&_offset={offset + size}"
            bundle["link"] = [{"relation": "next", "url": next_url}]
        self._send(200, bundle)

    def _included(self, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return included(self.store, page, parse_qs(urlsplit(self.path).query))

    def server_base(self) -> str:
        assert isinstance(self.server, ThreadingHTTPServer)
        return f"http://127.0.0.1:{self.server.server_port}/fhir/"

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops the connections of a client fetching 8
    # searches at once, and the kernel's 1 s SYN retry then shows up as latency.
    request_queue_size = 128
    daemon_threads = True


@contextmanager
def fhir_server(store: FhirStore) -> Iterator[str]:
    """Serve `store` on a free loopback port; yields the base URL (ending in `/fhir`)."""
    handler = type("Handler", (_Handler,), {"store": store})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()
        server.server_close()
