"""Screening jobs as a service: check a request whole before accepting it, queue it, present
it, cancel it, and find its files. The running is app/services/screening_jobs.py's.

A request is refused with every reason at once (unknown rule sets, a source this server may
not read, a mapping or columns that do not fit, a source too wide), so an accepted job fails
only on what cannot be known before reading the rows. The check is bounded in time: it reads a
file's header and first lines only (jobs.preflight). Nothing here commits: the request's
session does, and the worker is woken only once it has.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, cast

import yaml
from pydantic import ConfigDict, Field, with_config
from sqlalchemy import event
from sqlalchemy.orm import Session

# typing_extensions': pydantic reads field descriptions from it on Python 3.11.
from typing_extensions import TypedDict

from app.batch.backends import FORMATS, SourceError
from app.batch.bulk import BulkError
from app.batch.mapping import MappingError
from app.db import screenings as repo
from app.db.models import FINISHED, Screening, ScreeningState
from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.engine.run import select
from app.errors import Conflict, FieldError, InvalidPayload, NotFound
from app.services import screening_jobs as jobs
from app.services.screening_jobs import ScreeningSummary
from app.services.screening_request import (
    INLINE_MAPPING,
    PathSource,
    ScreeningRequest,
    Source,
    UploadedMapping,
    UploadSource,
    UrlSource,
    stored_request,
)
from app.settings import Settings

MAX_LIST = 200
MAX_MAPPING_BYTES = 256 * 1024  # a mapping file, or a mapping given inline as JSON


@dataclass(frozen=True, slots=True)
class Submission:
    """What a POST asked for, from either body, not yet checked. An upload and a mapping file
    are already in the job's folder (`jobs.Layout`)."""

    job_id: str
    request: ScreeningRequest


@dataclass(frozen=True, slots=True)
class Asker:
    client_id: str | None
    name: str


MAX_LISTED = 200  # server sources listed for the web page to choose from


def server_sources(settings: Settings) -> list[tuple[Path, Path]]:
    """(allowed directory, entry): the files of a format screening reads and the folders (FHIR
    Bulk exports) directly in each ELIGO_SCREENING_SOURCES directory, at most MAX_LISTED. A
    choice is checked again as any path is (jobs.source_path), so listing proves nothing."""
    out: list[tuple[Path, Path]] = []
    for root in settings.screening_sources:
        try:
            resolved = root.resolve()
            entries = sorted(resolved.iterdir())
        except OSError:  # missing or unreadable: nothing to offer from it
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.suffix.lower() in FORMATS or entry.is_dir():
                out.append((resolved, entry))
            if len(out) >= MAX_LISTED:
                return out
    return out


def new_id() -> str:
    return str(uuid.uuid4())


def layout(settings: Settings) -> jobs.Layout:
    return jobs.Layout(settings.screening_folder())


def submit(
    session: Session, settings: Settings, rules: RuleBase, asker: Asker, sub: Submission
) -> Screening:
    """The queued job, added to the session; InvalidPayload naming every problem."""
    request, folder = sub.request, layout(settings)
    errors: list[FieldError] = []
    _check_rulesets(rules, request.rulesets, errors)
    if request.backend == "spark" and find_spec("pyspark") is None:
        field = request.backend_field
        errors.append(FieldError(field, "unavailable", "Spark is not installed here"))
    _check_mapping_size(request, settings, errors)
    source = _source(request.source, settings, errors)
    if _mapping_kept(request, folder, sub.job_id, errors):
        errors += _check_mapping(request, folder, sub.job_id, rules)
    if errors or source is None:
        raise InvalidPayload("the screening cannot run as asked", errors)
    accepted = request.model_copy(update={"source": source, "as_of": request.as_of or date.today()})
    _preflight(accepted, settings, rules, folder, sub.job_id)
    job = Screening(
        id=sub.job_id,
        state=ScreeningState.QUEUED,
        created_at=datetime.now(UTC),
        attempts=0,
        cancel_requested=False,
        request=accepted.model_dump(mode="json"),
        rows_done=0,
        rules_hash=rules.hash,
        client_id=asker.client_id,
        requested_by=asker.name,
    )
    repo.add(session, job)
    return job


