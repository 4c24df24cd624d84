"""Every error as RFC 9457 problem details, from one place.

Malformed JSON is 400, payload validation 422, unknown routes 404, oversize 413. Anything
unexpected is a 500 whose body says nothing about internals; the traceback goes to the log,
which never receives request bodies (they may hold patient data).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.schemas import Problem
from app.engine.inputs import InvalidInput
from app.errors import AuditUnavailable, EligoError, FieldError, InvalidPayload
from app.settings import Settings
from app.strict_json import printable

log = logging.getLogger("eligo.api")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5
MAX_ERRORS = 50  # field errors listed, where no settings are at hand (ELIGO_MAX_PROBLEM_ERRORS)
FIELD_CHARS = 300  # a field path or code echoed in an error is cut after this many characters
DETAIL_CHARS = 1000  # ... a detail or message


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    *,
    omitted: int = 0,
    max_errors: int = MAX_ERRORS,
) -> JSONResponse:
    """The answer for an error. Whatever it echoes is made safe to encode (U+0000 and lone
    surrogates as escapes) and short; at most `max_errors` field errors are listed, and
    `errors_omitted` counts the rest, so no request can make its refusal large."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": printable(detail, DETAIL_CHARS),
    }
    errors = errors or []
    shown = errors[:max_errors]
    omitted += len(errors) - len(shown)
    if shown:
        body["errors"] = [
            {
                "field": printable(e.field, FIELD_CHARS),
                "code": printable(e.code, FIELD_CHARS),
                "message": printable(e.message, DETAIL_CHARS),
            }
            for e in shown
        ]
    if omitted:
        body["errors_omitted"] = omitted
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _max_errors(request: Request) -> int:
    settings: Settings | None = getattr(request.app.state, "settings", None)
    return settings.max_problem_errors if settings is not None else MAX_ERRORS


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error codes answered with problem+json."""
    return {code: {"model": Problem, "content": {"application/problem+json": {}}} for code in codes}


def invalid_input(exc: InvalidInput) -> InvalidPayload:
    errors = [FieldError(i.field, i.code, i.message) for i in exc.issues]
    fields = ", ".join(e.field for e in errors)
    return InvalidPayload(f"invalid value(s) for {fields}", errors)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def validation_errors(errors: list[Any]) -> list[FieldError]:
    return [FieldError(_field(tuple(e["loc"])), str(e["type"]), _message(e)) for e in errors]


# pydantic's words for a JSON value of the wrong type ("Input should be a valid list"), with
# what was sent and how to write it. The value itself is never repeated: it may be a patient's.
_EXPECTED_AS = {
    "list_type": 'a single value is still a list: ["…"]',
    "dict_type": "an object of name -> value: {…}",
    "string_type": 'an identifier that is a number is sent as text: "12345"',
    "model_type": "an object: {…}",
}


def _message(error: Mapping[str, Any]) -> str:
    message, kind = str(error["msg"]), str(error["type"])
    if kind not in _EXPECTED_AS or "input" not in error:
        return message
    return f"{message}, not {_json_kind(error['input'])}; {_EXPECTED_AS[kind]}"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else "an object"


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], payload: Any) -> M:
    """A parsed JSON body as `model`, or 422 naming each field at fault."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidPayload(
            "request validation failed", validation_errors(list(exc.errors()))
        ) from None


async def _eligo_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EligoError)
    return problem(
        exc.status,
        exc.title,
        exc.detail,
        exc.errors,
        exc.headers,
        omitted=exc.omitted,
        max_errors=_max_errors(request),
    )


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    """The database refused a value as data (SQLSTATE class 22, or the driver before it: text
    with U+0000, a number out of a column's range). That is the request's fault and permanent:
    a 4xx, never the outage answer with its Retry-After (clients would retry it forever).
    Nothing was recorded; the transaction is rolled back with the session."""
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    request.app.state.stored.forget()
    log.warning(
        "database refused a value on %s %s: %s %s",
        request.method,
        request.url.path,
        type(getattr(exc, "orig", None) or exc).__name__,
        code or "",
    )
    error = InvalidPayload(
        "the database refused a value in this request as data; nothing was recorded. "
        "Correct the request rather than retrying it",
        [FieldError("request", "unstorable_value", "a value the database cannot store")],
    )
    return await _eligo_error(request, error)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # The class and SQLSTATE only: messages can quote statements, and engines hide parameters.
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    request.app.state.stored.forget()
    log.error(
        "database error on %s %s: %s %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        code or "",
    )
    error = AuditUnavailable(
        "the database could not be reached or written; no decision was given. Retry shortly.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
    return await _eligo_error(request, error)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(list(exc.errors()))
    return problem(
        422,
        InvalidPayload.title,
        "request validation failed",
        errors,
        max_errors=_max_errors(request),
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    return problem(
        exc.status_code,
        titles.get(exc.status_code, "HTTP error"),
        str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(EligoError, _eligo_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(DataError, _data_error)  # the more specific class wins
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
