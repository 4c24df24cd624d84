"""Eligo opened from the EHR (SMART App Launch 2.x, EHR launch): start the authorisation for
an allow-listed issuer, and finish it by reading the patient's record from that issuer's FHIR
server with the token it gives, as one Bundle the ordinary FHIR mapping reads.

The clinician is the one signed in to Eligo (the route makes sure of that before starting):
the launch is bound to their user name, so a callback can only be finished by whoever
started it. The record is read with exactly the searches the CDS service prefetches
(app.fhir.queries), so a launch and a CDS call on the same chart see the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from app.cds.gather import fetch_record
from app.engine.model import RuleBase
from app.errors import EligoError
from app.fhir import smart
from app.fhir.client import FhirServer
from app.fhir.queries import searches
from app.settings import Settings, SmartClient

CALLBACK = "/smart/callback"


@dataclass(frozen=True, slots=True)
class Started:
    url: str  # the authorisation endpoint, with the request
    sealed: str  # the launch's state, for the cookie


def scope(rules: RuleBase, settings: Settings) -> str:
    """ELIGO_SMART_SCOPE, else `launch` and read/search of exactly the resource types the
    searches read (SMART 2 `.rs`): no identity scopes, as the clinician signs in to Eligo."""
    if settings.smart_scope:
        return settings.smart_scope
    kinds = sorted({s.query.split("?")[0].split("/")[0] for s in searches(rules.features)})
    if any("_include=" in s.query for s in searches(rules.features)):
        kinds = sorted({*kinds, "Medication"})
    return " ".join(["launch", *(f"patient/{kind}.rs" for kind in kinds)])


def issuer(settings: Settings, iss: str) -> tuple[str, SmartClient, str]:
    """The allow-listed issuer, its registration and client id; refused before any request."""
    if not settings.smart_issuers:
        raise smart.LaunchRefused(
            "SMART launch not configured",
            "Eligo is not set up to be opened from an EHR (ELIGO_SMART_ISSUERS is empty).",
            404,
        )
    key = smart.allowed(iss, settings.smart_issuers) if iss else None
    if key is None:
        raise smart.LaunchRefused(
            "EHR not allowed",
            f"Eligo may not be opened from the EHR at {iss[:200]!r}: it is not one of the "
            "issuers in ELIGO_SMART_ISSUERS. Nothing was fetched from it.",
        )
    registration = settings.smart_issuers[key]
    client = smart.client_id(registration, settings.smart_client_id)
    if client is None:  # refused at start-up too (Settings.refusals)
        raise smart.LaunchRefused("SMART launch not configured", "No client id for this EHR.", 500)
    return smart.normal_issuer(key), registration, client


def start(
    http: httpx.Client,
    settings: Settings,
    rules: RuleBase,
    *,
    iss: str,
    launch_token: str,
    base_url: str,
    clinician: str | None,
    now: int,
) -> Started:
    allowed, _, client = issuer(settings, iss)
    if not launch_token:
        raise smart.LaunchRefused(
            "Launch refused", "The launch URL has no `launch` parameter: open Eligo from the EHR."
        )
    config = smart.discover(http, allowed)
    launch = smart.new_launch(allowed, config, clinician, now)
    url = smart.authorize_url(
        config,
        launch,
        client=client,
        redirect_uri=base_url + CALLBACK,
        launch_token=launch_token,
        scope=scope(rules, settings),
    )
    return Started(url, smart.seal(launch, smart.state_key(settings.pseudonym_secret())))


def resume(
    settings: Settings, sealed: str | None, state: str, clinician: str | None, now: int
) -> smart.Launch:
    """The launch a callback finishes: sealed by us, fresh, with the state the authorisation
    server sent back, and started by the clinician now signed in."""
    launch = smart.unseal(sealed, state, smart.state_key(settings.pseudonym_secret()), now)
    if launch.clinician != clinician:
        raise smart.LaunchRefused(
            "Launch refused",
            "This launch was started by another Eligo user in this browser. Open Eligo from "
            "the EHR again.",
            403,
        )
    return launch


def finish(
    http: httpx.Client,
    settings: Settings,
    rules: RuleBase,
    launch: smart.Launch,
    *,
    code: str,
    base_url: str,
) -> dict[str, Any]:
    """The patient's record as a FHIR Bundle."""
    _, registration, client = issuer(settings, launch.iss)  # still allowed?
    if not code:
        raise smart.LaunchRefused("Launch refused", "The EHR sent no authorisation code.")
    token = smart.exchange(
        http,
        launch,
        code=code,
        client=client,
        secret=registration.client_secret,
        redirect_uri=base_url + CALLBACK,
    )
    server = FhirServer.at(launch.iss, token.access_token)
    try:
        gathered = fetch_record(http, server, searches(rules.features), token.patient)
    except EligoError as exc:
        raise smart.LaunchRefused(
            "Record not readable",
            f"The patient's record could not be read from the EHR's FHIR server: {exc.detail}. "
            "Nothing was evaluated.",
            502,
        ) from None
    return gathered.bundle