def uploaded_mapping(settings: Settings, job_id: str, name: str) -> UploadedMapping:
    """A mapping file the body brought (already in the job's folder) as the request keeps
    it; InvalidPayload if it is not text."""
    try:
        text = layout(settings).mapping(job_id).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        error = FieldError("mapping", "not_utf8", "the mapping file is not UTF-8 text")
        raise InvalidPayload("the screening cannot run as asked", [error]) from None
    return UploadedMapping(name=name, text=text)


def _check_rulesets(rules: RuleBase, ids: list[str] | None, errors: list[FieldError]) -> None:
    try:
        select(rules, ids)
    except InvalidInput as exc:
        errors.extend(FieldError(i.field, i.code, i.message) for i in exc.issues)


def source_field(source: Source) -> str:
    """Where a problem with the source is reported: the field the client gave it in."""
    if isinstance(source, UploadSource):
        return "file"
    return "source.path" if isinstance(source, PathSource) else "source.url"


def _source(source: Source, settings: Settings, errors: list[FieldError]) -> Source | None:
    """The source as accepted (a path resolved), or None and why not."""
    try:
        if isinstance(source, PathSource):
            path = jobs.source_path(source.path, settings.screening_sources)
            return PathSource(path=str(path))
        if isinstance(source, UrlSource):
            jobs.database_url(source.url, settings.screening_url_prefixes)
    except SourceError as exc:
        errors.append(FieldError(source_field(source), exc.code or "source_refused", str(exc)))
        return None
    return source


def _mapping_kept(
    request: ScreeningRequest, folder: jobs.Layout, job_id: str, errors: list[FieldError]
) -> bool:
    """Whether the job's folder holds a mapping file to check: uploaded, or written here from
    the JSON (which is what the worker reads), unless refused for its size."""
    if request.mapping is None:
        return request.mapping_file is not None
    if any(e.field.startswith("mapping") and e.code.startswith("too_") for e in errors):
        return False  # refused: not written, not read
    text = yaml.safe_dump(request.mapping, sort_keys=False)
    folder.mapping(job_id).write_text(text, encoding="utf-8")
    return True


