"""SMART App Launch 2.x, EHR launch, the client side: which issuers may launch Eligo, their
`.well-known/smart-configuration`, the authorisation request with PKCE (S256), the launch's
state sealed in a short-lived signed cookie, and the token request.

Eligo fetches only from issuers on the allow-list (ELIGO_SMART_ISSUERS): the `iss` of a launch
URL is whatever the link says, so fetching it blindly would let anyone point the server at an
internal address (SSRF). Every answer read from an issuer is size-bounded and timed out (the
HTTP client's timeout), and nothing here logs a token, a code or a patient id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import SecretStr

from app.settings import SmartClient  # the registration, where the settings read it

MAX_ANSWER_BYTES = 64 * 1024  # a smart-configuration or token answer is a few kilobytes
STATE_SECONDS = 600  # from the launch to the callback: an authorisation screen, not a shift
# A FHIR id (R4 `id` datatype): what the token's `patient` must be before it is put in a URL.
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_KEY_LABEL = b"eligo smart-launch state v1"


class LaunchRefused(Exception):
    """A launch that cannot go on: the page shows `title` and the message, with `status`."""

    def __init__(self, title: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.title, self.status = title, status


def normal_issuer(iss: str) -> str:
    """An issuer as compared with the allow-list: without a trailing slash (FHIR bases are
    written both ways); nothing else is forgiven."""
    return iss.rstrip("/")


def allowed(iss: str, issuers: Mapping[str, SmartClient]) -> str | None:
    """The allow-listed issuer this `iss` names exactly (modulo a trailing slash), else None."""
    wanted = normal_issuer(iss)
    return next((key for key in issuers if normal_issuer(key) == wanted), None)


def client_id(issuer: SmartClient, default: str | None) -> str | None:
    return issuer.client_id or default


def launch_link(base_url: str, issuers: Mapping[str, SmartClient], fhir_server: str | None) -> str:
    """The SMART launch URL a CDS card links to (the EHR adds `iss` and `launch`); '' when the
    call's FHIR server is not an issuer Eligo may be launched from, as the launch would fail."""
    if not issuers or (fhir_server is not None and allowed(fhir_server, issuers) is None):
        return ""
    return f"{base_url}/smart/launch"


# --- the issuer's configuration ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Configuration:
    """What of `.well-known/smart-configuration` the launch uses."""

    authorization_endpoint: str
    token_endpoint: str


def _bounded_json(response: httpx.Response, what: str) -> Any:
    """The answer's JSON, read no further than MAX_ANSWER_BYTES."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise LaunchRefused("EHR not usable", f"{what} is larger than {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise LaunchRefused("EHR not usable", f"{what} is not JSON") from None


def discover(http: httpx.Client, iss: str) -> Configuration:
    """The issuer's SMART configuration; refused unless it offers PKCE with S256 (without it
    an intercepted code could be redeemed by whoever holds it)."""
    url = normal_issuer(iss) + "/.well-known/smart-configuration"
    what = "the EHR's SMART configuration"
    try:
        with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise LaunchRefused(
                    "EHR not reachable", f"{what} could not be read (HTTP {response.status_code})"
                )
            data = _bounded_json(response, what)
    except httpx.HTTPError as exc:
        raise LaunchRefused(
            "EHR not reachable", f"{what} could not be read ({type(exc).__name__})", 502
        ) from None
    if not isinstance(data, dict):
        raise LaunchRefused("EHR not usable", f"{what} is not a JSON object")
    if "S256" not in (data.get("code_challenge_methods_supported") or []):
        raise LaunchRefused(
            "EHR not usable",
            "the EHR's authorisation server does not offer PKCE with S256 "
            "(code_challenge_methods_supported), which Eligo requires",
        )
    return Configuration(
        _endpoint(data, "authorization_endpoint"), _endpoint(data, "token_endpoint")
    )


def _endpoint(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.netloc:
        raise LaunchRefused("EHR not usable", f"the EHR's SMART configuration has no valid {name}")
    return str(value)


# --- the authorisation request and its state -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Launch:
    """What the callback must find again: kept in a signed cookie, never on the server, so
    any worker can finish a launch another one started."""

    state: str
    verifier: str  # the PKCE code_verifier
    iss: str
    token_endpoint: str
    clinician: str | None  # who started it: only they may finish it
    issued: int  # Unix seconds


def new_launch(iss: str, config: Configuration, clinician: str | None, now: int) -> Launch:
    # 48 random bytes: a 64-character verifier, within RFC 7636's 43-128.
    return Launch(
        secrets.token_urlsafe(24),
        secrets.token_urlsafe(48),
        iss,
        config.token_endpoint,
        clinician,
        now,
    )


def challenge(verifier: str) -> str:
    """PKCE S256: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(
    config: Configuration,
    launch: Launch,
    *,
    client: str,
    redirect_uri: str,
    launch_token: str,
    scope: str,
) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client,
            "redirect_uri": redirect_uri,
            "launch": launch_token,
            "scope": scope,
            "state": launch.state,
            "aud": launch.iss,
            "code_challenge": challenge(launch.verifier),
            "code_challenge_method": "S256",
        }
    )
    joiner = "&" if "?" in config.authorization_endpoint else "?"
    return f"{config.authorization_endpoint}{joiner}{query}"


