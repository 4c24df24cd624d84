"""Request bodies: size limit and strict JSON parsing.

The size limit is enforced while streaming (a chunked upload without Content-Length is cut off
at the limit too), before any parsing, so an oversized body costs us at most the limit.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import strict_json
from app.api.errors import problem
from app.errors import MalformedRequest, UnsupportedMediaType


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over `limit` bytes. `exempt` paths enforce limits
    of their own (a registry upload is far larger than any JSON body)."""

    def __init__(self, app: ASGIApp, limit: int, exempt: Collection[str] = ()) -> None:
        self.app = app
        self.limit = limit
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body exceeds the limit of {self.limit} bytes"
        response: Response
        if _is_html_form(scope):
            # A browser posting the clinician form gets a page, not JSON; its Back button
            # brings the form back as it was.
            response = HTMLResponse(
                _TOO_LARGE_PAGE.format(limit=self.limit // (1024 * 1024) or 1),
                status_code=413,
                headers={"Connection": "close"},
            )
        else:
            response = problem(413, "Payload too large", detail, headers={"Connection": "close"})
        await response(scope, receive, send)


_TOO_LARGE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Too large · Eligo</title><link rel="stylesheet" href="/static/eligo.css"></head>
<body><main><h1>Too large to send</h1><p>What you sent is larger than the {limit} MB this
service accepts. Go back (nothing was evaluated or recorded): a FHIR bundle this large is
better sent by the EHR, or trimmed to the patient's recent resources.</p>
<p><a href="/">Start a new evaluation</a></p></main></body></html>"""


def _is_html_form(scope: Scope) -> bool:
    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip()
    return content_type in (b"application/x-www-form-urlencoded", b"multipart/form-data")


def parse_json(body: bytes, content_type: str | None) -> Any:
    """Parse a JSON request body, or raise a 400/415 that says where and why."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {media!r}")
    if not body.strip():
        raise MalformedRequest("request body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
        return strict_json.loads(text)
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"request body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise MalformedRequest(f"malformed JSON: {exc}") from None


async def json_body(request: Request) -> Any:
    """A dependency: the parsed JSON body (read here, so the endpoint itself can be sync)."""
    return parse_json(await request.body(), request.headers.get("content-type"))
