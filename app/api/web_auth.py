"""Who is using the clinician form, and protection of its forms against cross-site requests.

Three ways in, by configuration:
- development with authentication off (the quick start, loopback only): nobody signs in, and
  every page says so;
- `local`: clinician accounts (`eligo users`), a server-side session per sign-in whose random
  token is the cookie (only its hash is stored), ending after ELIGO_SESSION_IDLE_MINUTES unused
  or ELIGO_SESSION_MAX_HOURS after sign-in;
- `proxy`: a reverse proxy that has already signed the clinician in (SSO) passes the user name
  in a header, believed only from ELIGO_TRUSTED_PROXIES.

CSRF: every POST carries a token that must equal the value of a cookie the site set (double
submit). Another site can make the browser send the cookie but cannot read it to put it in the
form; the `__Host-` prefix (Secure cookies) stops a sibling subdomain from planting one, and a
request whose Origin or Sec-Fetch-Site says it came from another site is refused outright.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy.orm import Session

from app.services import accounts
from app.settings import Environment, Settings

CSRF_FIELD = "csrf_token"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person at the form: a clinician's user name, or the development mode's nobody."""

    username: str | None
    display_name: str
    mode: str  # development | local | proxy


DEVELOPMENT = Viewer(None, "development mode", "development")


class CrossSiteRefused(Exception):
    """A POST that did not come from this site's own form (answered 403)."""


class SignInNeeded(Exception):
    """No (valid) sign-in: the page sends the clinician to sign in, or explains the proxy."""


def secure(request: Request, settings: Settings) -> bool:
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    return settings.env is Environment.PRODUCTION or request.url.scheme == "https"


def cookie_name(kind: str, request: Request, settings: Settings) -> str:
    """`__Host-` names when Secure: the browser then refuses them unless set by this host over
    https, for the whole path, without a Domain (no sibling subdomain can plant one)."""
    return f"__Host-eligo-{kind}" if secure(request, settings) else f"eligo-{kind}"


def set_cookie(
    response: Response,
    request: Request,
    settings: Settings,
    kind: str,
    value: str,
    *,
    samesite: Literal["lax", "strict"] = "lax",
) -> None:
    """HttpOnly always (no script reads them). The session is Lax, so a link from the EHR
    (a CDS card) opens signed in; the CSRF cookie is Strict."""
    response.set_cookie(
        cookie_name(kind, request, settings),
        value,
        path="/",
        secure=secure(request, settings),
        httponly=True,
        samesite=samesite,
    )


def viewer(request: Request, session: Session, settings: Settings) -> Viewer:
    """The signed-in clinician; raises SignInNeeded."""
    if not settings.auth:
        return DEVELOPMENT
    if settings.sign_in == "proxy":
        return _proxy_viewer(request, settings)
    token = request.cookies.get(cookie_name("session", request, settings))
    if not token:
        raise SignInNeeded
    clinician = accounts.session_user(session, token, now(), settings.session_idle_minutes)
    if clinician is None:
        raise SignInNeeded
    return Viewer(clinician.username, clinician.display_name, "local")


def _proxy_viewer(request: Request, settings: Settings) -> Viewer:
    host = request.client.host if request.client else None
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        raise SignInNeeded from None
    trusted = any(
        address in ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies
    )
    name = request.headers.get(settings.proxy_user_header, "").strip()
    if not trusted or not name or len(name) > 100:
        raise SignInNeeded
    return Viewer(name, name, "proxy")


def csrf_value(request: Request, settings: Settings) -> tuple[str, bool]:
    """The CSRF token for this browser, and whether it is new (then the page sets it)."""
    current = request.cookies.get(cookie_name("csrf", request, settings))
    if current and _TOKEN.fullmatch(current):  # as new_csrf makes them; never echo others
        return current, False
    return new_csrf(), True


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def now() -> datetime:
    return datetime.now(UTC)


def check_csrf_before_body(request: Request, settings: Settings) -> None:
    """What of `check_csrf` needs no body (where the POST came from, the CSRF cookie): run
    before a form is read, so a post refused anyway costs no parsing."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise CrossSiteRefused("a form posted from another site")
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request, settings):
        raise CrossSiteRefused(f"a form posted from another origin ({origin[:100]})")
    if not request.cookies.get(cookie_name("csrf", request, settings)):
        raise CrossSiteRefused(_STALE)


def check_csrf(request: Request, settings: Settings, submitted: str | None) -> None:
    """Raise CrossSiteRefused unless the POST came from this site's own form."""
    check_csrf_before_body(request, settings)
    cookie = request.cookies.get(cookie_name("csrf", request, settings))
    if not cookie or not submitted or not _same(cookie, submitted):
        raise CrossSiteRefused(_STALE)


def _same(cookie: str, submitted: str) -> bool:
    # As bytes: compare_digest refuses str with anything but ASCII (a TypeError, a 500).
    return hmac.compare_digest(
        cookie.encode("utf-8", "surrogatepass"), submitted.encode("utf-8", "surrogatepass")
    )


_STALE = "the form's security token is missing or stale: reload the page"


def _own_origin(request: Request, settings: Settings) -> str:
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        return f"{parts.scheme}://{parts.netloc}"
    return f"{request.url.scheme}://{request.url.netloc}"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (never `//evil` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:2000]


# --- where a sign-in comes from ----------------------------------------------------------------

IPV6_SOURCE_PREFIX = 64  # one subscriber's usual allocation: its addresses count as one source
MAX_SOURCE_CHARS = 64


def client_source(request: Request, settings: Settings) -> str:
    """Where a sign-in comes from, for counting its failures (app.services.accounts): the
    client's address, an IPv6 address as its /64 network. Behind a proxy listed in
    ELIGO_TRUSTED_PROXIES, the address that proxy saw: X-Forwarded-For read from the right,
    past the trusted proxies (the entries further left are the client's own to write)."""
    peer = request.client.host if request.client else ""
    address = _ip(peer)
    if address is None:
        return peer[:MAX_SOURCE_CHARS] or "unknown"
    forwarded = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
    for entry in reversed(forwarded):
        if not _trusted(address, settings):
            break
        hop = _ip(entry.strip())
        if hop is None:
            break
        address = hop
    if address.version == 6:
        network = ipaddress.ip_network(f"{address}/{IPV6_SOURCE_PREFIX}", strict=False)
        return str(network)
    return str(address)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, settings: Settings) -> bool:
    return any(
        address in ipaddress.ip_network(network, strict=False)
        for network in settings.trusted_proxies
    )
