"""One error base; subclasses carry their HTTP status, mapped in one handler (api/errors.py).

Bodies follow RFC 9457 problem details, with `errors` naming each offending field.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    code: str
    message: str


class EligoError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class MalformedRequest(EligoError):
    status = 400
    title = "Malformed request"


class NotFound(EligoError):
    status = 404
    title = "Not found"


class PayloadTooLarge(EligoError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(EligoError):
    status = 415
    title = "Unsupported media type"


class InvalidPayload(EligoError):
    """Payload validation only: 422 is reserved for it (DESIGN.md)."""

    status = 422
    title = "Invalid input"


class NotReady(EligoError):
    status = 503
    title = "Not ready"
