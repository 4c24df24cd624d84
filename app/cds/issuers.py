"""The configuration side of CDS client trust: the issuers a deployment trusts (their JWK Sets)
and the host names the service answers to, as app/settings.py reads them from the environment.

Apart from app/cds/jwt.py, which verifies the tokens, so that reading the settings (every `eligo`
command that has any) does not import PyJWT, cryptography and httpx: 0.12 s of `eligo screen`.
"""

from __future__ import annotations

import re
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

JWK = dict[str, Any]


def index_jwks(jwk_set: object) -> dict[str, tuple[JWK, ...]] | None:
    """The keys of a JWK Set by kid (several keys may share one, RFC 7517 §4.5), or None if
    it is not a JWK Set. Keys without a kid cannot be chosen by a CDS client's token: skipped."""
    if not isinstance(jwk_set, dict) or not isinstance(jwk_set.get("keys"), list):
        return None
    index: dict[str, tuple[JWK, ...]] = {}
    for key in jwk_set["keys"]:
        if isinstance(key, dict) and isinstance(key.get("kid"), str):
            index[key["kid"]] = (*index.get(key["kid"], ()), key)
    return index


def _check_key_url(url: str) -> str:
    # Keys fetched over plain HTTP could be swapped by anyone on the path; loopback is for tests.
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
        return url
    raise ValueError(f"{url!r}: a JWK Set URL must be https (http only on loopback)")


class IssuerConfig(BaseModel):
    """One trusted CDS client (issuer), as configured in settings (JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jwks: dict[str, Any] | None = None  # an inline JWK Set
    jwks_url: str | None = None  # where its JWK Set is published
    jku: list[str] = []  # jku header values accepted for this issuer (exact URLs)

    @field_validator("jwks")
    @classmethod
    def _is_jwk_set(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and index_jwks(value) is None:
            raise ValueError('jwks must be a JWK Set: an object with a "keys" list')
        return value

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url_is_safe(cls, value: str | None) -> str | None:
        return None if value is None else _check_key_url(value)

    @field_validator("jku")
    @classmethod
    def _jku_are_safe(cls, value: list[str]) -> list[str]:
        return [_check_key_url(url) for url in value]

    @model_validator(mode="after")
    def _has_a_key_source(self) -> Self:
        if self.jwks is None and self.jwks_url is None and not self.jku:
            raise ValueError("a trusted issuer needs jwks, jwks_url or jku")
        return self


# A Host header (RFC 9110 §7.2) that can name this service: a name or IPv4 address, or an IPv6
# address in brackets, and an optional port. Userinfo, paths and spaces cannot.
_HOST = re.compile(r"(?P<name>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header's name (lower case, an IPv6 address without brackets) and port, or None
    if it is not a Host that can name this service."""
    found = _HOST.fullmatch(value)
    if found is None:
        return None
    port = int(found["port"]) if found["port"] else None
    if port is not None and not 0 < port < 65536:
        return None
    return found["name"].lower().strip("[]"), port


def allowed_host(entry: str) -> tuple[str, int | None]:
    """An ELIGO_CDS_ALLOWED_HOSTS entry as (name, port or None for any port): a host name, an
    IPv4 or IPv6 address (bare or in brackets), optionally with :port. ValueError names it."""
    bare_ipv6 = entry.count(":") > 1 and not entry.startswith("[")
    parsed = split_host(f"[{entry}]" if bare_ipv6 else entry)
    if parsed is None:
        raise ValueError(f"{entry!r} is not a host name or address, optionally with :port")
    return parsed
