"""Registry screenings as jobs: submit (an upload, a server path or a database table), follow,
cancel, download the results, and delete them.

The results carry the registry's own identifiers: they are the analyst's data, so a job and its
files are visible only to the client that asked for it, and nothing here logs them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.api.body import inlined_schema, json_of, receiving
from app.api.deps import (
    Caller,
    DbSession,
    commit,
    current_rules,
    current_settings,
    get_settings,
    require,
)
from app.api.errors import problem_responses, validation_errors
from app.api.headers import IMAGE_POLICY, REPORT_POLICY
from app.api.responses import FastJSONResponse
from app.api.upload import Form, read_form, too_large
from app.batch.backends import FORMATS
from app.batch.report import ScreeningReport
from app.db.models import Screening
from app.engine.model import RuleBase
from app.errors import FieldError, InvalidPayload
from app.security import Scope
from app.services import screenings as service
from app.services.screening_jobs import Layout, Worker, csv_chunks
from app.services.screening_request import ScreeningRequest, UploadSource, untagged
from app.services.screenings import ScreeningJob, ScreeningList
from app.settings import Settings

router = APIRouter(prefix="/v1", tags=["screenings"])
SUBMIT_PATH = "/v1/screenings"

Rules = Annotated[RuleBase, Depends(current_rules)]
Config = Annotated[Settings, Depends(current_settings)]
Screener = Annotated[Caller, Depends(require(Scope.SCREEN))]

FORM_FIELDS = ("rulesets", "backend", "engine", "as_of", "long", "strict")
MAX_MAPPING_BYTES = service.MAX_MAPPING_BYTES
PARQUET = "application/vnd.apache.parquet"
CSV = "text/csv; charset=utf-8"

_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": f"The registry: {', '.join(sorted(FORMATS))}",
        },
        "mapping": {"type": "string", "format": "binary", "description": "Mapping file (YAML)"},
        "rulesets": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Rule set ids (repeat the field, or separate by commas) [default: all]",
        },
        "backend": {"type": "string", "enum": ["duckdb", "spark"], "default": "duckdb"},
        "engine": {
            "type": "string",
            "enum": ["duckdb", "spark"],
            "description": "Alias of `backend`, its earlier name (still accepted)",
        },
        "as_of": {"type": "string", "format": "date"},
        "long": {"type": "boolean", "default": False, "description": "Long-format results too"},
        "strict": {
            "type": "boolean",
            "default": False,
            "description": "A bad cell rejects its row (else: unknown, and reported)",
        },
    },
}


def _asker(caller: Caller) -> service.Asker:
    return service.Asker(caller.client_id, caller.name)


# The request body ---------------------------------------------------------------------------


async def submission(request: Request) -> AsyncIterator[service.Submission]:
    """The body (either kind) as a submission, its files in a new job folder. The folder goes
    again if anything fails before the job is recorded: reading the body (413 included),
    checking it, or the commit."""
    settings = get_settings(request)
    files = service.layout(settings)
    job_id = service.new_id()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if media == "multipart/form-data":
            _declared_within(request, settings.screening_max_upload_bytes)
            files.create(job_id)
            found = await _from_form(request, files, job_id, settings.screening_max_upload_bytes)
        else:
            async with receiving(settings):
                body = await _read(request, settings.max_body_bytes)
            payload = await json_of(body, media or None, settings)
            found = _from_json(job_id, payload)
            files.create(job_id)
        yield found
    except BaseException:
        files.remove(job_id)
        raise


def _declared_within(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"request body exceeds the limit of {limit} bytes")


async def _read(request: Request, limit: int) -> bytes:
    """The whole body, refused at `limit` while it streams (the generic limit's job elsewhere;
    this route is exempt from it because uploads are larger)."""
    _declared_within(request, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


def _from_json(job_id: str, payload: Any) -> service.Submission:
    """A JSON body: a server path or a database table (a file comes as multipart)."""
    request = _validated(payload)
    if isinstance(request.source, UploadSource):
        message = "upload the file as multipart/form-data (the `file` field)"
        raise _invalid("source.kind", "upload_in_json", message)
    if request.mapping_file is not None:
        raise _invalid("mapping_file", "extra_forbidden", "Extra inputs are not permitted")
    return service.Submission(job_id, request)


def _validated(payload: Any) -> ScreeningRequest:
    """The request, or 422 naming each field as the client wrote it."""
    try:
        return ScreeningRequest.model_validate(payload)
    except ValidationError as exc:
        found = [{**e, "loc": untagged(tuple(e["loc"]))} for e in exc.errors()]
        raise InvalidPayload("request validation failed", validation_errors(found)) from None


async def _from_form(
    request: Request, files: Layout, job_id: str, limit: int
) -> service.Submission:
    def destination(name: str, filename: str) -> tuple[Path, int]:
        if name == "mapping":
            return files.mapping(job_id), MAX_MAPPING_BYTES
        if name != "file":
            raise _invalid(name, "extra_forbidden", "unexpected file field")
        suffix = Path(filename).suffix.lower()
        if suffix not in FORMATS:
            known = ", ".join(sorted(FORMATS))
            raise _invalid("file", "unsupported_format", f"{filename!r}: use {known}")
        return files.upload(job_id, suffix), limit

    form = await read_form(request, limit=limit, destination=destination, fields=FORM_FIELDS)
    upload = form.files.get("file")
    if upload is None:
        raise _invalid("file", "missing", "upload the registry as the `file` field")
    mapping = form.files.get("mapping")
    given: dict[str, Any] = {
        "source": UploadSource(name=upload.filename),
        "mapping_file": service.uploaded_mapping(get_settings(request), job_id, mapping.filename)
        if mapping
        else None,
        **_options(form),
    }
    # Only what the form gave: `backend` given or not says which name a problem is under.
    return service.Submission(job_id, _validated({k: v for k, v in given.items() if v is not None}))


def _options(form: Form) -> dict[str, Any]:
    """The form's text fields as the request's: a form has no types of its own."""
    return {
        "rulesets": _rulesets(form),
        "backend": _one(form, "backend"),
        "engine": _one(form, "engine"),
        "as_of": _day(_one(form, "as_of")),
        "long": _flag(_one(form, "long"), "long"),
        "strict": _flag(_one(form, "strict"), "strict"),
    }


def _invalid(field: str, code: str, message: str) -> InvalidPayload:
    return InvalidPayload("request validation failed", [FieldError(field, code, message)])


def _rulesets(form: Form) -> list[str] | None:
    given = form.fields.get("rulesets")
    if given is None:
        return None
    return [ident.strip() for value in given for ident in value.split(",") if ident.strip()]


def _one(form: Form, name: str) -> str | None:
    values = form.fields.get(name, [])
    if len(values) > 1:
        raise _invalid(name, "duplicate", "give this field once")
    return values[0].strip() if values else None


# A form's boolean, as this endpoint and the web page read it: a ticked checkbox sends its
# value (`on` by default), an unticked one nothing.
TICKED, UNTICKED = frozenset({"true", "1", "on", "yes"}), frozenset({"", "false", "0", "off", "no"})


def _flag(text: str | None, name: str) -> bool:
    """A form's boolean: true/false (a checkbox sends `on`); absent is false."""
    if text is None or text.strip().lower() in UNTICKED:
        return False
    if text.strip().lower() in TICKED:
        return True
    raise _invalid(name, "bool_parsing", "expected true or false")


