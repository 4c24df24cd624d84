"""A small FHIR R4 REST client: run a read or search against the EHR's FHIR server with the
bearer token it handed over, and return the resources.

Bounded everywhere, because an EHR waits for the answer: a timeout per request, a few retries
on connection errors and 5xx/429 with a short backoff, a cap on pages and on resources.
Paging follows `next` links only on the same server, so a crafted link cannot point the
service at another host. The token is sent, never logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_PAGES = 10
MAX_RESOURCES = 5000


class FhirUnavailable(Exception):
    """The data could not be had (network, auth, server error, not FHIR)."""


@dataclass(frozen=True, slots=True)
class FhirServer:
    base: str  # ends with "/"
    token: str | None

    @classmethod
    def at(cls, base: str, token: str | None) -> FhirServer:
        return cls(base if base.endswith("/") else base + "/", token)

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/fhir+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


def _get(
    http: httpx.Client,
    url: str,
    headers: dict[str, str],
    retries: int,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(0.1 * 2**attempt)
        try:
            response = http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}"
            continue
        if response.status_code in RETRYABLE:
            problem = f"HTTP {response.status_code}"
            continue
        if response.status_code == 404:
            return None  # a read of a resource that is not there: no data, not a failure
        if response.status_code != 200:
            raise FhirUnavailable(f"HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise FhirUnavailable("the answer is not JSON") from None
    raise FhirUnavailable(f"{problem} after {retries + 1} attempts")


def fetch(http: httpx.Client, server: FhirServer, query: str, retries: int = 2) -> list[Any]:
    """The resources a read or search returns (a searchset's entries, pages followed)."""
    url = urljoin(server.base, query)
    found: list[Any] = []
    for _ in range(MAX_PAGES):
        data = _get(http, url, server.headers(), retries)
        if data is None:
            return found
        if not isinstance(data, dict) or "resourceType" not in data:
            raise FhirUnavailable("the answer is not a FHIR resource")
        if data["resourceType"] != "Bundle":
            return [data]
        found += searchset_resources(data)
        if len(found) > MAX_RESOURCES:
            raise FhirUnavailable(f"more than {MAX_RESOURCES} resources")
        following = _next(data, server)
        if following is None:
            return found
        url = following
    raise FhirUnavailable(f"more than {MAX_PAGES} pages")


def searchset_resources(bundle: dict[str, Any]) -> list[Any]:
    """A search result's resources: matches and includes, not the server's OperationOutcomes."""
    return [
        e["resource"]
        for e in bundle.get("entry") or []
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and (e.get("search") or {}).get("mode") != "outcome"
    ]


def _next(bundle: dict[str, Any], server: FhirServer) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = str(link.get("url", ""))
            if not url.startswith(server.base):
                raise FhirUnavailable("a next link points outside the FHIR server")
            return url
    return None