def _check_mapping_size(
    request: ScreeningRequest, settings: Settings, errors: list[FieldError]
) -> None:
    """A mapping given inline is as large as a mapping file may be (reading a large one as
    YAML takes seconds a megabyte), and names at most as many columns as a source may
    have."""
    if request.mapping is None:
        return
    size = len(json.dumps(request.mapping, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_MAPPING_BYTES:
        errors.append(
            FieldError(
                "mapping",
                "too_large",
                f"{size:,} bytes as JSON; a mapping may have at most {MAX_MAPPING_BYTES:,} "
                "(as a file too)",
            )
        )
    columns = request.mapping.get("columns")
    most = settings.screening_max_columns
    if isinstance(columns, dict) and len(columns) > most:
        errors.append(
            FieldError(
                "mapping.columns",
                "too_many_columns",
                f"{len(columns):,} columns mapped; a source may have at most {most:,} "
                "(ELIGO_SCREENING_MAX_COLUMNS)",
            )
        )


def _check_mapping(
    request: ScreeningRequest, folder: jobs.Layout, job_id: str, rules: RuleBase
) -> list[FieldError]:
    try:
        jobs.job_mapping(request, folder, job_id, rules.features)
    except MappingError as exc:
        return [FieldError("mapping", "invalid_mapping", p) for p in exc.problems]
    return []


def _preflight(
    accepted: ScreeningRequest,
    settings: Settings,
    rules: RuleBase,
    folder: jobs.Layout,
    job_id: str,
) -> None:
    """The source opened and its columns matched as the run will (jobs.preflight)."""
    try:
        request = jobs.run_request(
            accepted, folder, job_id, out=Path(), settings=settings, features=rules.features
        )
        jobs.preflight(request, rules, scratch=folder.job(job_id))
    except (MappingError, SourceError, BulkError) as exc:
        problems = _problems(exc, accepted, folder, job_id)
        raise InvalidPayload("the screening cannot run as asked", problems) from None


def _problems(
    exc: Exception, request: ScreeningRequest, folder: jobs.Layout, job_id: str
) -> list[FieldError]:
    """Column problems under `mapping` if one was given, else (like unreadable sources)
    under the source's field; each message names files as the caller knows them."""
    message = jobs.public_message(exc, request, folder, job_id)
    field = source_field(request.source)
    if isinstance(exc, MappingError):
        where = "mapping" if request.mapping_name is not None else field
        return [FieldError(where, "columns", line) for line in message.split("\n")]
    code = exc.code if isinstance(exc, SourceError) else None
    return [FieldError(field, code or "unreadable_source", message)]


def on_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action` once the request's transaction has committed (never if it fails): waking
    the worker for a job, or removing a cancelled job's files, before that would be early."""
    event.listen(session, "after_commit", lambda _: action(), once=True)


def find(session: Session, job_id: str, asker: Asker) -> Screening:
    """A job the asker may see: their own (it holds their registry's identifiers). Another
    client's is as unknown as one that does not exist."""
    job = repo.get(session, job_id)
    if job is None or job.client_id != asker.client_id:
        raise NotFound(f"no screening {job_id!r}; see GET /v1/screenings")
    return job


def recent(session: Session, asker: Asker, limit: int) -> ScreeningList:
    """The asker's jobs, newest first: GET /v1/screenings."""
    found = repo.recent(session, asker.client_id, min(limit, MAX_LIST))
    return {"items": [view(job) for job in found]}


def cancel(session: Session, settings: Settings, job: Screening) -> ScreeningJob:
    """Cancel a queued job at once, ask a running one to stop at its next batch; the job as
    it will be. The change is made in the commit (so on SQLite it is written under the commit
    lock, like every other write), conditional on the state then; a cancelled job's files go
    once that has committed. A finished job cannot be cancelled (409); a cancelled one can,
    again, to no effect."""
    if job.state == ScreeningState.CANCELLED:
        return view(job)
    if job.state in FINISHED:
        raise Conflict(f"screening {job.id} has already {job.state}; there is nothing to cancel")
    now = datetime.now(UTC)
    became: dict[str, ScreeningState | None] = {}

    def write(at_commit: Session) -> None:
        with at_commit.no_autoflush:
            became["state"] = repo.request_cancel(at_commit, job.id, now)

    def tidy() -> None:
        if became.get("state") == ScreeningState.CANCELLED:
            layout(settings).remove(job.id)

    event.listen(session, "before_commit", write, once=True)
    on_commit(session, tidy)
    shown = view(job)
    if job.state == ScreeningState.QUEUED:
        shown["state"] = ScreeningState.CANCELLED.value
        shown["finished_at"] = now
        shown["links"].pop("cancel", None)
        shown["links"]["delete"] = shown["links"]["self"]
    shown["cancel_requested"] = True
    return shown


def delete(session: Session, settings: Settings, job: Screening) -> None:
    """Remove a finished job: its row, then (once that has committed) its folder. The results
    hold the registry's identifiers, which the analyst may want off this server once
    downloaded. A queued or running job is cancelled first (409): a worker may be writing
    into the folder. A crash between the two leaves a folder without a row, which the
    worker's start-up tidying removes."""
    if job.state not in FINISHED:
        raise Conflict(
            f"screening {job.id} is {job.state}; cancel it first "
            f"(POST /v1/screenings/{job.id}/cancel), then delete it"
        )
    job_id = job.id
    gone: dict[str, bool] = {}

    def write(at_commit: Session) -> None:  # under the commit lock, as in cancel()
        with at_commit.no_autoflush:
            gone["row"] = repo.delete_finished(at_commit, job_id)

    def tidy() -> None:
        if gone.get("row"):
            layout(settings).remove(job_id)

    event.listen(session, "before_commit", write, once=True)
    on_commit(session, tidy)


# --- the job view: one typed definition, beside its builder ------------------------------------
# Plain dicts at run time, and the OpenAPI schema of the screening endpoints (app/api/schemas.py
# does not mirror them). The summary is app/services/screening_jobs.py's, as the job's row keeps it.

_STRICT = ConfigDict(extra="forbid")  # a key no builder writes is a contract test failure
StateText = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@with_config(_STRICT)
class ScreeningSourceView(TypedDict):
    kind: Literal["path", "upload", "url"]
    name: Annotated[str, Field(description="The file's name, or the table")]
    path: NotRequired[Annotated[str, Field(description="kind path: as resolved")]]
    url: NotRequired[Annotated[str, Field(description="kind url: without its password")]]
    table: NotRequired[Annotated[str, Field(description="kind url: table or schema.table")]]


@with_config(_STRICT)
class ScreeningMappingView(TypedDict):
    name: Annotated[str, Field(description='The file\'s name as sent, or "mapping" (inline)')]
    text: NotRequired[Annotated[str, Field(description="An uploaded file: its content")]]
    content: NotRequired[
        Annotated[dict[str, Any], Field(description="Given inline as JSON: the mapping")]
    ]


@with_config(_STRICT)
class ScreeningRequestView(TypedDict):
    """The job's request as accepted, without server secrets (a URL's password)."""

    source: ScreeningSourceView
    backend: Literal["duckdb", "spark"]
    rulesets: Annotated[list[str] | None, Field(description="null: all rule sets")]
    mapping: ScreeningMappingView | None
    as_of: Annotated[str | None, Field(description="FHIR Bulk: the day windows count back from")]
    long: bool
    strict: bool


@with_config(_STRICT)
class ScreeningProgress(TypedDict):
    rows_done: int
    rows_total: int | None
    percent: float | None


@with_config(_STRICT)
class ScreeningLinks(TypedDict):
    self: str
    cancel: NotRequired[Annotated[str, Field(description="POST, while queued or running")]]
    delete: NotRequired[Annotated[str, Field(description="DELETE, once finished")]]
    results_parquet: NotRequired[str]
    results_csv: NotRequired[str]
    report: NotRequired[str]
    report_html: NotRequired[
        Annotated[str, Field(description="The report for people to read (HTML)")]
    ]
    rejected: NotRequired[str]
    long: NotRequired[Annotated[str, Field(description="When asked for with `long`")]]
    problems: NotRequired[Annotated[str, Field(description="Cells read as unknown")]]
    funnels: NotRequired[Annotated[dict[str, str], Field(description="By rule set id")]]


@with_config(_STRICT)
class ScreeningJob(TypedDict):
    id: str
    state: StateText
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    requested_by: str
    request: ScreeningRequestView
    progress: ScreeningProgress
    attempts: Annotated[
        int, Field(description="Runs started; a run interrupted by a crash restarts")
    ]
    cancel_requested: bool
    rules_hash: str
    summary: Annotated[
        ScreeningSummary | None, Field(description="Counts per rule set, once succeeded")
    ]
    error: str | None
    links: Annotated[
        ScreeningLinks,
        Field(
            description="self; cancel (POST) while queued or running, delete (DELETE) once "
            "finished; once succeeded results_parquet, results_csv, report, report_html, "
            "rejected and funnels (by rule set id)"
        ),
    ]


@with_config(_STRICT)
class ScreeningList(TypedDict):
    items: list[ScreeningJob]


def view(job: Screening) -> ScreeningJob:
    """A job as the API shows it."""
    base = f"/v1/screenings/{job.id}"
    request = stored_request(job.request)
    return {
        "id": job.id,
        "state": cast(StateText, job.state),  # written as a ScreeningState
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "requested_by": job.requested_by,
        "request": _public(request),
        "progress": _progress(job),
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "rules_hash": job.rules_hash,
        # Written only by summary_of (the column is JSON, untyped to the database layer).
        "summary": cast(ScreeningSummary | None, job.summary),
        "error": job.error,
        "links": _links(job, request, base),
    }


def _public(request: ScreeningRequest) -> ScreeningRequestView:
    """The job's request as the API has always shown it: each source with its name (a URL
    without its password, an upload without the server's name for it), the mapping as
    given."""
    return {
        "source": _public_source(request.source),
        "backend": request.backend,
        "rulesets": request.rulesets,
        "mapping": _public_mapping(request),
        "as_of": request.as_of.isoformat() if request.as_of else None,
        "long": request.long,
        "strict": request.strict,
    }


def _public_source(source: Source) -> ScreeningSourceView:
    if isinstance(source, UploadSource):
        return {"kind": source.kind, "name": source.name}
    if isinstance(source, PathSource):
        return {"kind": source.kind, "name": source.name, "path": source.path}
    url = jobs.public_url(source.url)
    return {"kind": source.kind, "name": source.name, "url": url, "table": source.table}


def _public_mapping(request: ScreeningRequest) -> ScreeningMappingView | None:
    if request.mapping_file is not None:
        return {"name": request.mapping_file.name, "text": request.mapping_file.text}
    if request.mapping is not None:
        return {"name": INLINE_MAPPING, "content": request.mapping}
    return None


def _progress(job: Screening) -> ScreeningProgress:
    total = job.rows_total
    if job.state == ScreeningState.SUCCEEDED:
        percent: float | None = 100.0
    elif total:
        percent = round(min(job.rows_done / total, 1.0) * 100, 1)
    else:
        percent = None if total is None else 0.0
    return {"rows_done": job.rows_done, "rows_total": total, "percent": percent}


def _links(job: Screening, request: ScreeningRequest, base: str) -> ScreeningLinks:
    links: ScreeningLinks = {"self": base}
    if job.state in {ScreeningState.QUEUED, ScreeningState.RUNNING}:
        links["cancel"] = f"{base}/cancel"
    else:
        links["delete"] = base  # with DELETE
    if job.state == ScreeningState.SUCCEEDED and job.summary is not None:
        summary = cast(ScreeningSummary, job.summary)
        links["results_parquet"] = f"{base}/results.parquet"
        links["results_csv"] = f"{base}/results.csv"
        links["report"] = f"{base}/report.json"
        links["report_html"] = f"{base}/report.html"
        links["rejected"] = f"{base}/rejected.csv"
        if request.long:
            links["long"] = f"{base}/long.parquet"
        links["problems"] = f"{base}/problems.csv"
        links["funnels"] = {r["id"]: f"{base}/funnels/{r['id']}.svg" for r in summary["rulesets"]}
    return links


Kind = Literal["results", "report", "report_html", "rejected", "problems", "funnel", "long"]
# The files beside the results, by kind (the runner names them with these suffixes).
SIDE_FILES: dict[str, str] = {
    "report": ".report.json",
    "report_html": ".report.html",
    "rejected": ".rejected.csv",
    "problems": ".problems.csv",
}


def result_file(settings: Settings, job: Screening, kind: Kind, ruleset_id: str = "") -> Path:
    """One of a succeeded job's files: 409 while it is not (yet), 404 for a rule set it did
    not screen. Paths are built from the job's own id and recorded rule set ids only."""
    if job.state != ScreeningState.SUCCEEDED or job.summary is None:
        raise Conflict(f"screening {job.id} is {job.state}; results come once it has succeeded")
    files = layout(settings)
    if kind == "results":
        path = files.results(job.id, job.attempts)
    elif kind in SIDE_FILES:
        path = files.side(job.id, job.attempts, SIDE_FILES[kind])
    elif kind == "long":
        if not stored_request(job.request).long:
            raise NotFound(f"screening {job.id} was not asked for long-format results (long)")
        path = files.side(job.id, job.attempts, ".long.parquet")
    else:
        screened = {r["id"] for r in job.summary["rulesets"]}
        if ruleset_id not in screened:
            raise NotFound(f"screening {job.id} did not screen rule set {ruleset_id!r}")
        path = files.side(job.id, job.attempts, ".funnels") / f"{ruleset_id}.svg"
    if not path.is_file():
        if kind in OPTIONAL_FILES:  # written only when there is something to say, or newer
            raise NotFound(f"screening {job.id} has no {path.name}")
        raise NotFound(f"the files of screening {job.id} are no longer on this server")
    return path


# A succeeded job may lack these: problems only when a cell was unreadable, the HTML report
# only from runners that write one.
OPTIONAL_FILES = frozenset({"report_html", "problems"})


def has_file(settings: Settings, job: Screening, kind: Kind) -> bool:
    """Whether a succeeded job has this file (the web page offers only those it has)."""
    try:
        result_file(settings, job, kind)
    except (Conflict, NotFound):
        return False
    return True