def _day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _invalid("as_of", "date_from_datetime_parsing", "expected YYYY-MM-DD") from None


Submitted = Annotated[service.Submission, Depends(submission, scope="function")]


def limits_text(settings: Settings) -> str:
    """The limits a submission meets, as configured (the OpenAPI description of the body)."""
    return (
        f"An upload is at most {settings.screening_max_upload_bytes:,} bytes "
        "(`ELIGO_SCREENING_MAX_UPLOAD_BYTES`, 413 beyond), a mapping at most "
        f"{MAX_MAPPING_BYTES:,} bytes (a file, or inline as JSON). A source has at most "
        f"{settings.screening_max_columns:,} columns (`ELIGO_SCREENING_MAX_COLUMNS`) and a "
        f"CSV or NDJSON file a first line of at most {settings.screening_max_header_bytes:,} "
        "bytes (`ELIGO_SCREENING_MAX_HEADER_BYTES`): beyond, 422 `too_many_columns` or "
        "`line_too_long` naming the file and line, found without reading further. The check "
        f"before a job is accepted reads at most {settings.screening_preflight_bytes:,} bytes "
        "of a file (`ELIGO_SCREENING_PREFLIGHT_BYTES`; a Parquet footer larger than that is "
        "422 `metadata_too_large`); a defect further on fails the job, its `error` naming "
        "the file and line."
    )


