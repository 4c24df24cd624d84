"""Gather a patient's record for a CDS Hooks call: the prefetch first, then whatever is absent
or null fetched from the EHR's FHIR server with the token it handed over.

The result is one FHIR Bundle that the ordinary mapping reads, so a CDS call and an API call
with the same data decide alike. Everything must be about the patient in context: a resource
about someone else is refused, never silently mixed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from app.cds.schemas import HookRequest
from app.engine.inputs import InvalidInput
from app.errors import FieldError, InvalidPayload, PreconditionFailed
from app.fhir.client import FhirServer, FhirUnavailable, fetch, searchset_resources
from app.fhir.queries import Search, fill

# Searches run in parallel: an EHR's FHIR server answers each in tens of milliseconds, and
# thirty of them one after another would keep the clinician waiting.
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="eligo-fhir")
_ENTRY = re.compile(r"^fhir\.entry\[(\d+)\]\.resource")


@dataclass
class Gathered:
    bundle: dict[str, Any]
    prefetched: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # per bundle entry: where it came from

    def add(self, origin: str, resources: list[Any]) -> None:
        self.bundle["entry"] += [{"resource": r} for r in resources]
        self.origins += [origin] * len(resources)

    def located(self, exc: InvalidInput) -> InvalidInput:
        """The mapping's errors, naming the prefetch key or search the resource came from
        (`prefetch.obs-lvef_percent.value[x]`) instead of a place in a bundle the caller
        never saw."""
        return InvalidInput([replace(i, field=self._locate(i.field)) for i in exc.issues])

    def _locate(self, where: str) -> str:
        found = _ENTRY.match(where)
        if not found or int(found.group(1)) >= len(self.origins):
            return where
        return self.origins[int(found.group(1))] + where[found.end() :]


def gather(
    request: HookRequest,
    searches: Sequence[Search],
    http: httpx.Client,
    allowed_servers: Sequence[str],
) -> Gathered:
    """Raise InvalidPayload for a malformed or foreign prefetch, PreconditionFailed when the
    data the rules need cannot be had."""
    patient_id = request.context.patientId
    given = request.prefetch or {}
    gathered = Gathered({"resourceType": "Bundle", "type": "collection", "entry": []})
    resources: list[tuple[str, Any]] = []
    missing = []
    for search in searches:
        value = given.get(search.key)
        if value is None:
            missing.append(search)
            continue
        gathered.prefetched.append(search.key)
        resources += [(f"prefetch.{search.key}", r) for r in _resources_of(value, search.key)]
    if missing:
        server = _server(request, allowed_servers, [s.key for s in missing])
        resources += _fetch_all(http, server, missing, patient_id)
        gathered.fetched = [s.key for s in missing]
    return _collected(gathered, resources, patient_id)


def _collected(gathered: Gathered, resources: list[tuple[str, Any]], patient_id: str) -> Gathered:
    """Every resource, each checked to be this patient's and the Patient among them, added
    with where it came from (a prefetch key or a search)."""
    _check_patient(resources, patient_id)
    if not any(r.get("resourceType") == "Patient" for _, r in resources):
        raise PreconditionFailed(f"Patient/{patient_id} could not be read")
    for origin, resource in resources:
        gathered.add(origin, [resource])
    return gathered


def _resources_of(value: Any, key: str) -> list[Any]:
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise InvalidPayload(
            "invalid prefetch",
            [FieldError(f"prefetch.{key}", "not_a_resource", "expected a FHIR resource or null")],
        )
    if value["resourceType"] != "Bundle":
        return [value]
    return searchset_resources(value)


def _server(request: HookRequest, allowed: Sequence[str], keys: list[str]) -> FhirServer:
    wanted = ", ".join(keys)
    if request.fhirServer is None:
        raise PreconditionFailed(
            f"prefetch lacks {wanted} and no fhirServer was given to fetch it from: send each "
            "key with what its template in GET /cds-services returns (null for no data), or a "
            "fhirServer (one of ELIGO_CDS_FHIR_SERVERS) and fhirAuthorization"
        )
    base = request.fhirServer.rstrip("/") + "/"
    if not any(base.startswith(prefix) for prefix in allowed):
        raise PreconditionFailed(
            f"prefetch lacks {wanted}, and fhirServer {request.fhirServer} is not an allowed "
            "FHIR server (ELIGO_CDS_FHIR_SERVERS)"
        )
    token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
    return FhirServer.at(base, token)


def _fetch_all(
    http: httpx.Client, server: FhirServer, searches: list[Search], patient_id: str
) -> list[tuple[str, Any]]:
    def one(search: Search) -> list[tuple[str, Any]]:
        try:
            found = fetch(http, server, fill(search.query, patient_id))
        except FhirUnavailable as exc:
            raise PreconditionFailed(
                f"could not fetch {search.key} from fhirServer: {exc}"
            ) from None
        return [(f"fhirServer:{search.key}", r) for r in found]

    return [pair for found in _POOL.map(one, searches) for pair in found]


def _check_patient(resources: list[tuple[str, Any]], patient_id: str) -> None:
    """Every resource must be this patient's: the Patient itself, or refer to it."""
    errors = []
    expected = f"Patient/{patient_id}"
    for where, resource in resources:
        if resource.get("resourceType") == "Patient":
            if resource.get("id") != patient_id:
                errors.append(FieldError(where, "other_patient", f"not {expected}"))
            continue
        reference = _subject(resource)
        if reference is not None and not (
            reference == expected or reference.endswith("/" + expected)
        ):
            errors.append(
                FieldError(where, "other_patient", f"refers to {reference}, not {expected}")
            )
    if errors:
        raise InvalidPayload("data about another patient", errors[:20])


def _subject(resource: Mapping[str, Any]) -> str | None:
    subject = resource.get("subject") or resource.get("patient")
    if isinstance(subject, dict) and isinstance(subject.get("reference"), str):
        return str(subject["reference"])
    return None


def fetch_record(
    http: httpx.Client, server: FhirServer, searches: Sequence[Search], patient_id: str
) -> Gathered:
    """The patient's record read from their FHIR server alone, as a SMART launch has it (no
    prefetch): the same searches, the same checks that every resource is this patient's.
    Raise PreconditionFailed when it cannot be had, InvalidPayload for a foreign resource."""
    gathered = Gathered({"resourceType": "Bundle", "type": "collection", "entry": []})
    resources = _fetch_all(http, server, list(searches), patient_id)
    gathered.fetched = [s.key for s in searches]
    return _collected(gathered, resources, patient_id)
