"""Verification of the JWT every CDS Hooks call carries (CDS Hooks 2.0, "Trusting CDS Clients").

The CDS client (the EHR) signs `Authorization: Bearer <JWT>` with a key from its JWK Set.
PyJWT does the cryptography and the claim checks it can do; this module adds the policy the
specification asks of a service: an allow-list of issuers and of `jku` URLs, ES384 or RS384 and
nothing else (no `none`, no HMAC), keys that fit their algorithm, the exact URL called as the
audience, a bounded lifetime, and a `jti` that is used once.

Every failure is `Unauthorized` with a reason that is precise but not secret (it names the header
or claim at fault, never key material) and fits RFC 6750's error_description.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import jwt
from jwt.exceptions import InvalidJTIError
from jwt.types import Options

from app.cds.issuers import JWK, IssuerConfig, allowed_host, index_jwks, split_host
from app.errors import Unauthorized

log = logging.getLogger("eligo.cds")

# The key type each accepted algorithm needs: RFC 8725 §3.1, an algorithm is bound to its key.
KEY_TYPES = {"ES384": "EC", "RS384": "RSA"}
MIN_RSA_BITS = 2048
# Far above any real client token; bounds the JSON parsing an anonymous caller can ask for.
MAX_TOKEN_CHARS = 16 * 1024
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_RETRIES = 2
JWKS_MAX_BYTES = 256 * 1024
# A flood of tokens with made-up kids must not turn into a flood of requests to the issuer.
KID_REFETCH_SECONDS = 30.0

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
_NOT_IN_CHALLENGE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")

KeyIndex = Mapping[str, tuple[JWK, ...]]

# PyJWT checks presence, signature, aud and iss; the times are checked here against `now`,
# which PyJWT cannot be given. `sub` is not part of CDS Hooks, so its form is not our concern.
_DECODE_OPTIONS: Options = {
    "require": ["exp", "iat", "jti", "aud"],
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_sub": False,
    "verify_aud": True,
    "verify_iss": True,
    "verify_jti": True,
    "strict_aud": False,
    "enforce_minimum_key_length": True,
}


def _deny(reason: str, error: str | None = "invalid_token") -> Unauthorized:
    """The 401 to raise; token-supplied text in the reason cannot break the challenge header."""
    return Unauthorized(_NOT_IN_CHALLENGE.sub("?", reason)[:200], error=error)


def _shown(value: object) -> str:
    """A token-supplied value, shortened, for a reason."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 64 else text[:61] + "..."


# --- replay ----------------------------------------------------------------------------------