def document_limits(app: FastAPI, settings: Settings) -> None:
    """Put the configured screening limits on POST /v1/screenings in the OpenAPI document
    (wrapping whatever `app.openapi` is by now)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        operation = schema.get("paths", {}).get(SUBMIT_PATH, {}).get("post")
        if operation is not None and "x-limits" not in operation:
            operation["x-limits"] = {
                "screening_max_upload_bytes": settings.screening_max_upload_bytes,
                "screening_max_mapping_bytes": MAX_MAPPING_BYTES,
                "screening_max_columns": settings.screening_max_columns,
                "screening_max_header_bytes": settings.screening_max_header_bytes,
                "screening_preflight_bytes": settings.screening_preflight_bytes,
            }
            operation["description"] = (
                f"{operation.get('description', '')}\n\n**Limits.** {limits_text(settings)}"
            ).strip()
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# Endpoints ---------------------------------------------------------------------------------


@router.post(
    "/screenings",
    status_code=202,
    response_model=ScreeningJob,
    responses=problem_responses(400, 401, 403, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _FORM_SCHEMA},
                "application/json": {"schema": inlined_schema(ScreeningRequest)},
            },
        }
    },
    summary="Screen a registry: upload a file, or name a server path or a database table",
)
def create_screening(
    *,
    caller: Screener,  # first: no upload is read for a caller who may not screen
    submitted: Submitted,  # it removes the files if the commit below fails
    request: Request,
    rules: Rules,
    settings: Config,
    session: DbSession,
) -> Any:
    job = service.submit(session, settings, rules, _asker(caller), submitted)
    worker: Worker = request.app.state.screening_worker
    service.on_commit(session, worker.wake)
    # Here, not when the session closes: `submitted` then sees a failed commit and removes
    # the upload (it was entered after the session, which authentication opened first).
    commit(request, session)
    return FastJSONResponse(
        service.view(job), status_code=202, headers={"Location": f"/v1/screenings/{job.id}"}
    )


@router.get(
    "/screenings",
    response_model=ScreeningList,
    responses=problem_responses(401, 403, 422, 503),
    summary="This client's screenings, newest first",
)
def list_screenings(
    session: DbSession,
    caller: Screener,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIST)] = 50,
) -> Any:
    return FastJSONResponse(service.recent(session, _asker(caller), limit))


def _job(session: Session, screening_id: str, caller: Caller) -> Screening:
    return service.find(session, screening_id, _asker(caller))


@router.get(
    "/screenings/{screening_id}",
    response_model=ScreeningJob,
    responses=problem_responses(401, 403, 404, 503),
    summary="A screening: state, progress, counts per rule set once done, links to the files",
)
def get_screening(screening_id: str, session: DbSession, caller: Screener) -> Any:
    return FastJSONResponse(service.view(_job(session, screening_id, caller)))


@router.post(
    "/screenings/{screening_id}/cancel",
    status_code=202,
    response_model=ScreeningJob,
    responses=problem_responses(401, 403, 404, 409, 503),
    summary="Cancel: a queued screening at once, a running one at its next batch",
)
def cancel_screening(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> Any:
    job = _job(session, screening_id, caller)
    return FastJSONResponse(service.cancel(session, settings, job), status_code=202)


@router.delete(
    "/screenings/{screening_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 403, 404, 409, 503),
    summary="Delete a finished screening: its record and its files, results included",
)
def delete_screening(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> Response:
    service.delete(session, settings, _job(session, screening_id, caller))
    return Response(status_code=204)


_FILE_ERRORS = problem_responses(401, 403, 404, 409, 503)


def _file(
    session: Session, settings: Settings, screening_id: str, caller: Caller, kind: service.Kind
) -> Path:
    return service.result_file(settings, _job(session, screening_id, caller), kind)


def _download(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get(
    "/screenings/{screening_id}/results.parquet",
    response_class=FileResponse,
    responses={**_FILE_ERRORS, 200: {"content": {PARQUET: {}}}},
    summary="The results: one row per screened patient, with the registry's ids",
)
def results_parquet(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> FileResponse:
    path = _file(session, settings, screening_id, caller, "results")
    return FileResponse(
        path, media_type=PARQUET, headers=_download(f"screening-{screening_id}.parquet")
    )


@router.get(
    "/screenings/{screening_id}/results.csv",
    response_class=StreamingResponse,
    responses={**_FILE_ERRORS, 200: {"content": {"text/csv": {}}}},
    summary="The results as CSV, converted while sent",
)
def results_csv(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> StreamingResponse:
    path = _file(session, settings, screening_id, caller, "results")
    return StreamingResponse(
        csv_chunks(path), media_type=CSV, headers=_download(f"screening-{screening_id}.csv")
    )


@router.get(
    "/screenings/{screening_id}/report.json",
    response_model=ScreeningReport,  # documents the file as sent; a FileResponse is not checked
    responses=_FILE_ERRORS,
    summary="The report: counts, funnels, missing data and rejected rows per rule set",
)
def report_json(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> FileResponse:
    path = _file(session, settings, screening_id, caller, "report")
    return FileResponse(path, media_type="application/json")


@router.get(
    "/screenings/{screening_id}/report.html",
    response_class=FileResponse,
    responses={**_FILE_ERRORS, 200: {"content": {"text/html": {}}}},
    summary="The report for people to read: one self-contained HTML page (no script)",
)
def report_html(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> FileResponse:
    path = _file(session, settings, screening_id, caller, "report_html")
    return html_report(path)


def html_report(path: Path) -> FileResponse:
    """The HTML report under a policy of its own (headers.REPORT_POLICY): the page is made from
    a registry's values and must not run anything whatever they hold."""
    return FileResponse(
        path,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": REPORT_POLICY, "Referrer-Policy": "no-referrer"},
    )


