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
    """`errors` may be long: the answer lists the first ELIGO_MAX_PROBLEM_ERRORS and counts the
    rest, with `omitted` (errors already dropped where they were found) added to that count."""

    status = 500
    title = "Internal error"

    def __init__(
        self,
        detail: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        omitted: int = 0,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers
        self.omitted = omitted


class MalformedRequest(EligoError):
    status = 400
    title = "Malformed request"


class Unauthorized(EligoError):
    """No valid credential. RFC 6750: the challenge says what was wrong with it."""

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str, error: str | None = "invalid_token") -> None:
        challenge = 'Bearer realm="eligo"'
        if error:
            challenge += f', error="{error}", error_description="{detail}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(EligoError):
    status = 403
    title = "Forbidden"

    def __init__(self, scope: str) -> None:
        super().__init__(
            # The scope as callers write it ('audit:read'), not the enum's repr.
            f"this client lacks the '{scope}' scope",
            headers={
                "WWW-Authenticate": f'Bearer realm="eligo", error="insufficient_scope", '
                f'scope="{scope}"'
            },
        )


class NotFound(EligoError):
    status = 404
    title = "Not found"


class Conflict(EligoError):
    """The resource is not in a state that allows this yet (e.g. a screening still running)."""

    status = 409
    title = "Conflict"


class PreconditionFailed(EligoError):
    """CDS Hooks: the data the rules need could be neither prefetched nor fetched."""

    status = 412
    title = "Precondition failed"


class RulesRefused(EligoError):
    """A requested reload found invalid rules; the previous ones keep serving."""

    status = 409
    title = "Rules refused"


class RequestTimeout(EligoError):
    status = 408
    title = "Request timeout"


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


class AuditUnavailable(EligoError):
    """The database could not be written or read. For an evaluation this means no decision is
    given: advice that was not recorded must not be served."""

    status = 503
    title = "Audit trail unavailable"


class StartupRefused(Exception):
    """The configuration is unsafe or incomplete for serving; every reason is listed."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