class ReplayGuard(Protocol):
    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record (issuer, jti) until `expires_at`; False if it was already recorded."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryReplayGuard:
    """Seen jtis in this process's memory. Right for tests and a single worker; with several
    workers or replicas each would accept a replay once, so they need a shared store."""

    def __init__(self, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], datetime] = {}
        # Earliest expiry first, so forgetting costs only what has expired.
        self._expiries: list[tuple[datetime, str, str]] = []
        self._lock = threading.Lock()

    def first_use(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        with self._lock:
            self._forget_expired(self._clock())
            if (issuer, jti) in self._seen:
                return False
            self._seen[issuer, jti] = expires_at
            heapq.heappush(self._expiries, (expires_at, issuer, jti))
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def _forget_expired(self, now: datetime) -> None:
        # Each entry is pushed once and only while absent, so the heap and the dict agree.
        while self._expiries and self._expiries[0][0] <= now:
            _, issuer, jti = heapq.heappop(self._expiries)
            del self._seen[issuer, jti]


# --- JWK Set fetching ------------------------------------------------------------------------


class JwksUnavailable(Exception):
    """The JWK Set could not be fetched or was not a JWK Set."""


@dataclass(frozen=True, slots=True)
class _Fetched:
    keys: KeyIndex | None  # None: the last attempt failed
    loaded_at: float  # monotonic time the keys were fetched
    attempted_at: float  # monotonic time the last attempt ended
    kid_refetch_at: float  # monotonic time of the last refetch for an unknown kid


class JwksCache:
    """JWK Sets by URL, cached for `ttl_seconds`, refetched early for an unknown kid at most
    once per KID_REFETCH_SECONDS (key rotation). One lock per URL: callers who waited while
    another fetched share that fetch's outcome instead of fetching again."""

    def __init__(self, http: httpx.Client, urls: Iterable[str], ttl_seconds: float) -> None:
        self._http = http
        self._ttl = ttl_seconds
        # The URLs are the configured ones only (a jku is used after its allow-list check),
        # so the locks are made once and need no lock of their own.
        self._locks = {url: threading.Lock() for url in urls}
        self._entries: dict[str, _Fetched] = {}

    def lookup(self, url: str, kid: str) -> tuple[JWK, ...]:
        """The keys with `kid` in the JWK Set at `url` (empty if none); JwksUnavailable."""
        asked = time.monotonic()
        with self._locks[url]:
            entry, just_fetched = self._current(url, asked)
            if not just_fetched and self._may_refetch_for(entry, kid):
                entry = self._refresh(url, entry, for_kid=True)
            if entry.keys is None:
                raise JwksUnavailable(url)
            return entry.keys.get(kid, ())

    @staticmethod
    def _may_refetch_for(entry: _Fetched, kid: str) -> bool:
        unknown = entry.keys is not None and kid not in entry.keys
        return unknown and time.monotonic() - entry.kid_refetch_at >= KID_REFETCH_SECONDS

    def _current(self, url: str, asked: float) -> tuple[_Fetched, bool]:
        entry = self._entries.get(url)
        if entry is not None and entry.attempted_at >= asked:
            return entry, True  # fetched while we waited for the lock
        if entry is None or entry.keys is None or time.monotonic() - entry.loaded_at >= self._ttl:
            return self._refresh(url, entry), True
        return entry, False

    def _refresh(self, url: str, old: _Fetched | None, *, for_kid: bool = False) -> _Fetched:
        keys = self._fetch(url)
        now = time.monotonic()
        kid_refetch_at = now if for_kid else (old.kid_refetch_at if old else -math.inf)
        if keys is not None:
            entry = _Fetched(keys, now, now, kid_refetch_at)
        elif for_kid and old is not None:
            # An early refetch that failed leaves the keys we had: they are within their TTL.
            entry = _Fetched(old.keys, old.loaded_at, now, kid_refetch_at)
        else:
            # Keys past their TTL are not used while the issuer cannot be reached: it may have
            # withdrawn one of them.
            entry = _Fetched(None, -math.inf, now, kid_refetch_at)
        self._entries[url] = entry
        return entry

    def _fetch(self, url: str) -> KeyIndex | None:
        for attempt in range(JWKS_RETRIES + 1):
            try:
                return self._parse(url, self._get(url))
            except (httpx.TransportError, _ServerError) as error:
                log.warning("JWK Set %s: attempt %d failed: %s", url, attempt + 1, error)
                if attempt < JWKS_RETRIES:
                    time.sleep(0.1 * 2**attempt)
            except (JwksUnavailable, httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
                # Not worth another attempt (4xx, redirect, not a JWK Set, too large...); and
                # whatever went wrong, the caller gets a 401, never a 500.
                log.warning("JWK Set %s unusable: %s", url, error)
                return None
        return None

    def _get(self, url: str) -> bytes:
        headers = {"Accept": "application/jwk-set+json, application/json"}
        with self._http.stream("GET", url, headers=headers, timeout=JWKS_TIMEOUT_SECONDS) as r:
            if r.status_code >= 500:
                raise _ServerError(f"HTTP {r.status_code}")
            if r.status_code != 200:
                raise JwksUnavailable(f"HTTP {r.status_code}")
            body = bytearray()
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise JwksUnavailable(f"larger than {JWKS_MAX_BYTES} bytes")
            return bytes(body)

    @staticmethod
    def _parse(url: str, body: bytes) -> KeyIndex:
        try:
            keys = index_jwks(json.loads(body))
        except (ValueError, RecursionError) as error:
            raise JwksUnavailable(f"{url}: not JSON") from error
        if keys is None:
            raise JwksUnavailable(f"{url}: not a JWK Set")
        return keys


class _ServerError(Exception):
    """A 5xx answer: worth another attempt."""


# --- the audience ----------------------------------------------------------------------------
# (`split_host` and `allowed_host` are in app/cds/issuers.py, which the settings read.)


def host_allowed(host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a request's Host header is one of `allowed` (entries as `allowed_host` reads
    them; an entry without a port allows any port)."""
    given = split_host(host) if host else None
    if given is None:
        return False
    for entry in allowed:
        name, port = allowed_host(entry)
        if name == given[0] and port in (None, given[1]):
            return True
    return False


def public_base(
    public_url: str | None, request_base: str, host: str | None, allowed: Iterable[str]
) -> str:
    """The base URL (no trailing slash) that CDS client JWTs must name in their audience and
    card links point at: ELIGO_PUBLIC_URL when set; else the URL the request came in at, but
    only if its Host is allow-listed. The Host header is the caller's to choose: trusted
    blindly, a token minted for another service would be accepted here when sent with that
    service's Host, and the cards would link there. Unauthorized otherwise."""
    if public_url:
        return public_url.rstrip("/")
    if not host_allowed(host, allowed):
        raise _deny(
            f"Host {_shown(host)} is not in ELIGO_CDS_ALLOWED_HOSTS, so the URL called cannot "
            "be trusted as the token audience; the service needs ELIGO_PUBLIC_URL"
        )
    return request_base.rstrip("/")


# --- the token -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedClient:
    """Who called: the trusted issuer, and the token's id, expiry and tenant."""

    issuer: str
    jti: str
    expires_at: datetime
    tenant: str | None


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        # RFC 6750 §3.1: no credential at all gets a challenge without an error code.
        raise _deny("an Authorization: Bearer JWT is required", error=None)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise _deny("Authorization scheme is not Bearer", error=None)
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise _deny(f"token longer than {MAX_TOKEN_CHARS} characters")
    return token


def _json_part(part: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise _deny(f"JWT {name} is not a base64url JSON object")
    return value


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload, not yet trusted: they only choose the keys and say what to check."""
    parts = token.split(".")
    # The signature may be empty here so that alg none is refused by name, below.
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _deny("not a JWT: expected three base64url parts")
    if not all(_BASE64URL.fullmatch(part) for part in parts):
        raise _deny("not a JWT: expected three base64url parts")
    return _json_part(parts[0], "header"), _json_part(parts[1], "payload")


def _check_header(header: Mapping[str, Any]) -> str:
    """The token's alg, if this service accepts it."""
    alg = header.get("alg")
    if alg is None:
        raise _deny("alg header missing")
    if not isinstance(alg, str) or alg not in KEY_TYPES:
        raise _deny(f"alg {_shown(alg)} not allowed: only ES384 or RS384")
    typ = header.get("typ")
    # Media type names are case-insensitive (RFC 7515 §4.1.9); JWT is what CDS Hooks sends.
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise _deny(f"typ {_shown(typ)} not allowed: must be JWT")
    if "crit" in header:
        raise _deny("crit header not supported")  # we implement no JWS extension
    return alg


def _usable_key(kid: str, candidates: tuple[JWK, ...], alg: str) -> jwt.PyJWK:
    """The key with this kid that verifies `alg`, or the reason none does."""
    kty = KEY_TYPES[alg]
    jwk = next((key for key in candidates if key.get("kty") == kty), candidates[0])
    if alg == "ES384" and (jwk.get("kty"), jwk.get("crv")) != ("EC", "P-384"):
        raise _deny(f"key {_shown(kid)} is not an EC P-384 key, which ES384 needs")
    if alg == "RS384" and jwk.get("kty") != "RSA":
        raise _deny(f"key {_shown(kid)} is not an RSA key, which RS384 needs")
    ops = jwk.get("key_ops")
    if jwk.get("use", "sig") != "sig" or (ops is not None and not _lists(ops, "verify")):
        raise _deny(f"key {_shown(kid)} is not for verifying signatures")
    if jwk.get("alg", alg) != alg:
        raise _deny(f"key {_shown(kid)} is for {_shown(jwk['alg'])}, not {alg}")
    try:
        key = jwt.PyJWK(jwk, algorithm=alg)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise _deny(f"key {_shown(kid)} is not a valid public key") from None
    if alg == "RS384" and key.key.key_size < MIN_RSA_BITS:
        raise _deny(f"RSA key {_shown(kid)} is shorter than {MIN_RSA_BITS} bits")
    return key


def _lists(values: object, wanted: str) -> bool:
    return isinstance(values, list) and wanted in values


def _decode(token: str, key: jwt.PyJWK, alg: str, issuer: str, audience: str) -> dict[str, Any]:
    # algorithms is the alg already checked against KEY_TYPES, never the header's raw value.
    try:
        return jwt.decode(
            token, key, algorithms=[alg], audience=audience, issuer=issuer, options=_DECODE_OPTIONS
        )
    except jwt.InvalidSignatureError:
        raise _deny("signature invalid") from None
    except jwt.MissingRequiredClaimError as error:
        raise _deny(f"{error.claim} claim missing") from None
    except jwt.InvalidAudienceError:
        # The URL expected is this service's own, not the token's text: safe to say, and what
        # an integrator needs to mint the right token.
        raise _deny(f"aud does not match the URL called: expected {audience}") from None
    except InvalidJTIError:
        raise _deny("jti must be a non-empty string") from None
    except jwt.PyJWTError as error:
        log.info("CDS client JWT refused by PyJWT: %s", error)
        raise _deny("token invalid") from None


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int to Python; NaN and infinities would slip through every comparison.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _deny(f"{name} must be a NumericDate")
    return float(value)


def _jti(claims: Mapping[str, Any]) -> str:
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti:
        raise _deny("jti must be a non-empty string")
    return jti


def _tenant(claims: Mapping[str, Any]) -> str | None:
    tenant = claims.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise _deny("tenant must be a string")
    return tenant


class ClientTokenVerifier:
    """Checks CDS clients' bearer JWTs against the trusted issuers. Thread-safe: the service
    runs sync endpoints in a thread pool, and they share one verifier."""

    def __init__(
        self,
        issuers: Mapping[str, IssuerConfig],
        replay: ReplayGuard,
        *,
        http: httpx.Client | None = None,
        leeway_seconds: int = 60,
        max_lifetime_seconds: int = 3600,
        jwks_ttl_seconds: float = 300,
    ) -> None:
        self._issuers = dict(issuers)
        self._inline = {
            issuer: index_jwks(config.jwks) or {}
            for issuer, config in self._issuers.items()
            if config.jwks is not None
        }
        self._replay = replay
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=JWKS_TIMEOUT_SECONDS)
        urls = {url for config in self._issuers.values() for url in config.jku}
        urls |= {c.jwks_url for c in self._issuers.values() if c.jwks_url is not None}
        self._jwks = JwksCache(self._http, urls, jwks_ttl_seconds)

    def close(self) -> None:
        """Close the HTTP client if this verifier made it."""
        if self._own_http:
            self._http.close()

    def verify(
        self, authorization: str | None, audience: str, now: datetime | None = None
    ) -> VerifiedClient:
        """The client behind `authorization` (the header's value), for a call to `audience`
        (the exact URL called), or Unauthorized saying why not."""
        token = _bearer_token(authorization)
        header, unverified = _unverified_parts(token)
        alg = _check_header(header)
        issuer = self._trusted_issuer(unverified)
        key = self._key(issuer, header, alg)
        claims = _decode(token, key, alg, issuer, audience)
        client = self._check_claims(issuer, claims, now or _utcnow())
        # Last, so that only a token that passed everything else can use up its jti. Kept
        # until the leeway has also passed: until then the token would still be accepted.
        if not self._replay.first_use(
            issuer, client.jti, client.expires_at + timedelta(seconds=self._leeway)
        ):
            raise _deny("jti already used: sign a new token, with a new jti, for each call")
        return client

    def _trusted_issuer(self, unverified: Mapping[str, Any]) -> str:
        # Read before the signature is checked, only to choose whose keys check it; decode()
        # then checks that the signed iss is the same.
        issuer = unverified.get("iss")
        if issuer is None:
            raise _deny("iss claim missing")
        if not isinstance(issuer, str) or issuer not in self._issuers:
            raise _deny(f"issuer {_shown(issuer)} not trusted: not in ELIGO_CDS_ISSUERS")
        return issuer

    def _key(self, issuer: str, header: Mapping[str, Any], alg: str) -> jwt.PyJWK:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _deny("kid header missing")
        url = self._key_source(issuer, header.get("jku"))
        if url is None:
            candidates = self._inline[issuer].get(kid, ())
        else:
            try:
                candidates = self._jwks.lookup(url, kid)
            except JwksUnavailable:
                raise _deny(f"JWK Set of {issuer} unavailable") from None
        if not candidates:
            raise _deny(f"no key with kid {_shown(kid)} in the JWK Set of {issuer}")
        return _usable_key(kid, candidates, alg)

    def _key_source(self, issuer: str, jku: object) -> str | None:
        """The URL of the JWK Set to use, or None for the issuer's inline one."""
        config = self._issuers[issuer]
        if jku is not None:
            # Checked before any fetch: a token must not make us call a URL we do not trust.
            if not isinstance(jku, str) or jku not in config.jku:
                raise _deny(
                    f"jku {_shown(jku)} not allowed: not in the jku list of {issuer} in "
                    "ELIGO_CDS_ISSUERS"
                )
            return jku
        if config.jwks is not None:
            return None
        if config.jwks_url is not None:
            return config.jwks_url
        raise _deny(f"jku header missing: {issuer} publishes its keys only at jku URLs")

    def _check_claims(
        self, issuer: str, claims: Mapping[str, Any], now: datetime
    ) -> VerifiedClient:
        exp, iat = _numeric_date(claims, "exp"), _numeric_date(claims, "iat")
        moment = now.timestamp()
        if exp <= moment - self._leeway:
            raise _deny("token expired")
        if iat > moment + self._leeway:
            raise _deny("iat is in the future")
        if "nbf" in claims and _numeric_date(claims, "nbf") > moment + self._leeway:
            raise _deny("token not valid yet (nbf)")
        if exp < iat:
            raise _deny("exp is before iat")
        if exp - iat > self._max_lifetime:
            raise _deny(f"token lifetime above {self._max_lifetime} s")
        expires_at = datetime.fromtimestamp(exp, UTC)
        return VerifiedClient(issuer, _jti(claims), expires_at, _tenant(claims))
