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


def _is_form_page(scope: Scope, headers: MutableHeaders) -> bool:
    is_html = headers.get("content-type", "").startswith("text/html")
    return is_html and not str(scope["path"]).startswith(DOCS)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if _is_form_page(scope, headers):
                    headers.setdefault("content-security-policy", FORM_POLICY)
                    # The form's own POSTs must carry their Origin (the CSRF check reads it);
                    # under no-referrer browsers send `Origin: null`. Nothing leaves the site.
                    headers.setdefault("referrer-policy", "same-origin")
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
                headers.setdefault("cache-control", "no-store")
                if headers.get("content-type", "").startswith("text/html"):
                    for name, value in HTML.items():
                        headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


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


class AllowHeader:
    """A 405's Allow header lists every method the path accepts (RFC 9110 §15.5.6). Starlette
    answers 405 from the first route whose path matches, so a path served by several routes
    (GET and POST /v1/evaluations) would otherwise list only the first one's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = allowed_methods(scope)
                if methods:
                    MutableHeaders(scope=message)["allow"] = ", ".join(methods)
            await send(message)

        await self.app(scope, receive, with_allow)
