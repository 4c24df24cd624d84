"""The API docs pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), from assets served here.

FastAPI's own pages load their scripts and styles from a CDN (and fonts from Google), which
hospital networks often do not reach: the pages stay blank. Here they come from the copies
vendored in app/web/static/docs (scripts/vendor-docs-assets.sh; licences in NOTICE), so the
pages work wherever the service does. Their Content-Security-Policy names no other origin, and
Swagger UI's one inline bootstrap script is allowed by its hash rather than by 'unsafe-inline'.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from app.api.headers import docs_policy

SWAGGER_UI = "swagger-ui-5.35.0"  # app/web/static/docs/<this>/, from npm swagger-ui-dist
REDOC = "redoc-2.5.4"  # from npm redoc
ASSETS = "/static/docs"
# Inline <script> elements (no src attribute): the ones the policy must name by hash.
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def install(app: FastAPI) -> None:
    """`/docs` and `/redoc`, for an app built with `docs_url=None, redoc_url=None`."""

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        base = _root(request)
        page = get_swagger_ui_html(
            openapi_url=base + _openapi_url(app),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}{ASSETS}/{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS}/{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS}/{SWAGGER_UI}/favicon-32x32.png",
            # No OAuth2 here (bearer tokens only), so no redirect page and its inline script.
            oauth2_redirect_url=None,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        return _with_policy(page)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        base = _root(request)
        page = get_redoc_html(
            openapi_url=base + _openapi_url(app),
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS}/{REDOC}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS}/{SWAGGER_UI}/favicon-32x32.png",
            with_google_fonts=False,  # ReDoc falls back to the system's fonts
        )
        return _with_policy(page)


def _root(request: Request) -> str:
    """The path prefix a proxy mounts the app under (ASGI root_path), as FastAPI's pages use."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _openapi_url(app: FastAPI) -> str:
    if app.openapi_url is None:  # pragma: no cover - Eligo always publishes its document
        raise RuntimeError("the docs pages need the OpenAPI document")
    return app.openapi_url


def script_hashes(html: str) -> list[str]:
    """CSP source expressions ('sha256-…') of the page's inline scripts, exactly as sent."""
    digests = (hashlib.sha256(body.encode()).digest() for body in _INLINE_SCRIPT.findall(html))
    return [f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests]


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    html = bytes(page.body).decode()
    page.headers["content-security-policy"] = docs_policy(script_hashes(html))
    return page
