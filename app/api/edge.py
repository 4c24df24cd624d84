"""One policy for strings, in URLs: a path or query parameter with U+0000 (or an unpaired
surrogate) is refused with a 422 naming it, before any route runs.

No database stores U+0000 (PostgreSQL refuses it in text and JSON), so such a value could
only ever reach a database error, which must not pass for an outage. Request bodies get the
same policy from their parser (app.strict_json for JSON, app.api.web for forms).
"""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.datastructures import QueryParams
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import problem
from app.errors import FieldError, InvalidPayload
from app.strict_json import character_problem, printable


class StringPolicy:
    """Pure ASGI middleware: 422 for a path or query string holding an unacceptable character."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            errors = _path_errors(scope) + _query_errors(scope)
            if errors:
                response = problem(
                    422,
                    InvalidPayload.title,
                    "the URL holds a character that cannot be accepted",
                    errors,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _path_errors(scope: Scope) -> list[FieldError]:
    path: str = scope["path"]
    problem_text = character_problem(path)
    if problem_text is None:
        return []
    named = [
        FieldError(f"path.{name}", "invalid_character", problem_text)
        for name, value in _path_params(scope).items()
        if character_problem(value)
    ]
    return named or [FieldError("path", "invalid_character", problem_text)]


def _path_params(scope: Scope) -> dict[str, str]:
    """The parameters of a route this path would reach, to name the one at fault (only ever
    looked for on this rare path, so not cached)."""
    routes = getattr(scope.get("app"), "routes", [])
    for route in iter_route_contexts(list(routes)):
        template = route.path_format
        if not template or "{" not in template:
            continue
        found = compile_path(template)[0].fullmatch(scope["path"])
        if found:
            return found.groupdict()
    return {}


def _query_errors(scope: Scope) -> list[FieldError]:
    raw: bytes = scope.get("query_string", b"")
    if b"%00" not in raw and b"\x00" not in raw:  # surrogates cannot survive URL decoding
        return []
    errors = []
    for name, value in QueryParams(raw).multi_items():
        for text, what in ((name, "the name"), (value, "the value")):
            problem_text = character_problem(text)
            if problem_text:
                field = f"query.{printable(name)}"
                errors.append(FieldError(field, "invalid_character", f"{what} {problem_text}"))
    return errors
