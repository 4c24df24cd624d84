"""Request bodies: size limit and strict JSON parsing.

The size limit is enforced while streaming (a chunked upload without Content-Length is cut off
at the limit too), before any parsing, so an oversized body costs us at most the limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import strict_json
from app.api.errors import PROBLEM_JSON, problem
from app.errors import (
    FieldError,
    InvalidPayload,
    MalformedRequest,
    RequestTimeout,
    UnsupportedMediaType,
)
from app.settings import Settings


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


OFFLOAD_BYTES = 64 * 1024  # larger bodies are parsed in a worker thread, not on the event loop


def json_limits(settings: Settings) -> strict_json.Limits:
    return strict_json.Limits(depth=settings.max_json_depth, items=settings.max_json_items)


def parse_json(
    body: bytes, content_type: str | None, limits: strict_json.Limits, max_issues: int = 100
) -> Any:
    """Parse a JSON request body within `limits`, or raise a 400/415/422 that says where and
    why (422 names each field: too deep, too many items, U+0000, a lone surrogate, a number
    that is not a finite double)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {media!r}")
    if not body.strip():
        raise MalformedRequest("request body is empty; expected a JSON object")
    try:
        return strict_json.loads_checked(body, limits, max_issues=max_issues)
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"request body is not UTF-8 (byte {exc.start})") from None
    except strict_json.Refused as exc:
        errors = [FieldError(i.field, i.code, i.message) for i in exc.issues]
        raise InvalidPayload(
            "the request body breaks a limit or holds a value that cannot be accepted",
            errors,
            omitted=exc.omitted,
        ) from None
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise MalformedRequest(f"malformed JSON: {exc}") from None
    except RecursionError:  # not expected: the depth is checked before parsing
        raise MalformedRequest("JSON nested too deeply") from None


async def json_of(body: bytes, content_type: str | None, settings: Settings) -> Any:
    """`parse_json` with the configured limits; a large body in a worker thread, so that one
    client's megabytes never hold up everyone else's requests."""
    limits, most = json_limits(settings), settings.max_problem_errors
    if len(body) <= OFFLOAD_BYTES:
        return parse_json(body, content_type, limits, most)
    return await run_in_threadpool(parse_json, body, content_type, limits, most)


async def json_body(request: Request) -> Any:
    """A dependency: the parsed JSON body (read here, so the endpoint itself can be sync).

    Declare it after the route's credential check (`require(...)`, the CDS JWT): FastAPI solves
    dependencies in order, and no body is read, let alone parsed, for a caller refused 401/403.
    tests/api/test_hostile.py holds every route to that."""
    settings: Settings = request.app.state.settings
    return await json_of(
        await _received(request, settings), request.headers.get("content-type"), settings
    )


async def _received(request: Request, settings: Settings) -> bytes:
    async with receiving(settings):
        return await request.body()


@asynccontextmanager
async def receiving(settings: Settings) -> AsyncIterator[None]:
    """Receive a JSON body within `body_timeout_seconds`, else 408: a sender who stalls must
    not hold a connection and its request indefinitely (uvicorn bounds no body's arrival)."""
    try:
        async with asyncio.timeout(settings.body_timeout_seconds):
            yield
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {settings.body_timeout_seconds:g} s "
            "(ELIGO_BODY_TIMEOUT_SECONDS)",
            headers={"Connection": "close"},
        ) from None


def document_limits(app: FastAPI, settings: Settings) -> None:
    """Put the configured request limits in the OpenAPI document: in `info` (the policy, and
    `x-limits` for machines) and on every JSON request body. Wraps whatever `app.openapi` is
    by now, so it composes with other additions to the document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        info = schema.setdefault("info", {})
        if "x-limits" not in info:
            info["x-limits"] = {
                "max_body_bytes": settings.max_body_bytes,
                "max_json_depth": settings.max_json_depth,
                "max_json_items": settings.max_json_items,
                "max_problem_errors": settings.max_problem_errors,
            }
            info["description"] = info.get("description", "") + _limits_text(settings)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    _document_body(operation, settings)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _limits_text(settings: Settings) -> str:
    return (
        "\n\n**Limits.** A request body over "
        f"{settings.max_body_bytes:,} bytes is 413 (`ELIGO_MAX_BODY_BYTES`). A JSON body whose "
        f"arrays and objects nest more than {settings.max_json_depth} deep "
        f"(`ELIGO_MAX_JSON_DEPTH`) is 422 `too_deep`; one array or object with more than "
        f"{settings.max_json_items:,} items (`ELIGO_MAX_JSON_ITEMS`) is 422 `too_long`. U+0000 "
        "or an unpaired surrogate in any string, key, path or query parameter is 422 "
        "`invalid_character`; a number that is not a finite double (`1e400`) is 422 "
        "`not_finite`. Credentials are checked before a body is read. An error answer lists "
        f"at most {settings.max_problem_errors} field errors (`ELIGO_MAX_PROBLEM_ERRORS`) and "
        "counts the rest in `errors_omitted`. A value the database refuses as data is 422 "
        "`unstorable_value`, never 503."
    )


def _document_body(operation: dict[str, Any], settings: Settings) -> None:
    content = operation.get("requestBody", {}).get("content", {})
    if not any(media == "application/json" or media.endswith("+json") for media in content):
        return
    note = (
        f"JSON of at most {settings.max_body_bytes:,} bytes, nested at most "
        f"{settings.max_json_depth} deep, at most {settings.max_json_items:,} items per array "
        "or object; no U+0000 or unpaired surrogate in a string; finite numbers only."
    )
    body = operation["requestBody"]
    body["description"] = f"{body.get('description', '')}\n\n{note}".strip()
    operation.setdefault("responses", {}).setdefault(
        "408",
        {
            "description": "The body did not arrive within "
            f"{settings.body_timeout_seconds:g} s (`ELIGO_BODY_TIMEOUT_SECONDS`)",
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    )


def inlined_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with its `$defs` put in place: an operation's body in OpenAPI
    cannot point into a model's own `$defs`."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def place(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return place(defs[ref.removeprefix("#/$defs/")])
            return {key: place(value) for key, value in node.items()}
        if isinstance(node, list):
            return [place(value) for value in node]
        return node

    placed: dict[str, Any] = place(schema)
    return placed


def json_schema_body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """An OpenAPI request body documenting `model` for a route that reads its body itself
    (json_body, then parse_body): the model's JSON Schema with its `$defs` put in place, since
    an operation's body cannot point into a model's own `$defs`."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": inlined_schema(model)}},
        }
    }