@router.get(
    "/screenings/{screening_id}/long.parquet",
    response_class=FileResponse,
    responses={**_FILE_ERRORS, 200: {"content": {PARQUET: {}}}},
    summary="The results in long format (asked for with `long`): one row per patient and "
    "rule set, with the registry's ids",
)
def long_parquet(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> FileResponse:
    path = _file(session, settings, screening_id, caller, "long")
    return FileResponse(
        path, media_type=PARQUET, headers=_download(f"screening-{screening_id}.long.parquet")
    )


@router.get(
    "/screenings/{screening_id}/problems.csv",
    response_class=FileResponse,
    responses={**_FILE_ERRORS, 200: {"content": {CSV: {}}}},
    summary="Cells read as unknown (row, where, id, registry column, feature, value, problem)",
)
def download_problems(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> FileResponse:
    path = _file(session, settings, screening_id, caller, "problems")
    return FileResponse(
        path, media_type=CSV, headers=_download(f"screening-{screening_id}.problems.csv")
    )


@router.get(
    "/screenings/{screening_id}/rejected.csv",
    responses={**_FILE_ERRORS, 200: {"content": {"text/csv": {}}}},
    summary="Rejected rows: row, where (file:line), id and problems, for the registry to fix",
)
def rejected_csv(
    screening_id: str, session: DbSession, caller: Screener, settings: Config
) -> FileResponse:
    path = _file(session, settings, screening_id, caller, "rejected")
    return FileResponse(
        path, media_type=CSV, headers=_download(f"screening-{screening_id}.rejected.csv")
    )


@router.get(
    "/screenings/{screening_id}/funnels/{ruleset_id}.svg",
    responses={**_FILE_ERRORS, 200: {"content": {"image/svg+xml": {}}}},
    summary="One rule set's CONSORT-style attrition funnel (SVG)",
)
def funnel_svg(
    screening_id: str, ruleset_id: str, session: DbSession, caller: Screener, settings: Config
) -> FileResponse:
    job = _job(session, screening_id, caller)
    path = service.result_file(settings, job, "funnel", ruleset_id)
    return FileResponse(
        path, media_type="image/svg+xml", headers={"Content-Security-Policy": IMAGE_POLICY}
    )