def state_key(secret: bytes) -> bytes:
    """The cookie's signing key, derived from the service's secret for this use alone, so a
    signature made here means nothing anywhere else."""
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(launch: Launch, key: bytes) -> str:
    body = _b64(json.dumps(asdict(launch), separators=(",", ":")).encode())
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


_EXPIRED = (
    "This launch is unknown or has expired (it must be finished within "
    f"{STATE_SECONDS // 60} minutes, in the browser that started it). Open Eligo from the EHR "
    "again."
)


def unseal(sealed: str | None, state: str, key: bytes, now: int) -> Launch:
    """The launch this callback finishes: the cookie signed by us, fresh, and its state the
    one the authorisation server sent back (else a forged or replayed callback)."""
    body, _, mac = (sealed or "").partition(".")
    try:
        expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
        genuine = bool(body) and hmac.compare_digest(expected, _unb64(mac))
        launch = Launch(**json.loads(_unb64(body))) if genuine else None
    except (ValueError, TypeError, UnicodeError):
        launch = None
    if launch is None or not 0 <= now - launch.issued <= STATE_SECONDS:
        raise LaunchRefused("Launch expired", _EXPIRED)
    if not hmac.compare_digest(launch.state.encode(), state.encode("utf-8", "replace")):
        raise LaunchRefused(
            "Launch refused",
            "The answer from the EHR's authorisation server does not belong to the launch "
            "started in this browser (state mismatch). Nothing was read. Open Eligo from the "
            "EHR again.",
        )
    return launch


# --- the token -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    patient: str  # the FHIR id of the patient in context


def exchange(
    http: httpx.Client,
    launch: Launch,
    *,
    code: str,
    client: str,
    secret: SecretStr | None,
    redirect_uri: str,
) -> Token:
    """The authorisation code and the PKCE verifier for an access token and the patient in
    context. A public client names itself in the form; a confidential one authenticates with
    HTTP Basic (client_secret_basic, which SMART servers must support)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": launch.verifier,
    }
    auth = None
    if secret is None:
        form["client_id"] = client
    else:
        auth = httpx.BasicAuth(client, secret.get_secret_value())
    what = "the EHR's token endpoint"
    try:
        with http.stream(
            "POST",
            launch.token_endpoint,
            data=form,
            auth=auth,
            headers={"Accept": "application/json"},
        ) as response:
            data = _bounded_json(response, f"the answer of {what}")
            status = response.status_code
    except httpx.HTTPError as exc:
        raise LaunchRefused(
            "EHR not reachable", f"{what} could not be reached ({type(exc).__name__})", 502
        ) from None
    return _token(data, status)


def _token(data: Any, status: int) -> Token:
    if status != 200 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else None
        said = f" ({printable(error)})" if isinstance(error, str) else ""
        raise LaunchRefused(
            "Access refused",
            f"The EHR's authorisation server refused to give Eligo access{said}: HTTP {status}. "
            "Nothing was read. Open Eligo from the EHR again.",
            502,
        )
    access, kind, patient = data.get("access_token"), data.get("token_type"), data.get("patient")
    if not isinstance(access, str) or not access or str(kind).lower() != "bearer":
        raise LaunchRefused(
            "Access refused", "The EHR's token answer has no bearer access token.", 502
        )
    if not isinstance(patient, str) or not FHIR_ID.match(patient):
        raise LaunchRefused(
            "No patient",
            "The EHR did not say which patient Eligo was opened for (no valid `patient` in "
            "the launch context). Open Eligo from a patient's chart.",
            502,
        )
    return Token(access, patient)


def printable(text: str) -> str:
    """An OAuth error code as the page may show it: its own alphabet, bounded."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "?", text)[:60]
