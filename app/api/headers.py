"""Security headers on every response, stricter ones on HTML.

API responses carry patient data: `no-store` keeps them out of browser and proxy caches unless
an endpoint says otherwise. HTML may not be framed (clickjacking) and runs only the scripts its
policy names. The clinician form runs its own files and nothing inline; the docs pages
(app/api/docs.py) run Swagger UI and ReDoc from this service's own copies, plus Swagger UI's
inline bootstrap script, named by its hash: no other origin, and no other inline script.
"""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
# The clinician form: its own scripts and styles only, nothing inline, nothing from elsewhere.
FORM_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)
# Images served on their own (a screening's funnel SVG): as strict as a policy gets. Opened
# directly, an SVG is a document that could run script; this one has none, and may not.
IMAGE_POLICY = "; ".join(
    [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "sandbox",
    ]
)
# A screening's HTML report: a file made from a registry's data, so it may run nothing at
# all. Its styles are inline (it is one self-contained file) and its pictures inline SVG or
# data: URLs; it may not be framed, post a form, or load anything from anywhere.
REPORT_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
DOCS = ("/docs", "/redoc")


def docs_policy(script_hashes: list[str]) -> str:
    """The docs pages' policy: scripts, styles, images and fonts from this service only, plus
    the inline scripts whose hashes are given. Swagger UI and ReDoc style their elements inline
    (style attributes, ReDoc's generated <style>), hence 'unsafe-inline' for styles; ReDoc's
    search index runs in a worker made from a blob: URL."""
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(["script-src 'self'", *script_hashes]),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "worker-src 'self' blob:",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


# HTML under DOCS. Its pages set their own policy naming their inline scripts' hashes; this
# one, allowing none, is the fallback for anything else there.
HTML = {
    "x-frame-options": "DENY",
    "content-security-policy": docs_policy([]),
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def _encoded(pairs: list[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs)


# What a response gets unless it set it itself, in this order, for the three kinds there are.
_ANY = [*ALWAYS.items(), ("cache-control", "no-store")]
# The form's own POSTs must carry their Origin (the CSRF check reads it); under no-referrer
# browsers send `Origin: null`. Nothing leaves the site.
_FORM = [("content-security-policy", FORM_POLICY), ("referrer-policy", "same-origin")]
DEFAULTS = {
    "other": _encoded(_ANY),
    "docs html": _encoded([*_ANY, *HTML.items()]),
    "form html": _encoded([*_FORM, *_ANY, *HTML.items()]),
}


def _defaults(scope: Scope, content_type: str) -> tuple[tuple[bytes, bytes], ...]:
    if not content_type.startswith("text/html"):
        return DEFAULTS["other"]
    return DEFAULTS["docs html" if str(scope["path"]).startswith(DOCS) else "form html"]


class ResponseHeaders:
    """Every response's security headers (`_defaults`, where the response did not set its
    own), and a 405's Allow header listing every method the path accepts (RFC 9110
    §15.5.6: Starlette answers 405 from the first route whose path matches, so a path served
    by several routes, GET and POST /v1/evaluations, would otherwise list only the first
    one's). One middleware with one look at the headers: as two, each with its own wrapper of
    `send` and its own parse of the header list, they were a tenth of the middleware's time
    on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        identity = not accepts_gzip(scope)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _complete(scope, message, identity)
            await send(message)

        await self.app(scope, receive, with_headers)


def _complete(scope: Scope, message: Message, identity: bool) -> None:
    headers = MutableHeaders(scope=message)
    present = {name.lower() for name, _ in headers.raw}
    for name, value in _defaults(scope, headers.get("content-type", "")):
        if name not in present:
            headers.raw.append((name, value))
            present.add(name)
    if identity:  # what GZipMiddleware would have said; `GZipAccepted` passes such requests
        headers.add_vary_header("Accept-Encoding")
    if message["status"] == 405:
        methods = allowed_methods(scope)
        if methods:
            headers["allow"] = ", ".join(methods)


class PathCORS:
    """CORS for one path prefix only (CDS Hooks' browser-based clients), leaving the rest of
    the API to its own policy."""

    def __init__(self, app: ASGIApp, prefix: str, origins: list[str]) -> None:
        self.app, self.prefix = app, prefix
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == self.prefix or path.startswith(self.prefix + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def allowed_methods(scope: Scope) -> list[str]:
    """Every method some route serves at this request's path (HEAD with GET, as Starlette
    answers it), in alphabetical order. Where a route is written for exactly this path
    (`POST /v1/rulesets/reload`), only such routes count: the resource is that one, not a
    value of a templated path that also matches (`GET /v1/rulesets/{ruleset_id}`)."""
    # Through FastAPI's route contexts: included routers are reached lazily, with their prefix.
    matching = [
        route
        for route in iter_route_contexts(scope["app"].router.routes)
        if route.methods and route.matches(scope)[0] is not Match.NONE
    ]
    literal = [route for route in matching if "{" not in (route.path or "")]
    return sorted({method for route in literal or matching for method in route.methods or ()})


def accepts_gzip(scope: Scope) -> bool:
    return any(name == b"accept-encoding" and b"gzip" in value for name, value in scope["headers"])


class GZipAccepted(GZipMiddleware):
    """Starlette's GZip for a client that accepts it. A client that does not is passed straight
    through: Starlette's IdentityResponder, which only adds `Vary: Accept-Encoding` to a large
    answer, parsed and buffered every answer's headers for it (a fiftieth of the event loop's
    time per recorded evaluation). `ResponseHeaders` adds the Vary instead, to every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not accepts_gzip(scope):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
