"""Registry screening from the clinician form's site, for users allowed to screen.

`GET /screen` is the request form (an upload, or a source on this server; the rule sets, all
ticked) above the user's own jobs; `POST /screen` checks and queues the job exactly as
`POST /v1/screenings` does (app/services/screenings.py) and redirects to `/screen/<id>`: state,
progress, counts once done, the HTML report and the downloads, cancel and delete. Everything
works without JavaScript; with it, the job page follows progress by polling the job's JSON.

Who may: a signed-in user whom ELIGO_SCREENING_WEB_CLIENTS links to an API client holding the
`screen` scope, acting as that client (its jobs are theirs, as through the API); everyone in
development mode. Others get a page saying what is missing (403). A job of another client is
as unknown as one that does not exist (404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from sqlalchemy.orm import Session

from app.api import web_auth
from app.api.deps import DEVELOPMENT_CALLER, DbSession, commit, get_settings
from app.api.headers import IMAGE_POLICY
from app.api.responses import FastJSONResponse
from app.api.screenings import CSV, MAX_MAPPING_BYTES, PARQUET, TICKED, UNTICKED, html_report
from app.api.upload import Form, read_form
from app.api.web import Config, Rules, _cross_site, _no_viewer, _page, _refused, _who
from app.batch.backends import FORMATS
from app.db import clients
from app.db.models import Screening
from app.engine.model import RuleBase
from app.errors import Conflict, EligoError, FieldError, InvalidPayload, NotFound
from app.security import Scope
from app.services import screenings as service
from app.services.screening_jobs import Layout, Worker, csv_chunks
from app.services.screening_request import (
    PathSource,
    ScreeningRequest,
    UploadedMapping,
    UploadSource,
)
from app.settings import Settings
from app.web import screening as shown

router = APIRouter(include_in_schema=False)
SCREEN_PATH = "/screen"  # exempt from the generic body limit: uploads have their own
# "file" and "mapping" come as text when a client sends an empty file input without a file
# name (a browser sends `filename=""`): read, and treated as no file.
FIELDS = ("csrf_token", "source", "path", "rulesets", "as_of", "strict", "long", "file", "mapping")
LISTED_JOBS = 20
REFRESH_SECONDS = 3  # the job page's reload without JavaScript, while the job runs


@dataclass(frozen=True, slots=True)
class Screener:
    viewer: web_auth.Viewer
    asker: service.Asker


def screener(request: Request, session: Session, settings: Settings) -> Screener | Response:
    """The signed-in user as the API client they screen as, or the page to answer instead."""
    viewer = _who(request, session, settings)
    if viewer is None:
        return _no_viewer(request, settings)
    if not settings.auth:  # as the API without authentication: jobs without a client
        return Screener(viewer, service.Asker(None, DEVELOPMENT_CALLER.name))
    client_id = settings.screening_web_clients.get((viewer.username or "").casefold())
    client = clients.find(session, client_id) if client_id else None
    if client is None or client.revoked_at is not None or Scope.SCREEN not in client.scopes:
        return _no_scope(request, settings, viewer)
    asker = service.Asker(client.id, f"{viewer.username} (web) via {client.name}"[:200])
    return Screener(viewer, asker)


def _no_scope(request: Request, settings: Settings, viewer: web_auth.Viewer) -> Response:
    return _page(
        request,
        settings,
        "message.html",
        {
            "viewer": viewer,
            "title": "You need the screen scope",
            "message": "Screening a registry needs the `screen` scope, and your account is not "
            "linked to an API client that holds it. An administrator can link it "
            "(ELIGO_SCREENING_WEB_CLIENTS) to such a client; evaluating one patient at a time "
            "needs nothing more.",
        },
        403,
    )


def _message(
    request: Request, settings: Settings, who: Screener, title: str, text: str, *, status: int
) -> Response:
    context = {"viewer": who.viewer, "title": title, "message": text, "back": SCREEN_PATH}
    return _page(request, settings, "message.html", context, status)


# --- the request form ------------------------------------------------------------------------


@dataclass
class Entered:
    """What the user chose, shown again with the problems: nothing they did is lost but the
    files (a browser cannot be given a file back)."""

    source: str = "upload"
    path: str = ""
    rulesets: list[str] | None = None  # None: all ticked
    as_of: str = ""
    strict: bool = False  # a bad cell rejects its row
    long: bool = False  # long-format results too
    unreadable: list[str] = field(default_factory=list)  # boxes sent with a value not a yes/no


def _form_page(
    request: Request,
    settings: Settings,
    session: Session,
    rules: RuleBase,
    who: Screener,
    *,
    entered: Entered | None = None,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Response:
    entered = entered or Entered()
    jobs = service.recent(session, who.asker, LISTED_JOBS)["items"]
    context = {
        "viewer": who.viewer,
        "groups": shown.groups(rules.rulesets.values()),
        "sources": shown.server_sources(service.server_sources(settings)),
        "entered": entered,
        "ticked": set(entered.rulesets if entered.rulesets is not None else rules.rulesets),
        "errors": errors or {},
        "formats": ", ".join(sorted(FORMATS)),
        "max_upload": _size(settings.screening_max_upload_bytes),
        "max_mapping": _size(MAX_MAPPING_BYTES),
        "jobs": [(job, shown.progress(job), shown.source_words(job)) for job in jobs],
        "states": shown.STATES,
    }
    return _page(request, settings, "screen.html", context, status)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"


@router.get(SCREEN_PATH, response_class=HTMLResponse)
def screen_page(request: Request, session: DbSession, rules: Rules, settings: Config) -> Response:
    who = screener(request, session, settings)
    if isinstance(who, Response):
        return who
    return _form_page(request, settings, session, rules, who)


def admission(request: Request, session: DbSession, settings: Config) -> Screener | Response:
    """Who posts, or the page to answer instead, judged before the body is read: a
    stranger's upload is never written."""
    who = screener(request, session, settings)
    if isinstance(who, Response):
        return who
    return _cross_site(request, settings) or who


Admitted = Annotated[Screener | Response, Depends(admission)]


@dataclass
class Posted:
    """The request form as read: its fields, its files in the job's folder (which goes
    again unless the job is recorded), or why it could not be read."""

    job_id: str
    form: Form = field(default_factory=Form)
    errors: dict[str, list[str]] = field(default_factory=dict)
    status: int = 200
    accepted: bool = False


async def posted(request: Request, admitted: Admitted) -> AsyncIterator[Posted | None]:
    """The body streamed into a new job folder, for an admitted user only (else None and the
    body unread); the folder is removed afterwards unless the job was recorded."""
    if isinstance(admitted, Response):
        yield None
        return
    settings = get_settings(request)
    files = service.layout(settings)
    found = Posted(service.new_id())
    files.create(found.job_id)
    try:
        try:
            found.form, found.errors = await _read(request, files, found.job_id, settings)
        except InvalidPayload as exc:
            found.errors, found.status = shown.field_errors(exc.errors), 422
        except EligoError as exc:  # too large, not multipart, cut short
            limit = _size(settings.screening_max_upload_bytes)
            said = f"larger than the {limit} a registry upload may be" if exc.status == 413 else ""
            found.errors, found.status = {"file": [said or exc.detail]}, exc.status
        yield found
    finally:
        if not found.accepted:
            files.remove(found.job_id)


async def _read(
    request: Request, files: Layout, job_id: str, settings: Settings
) -> tuple[Form, dict[str, list[str]]]:
    """The form, and the problems with its files the page shows (a file of a format screening
    does not read)."""
    limit = settings.screening_max_upload_bytes
    wrong: list[str] = []

    def destination(name: str, filename: str) -> tuple[Path, int]:
        if name not in ("file", "mapping"):
            raise InvalidPayload("", [FieldError(name, "extra_forbidden", "unexpected file")])
        if not filename:  # a file input left empty: a part with no name and no bytes
            return files.job(job_id) / f"unused-{name}", 0
        if name == "mapping":
            return files.mapping(job_id), MAX_MAPPING_BYTES
        suffix = Path(filename).suffix.lower()
        if suffix not in FORMATS:
            # Read to its end all the same (and dropped with the folder): the form's token
            # and choices come whole, so the page can say what is wrong next to the field.
            known = ", ".join(sorted(FORMATS))
            wrong.append(f"{filename}: a registry is read from {known}")
            return files.job(job_id) / "unused-file", limit
        return files.upload(job_id, suffix), limit

    form = await read_form(request, limit=limit, destination=destination, fields=FIELDS)
    if wrong:
        form.files.pop("file", None)
    return form, {"file": wrong} if wrong else {}


Body = Annotated[Posted | None, Depends(posted, scope="function")]


@router.post(SCREEN_PATH, response_class=HTMLResponse)
def submit(
    *,
    request: Request,
    admitted: Admitted,
    body: Body,
    session: DbSession,
    rules: Rules,
    settings: Config,
) -> Response:
    """Synchronous: the check before a job is accepted reads the source (jobs.preflight)."""
    if isinstance(admitted, Response) or body is None:
        return admitted if isinstance(admitted, Response) else RedirectResponse(SCREEN_PATH, 303)
    if body.status != 200:
        # A body that could not be read whole (too large, cut short) has no token to compare
        # and no choices to show again: the form with the problem, and nothing is done.
        return _form_page(
            request, settings, session, rules, admitted, errors=body.errors, status=body.status
        )
    fields = body.form.fields
    token = next(iter(fields.get(web_auth.CSRF_FIELD, [])), None)
    try:
        web_auth.check_csrf(request, settings, token)
    except web_auth.CrossSiteRefused as exc:
        return _refused(request, settings, exc)
    entered = _entered(fields, rules)
    submission, errors = _submission(body, entered, settings)
    if submission is not None:
        try:
            job = service.submit(session, settings, rules, admitted.asker, submission)
        except InvalidPayload as exc:
            errors = shown.field_errors(exc.errors)
        else:
            worker: Worker = request.app.state.screening_worker
            service.on_commit(session, worker.wake)
            commit(request, session)
            body.accepted = True
            return RedirectResponse(f"{SCREEN_PATH}/{job.id}", status_code=303)
    return _form_page(
        request, settings, session, rules, admitted, entered=entered, errors=errors, status=422
    )


def _entered(fields: dict[str, list[str]], rules: RuleBase) -> Entered:
    def one(name: str) -> str:
        return (fields.get(name) or [""])[0].strip()

    ticked = fields.get("rulesets", [])
    boxes = {name: one(name).lower() for name in ("strict", "long")}
    return Entered(
        source="path" if one("source") == "path" else "upload",
        path=one("path"),
        rulesets=shown.chosen(ticked, rules.rulesets),
        as_of=one("as_of"),
        strict=boxes["strict"] in TICKED,
        long=boxes["long"] in TICKED,
        unreadable=[name for name, value in boxes.items() if value not in TICKED | UNTICKED],
    )


def _submission(
    body: Posted, entered: Entered, settings: Settings
) -> tuple[service.Submission | None, dict[str, list[str]]]:
    """The request as the service takes it, or the problems the page can name first."""
    errors = dict(body.errors)
    for name in entered.unreadable:  # only a hand-made request: the form sends `true`
        errors.setdefault(name, []).append("tick the box or leave it empty (true or false)")
    if entered.rulesets == []:
        errors.setdefault("rulesets", []).append("tick at least one rule set")
    as_of = _day(entered, errors)
    upload = body.form.files.get("file")
    if entered.source == "path" and not entered.path:
        errors.setdefault("path", []).append("choose a source on the server")
    chosen = upload is not None and upload.filename
    if entered.source != "path" and not chosen and "file" not in errors:
        errors.setdefault("file", []).append(
            "choose the registry file to upload (or a source on the server)"
        )
    mapping = _mapping_file(body, settings, errors)
    if errors:
        return None, errors
    source: PathSource | UploadSource = (
        PathSource(path=entered.path)
        if entered.source == "path"
        else UploadSource(name=upload.filename if upload else "")
    )
    request = ScreeningRequest(
        source=source,
        mapping_file=mapping,
        rulesets=entered.rulesets,
        as_of=as_of,
        long=entered.long,
        strict=entered.strict,
    )
    return service.Submission(body.job_id, request), {}


def _day(entered: Entered, errors: dict[str, list[str]]) -> date | None:
    if not entered.as_of:
        return None
    try:
        return date.fromisoformat(entered.as_of)
    except ValueError:
        errors.setdefault("as_of", []).append("write the day as YYYY-MM-DD")
        return None


def _mapping_file(
    body: Posted, settings: Settings, errors: dict[str, list[str]]
) -> UploadedMapping | None:
    """The mapping file chosen, if one was (an empty file input sends a nameless part)."""
    mapping = body.form.files.get("mapping")
    if mapping is None or not mapping.filename:
        return None
    try:
        return service.uploaded_mapping(settings, body.job_id, mapping.filename)
    except InvalidPayload as exc:
        for field, said in shown.field_errors(exc.errors).items():
            errors.setdefault(field, []).extend(said)
        return None


# --- a job -----------------------------------------------------------------------------------


def _find(session: Session, job_id: str, who: Screener) -> Screening | None:
    try:
        return service.find(session, job_id, who.asker)
    except NotFound:
        return None


def _not_found(request: Request, settings: Settings, who: Screener, job_id: str) -> Response:
    text = f"There is no screening {job_id[:40]!r} of yours. It may have been deleted."
    return _message(request, settings, who, "Screening not found", text, status=404)


# The files a succeeded job offers: (label, file name in the link, kind, media type).
DOWNLOADS: tuple[tuple[str, str, service.Kind, str], ...] = (
    ("Results (CSV)", "results.csv", "results", CSV),
    ("Results (Parquet)", "results.parquet", "results", PARQUET),
    ("Results in long format (Parquet)", "long.parquet", "long", PARQUET),
    ("Rejected rows (CSV)", "rejected.csv", "rejected", CSV),
    ("Unreadable cells (CSV)", "problems.csv", "problems", CSV),
    ("Report (JSON)", "report.json", "report", "application/json"),
)
_BY_NAME = {name: (kind, media) for _, name, kind, media in DOWNLOADS}


@router.get(SCREEN_PATH + "/{job_id}", response_class=HTMLResponse)
def job_page(
    job_id: str, request: Request, session: DbSession, rules: Rules, settings: Config
) -> Response:
    who = screener(request, session, settings)
    if isinstance(who, Response):
        return who
    job = _find(session, job_id, who)
    if job is None:
        return _not_found(request, settings, who, job_id)
    view = service.view(job)
    base = f"{SCREEN_PATH}/{job.id}"
    succeeded = view["state"] == "succeeded"
    offered: tuple[service.Kind, ...] = (
        "results",
        "rejected",
        "problems",
        "report",
        "report_html",
        "long",
    )
    has = {kind for kind in offered if succeeded and service.has_file(settings, job, kind)}
    summary = view["summary"]
    if summary is not None and summary.get("unknown_cells") == 0:
        has.discard("problems")  # no cell read as unknown (always so under strict): empty
    context: dict[str, Any] = {
        "viewer": who.viewer,
        "job": view,
        "base": base,
        "state": shown.STATES[view["state"]],
        "finished": view["state"] in shown.FINISHED,
        "progress": shown.progress(view),
        "source": shown.source_words(view),
        "counts": shown.counts(view, rules.rulesets),
        "headings": [shown.HEADINGS[s] for s in shown.STATUSES],
        "downloads": [
            (label, f"{base}/{name}") for label, name, kind, _ in DOWNLOADS if kind in has
        ],
        "report_html": f"{base}/report.html" if "report_html" in has else None,
        "funnels": view["links"].get("funnels", {}) if "report" in has else {},
        "refresh": REFRESH_SECONDS,
    }
    return _page(request, settings, "screening.html", context)


@router.get(SCREEN_PATH + "/{job_id}/job.json")
def job_json(job_id: str, request: Request, session: DbSession, settings: Config) -> Response:
    """The job as the API shows it, for the page's script to follow progress."""
    who = screener(request, session, settings)
    if isinstance(who, Response):
        return who
    job = _find(session, job_id, who)
    if job is None:
        return FastJSONResponse({"detail": "not found"}, status_code=404)
    return FastJSONResponse(service.view(job))


def _job_file(
    request: Request,
    session: Session,
    settings: Settings,
    job_id: str,
    *,
    kind: service.Kind,
    ruleset_id: str = "",
) -> Path | Response:
    who = screener(request, session, settings)
    if isinstance(who, Response):
        return who
    job = _find(session, job_id, who)
    if job is None:
        return _not_found(request, settings, who, job_id)
    try:
        return service.result_file(settings, job, kind, ruleset_id)
    except (Conflict, NotFound) as exc:
        return _message(request, settings, who, "Not available", exc.detail, status=exc.status)


@router.get(SCREEN_PATH + "/{job_id}/report.html", response_class=HTMLResponse)
def report(job_id: str, request: Request, session: DbSession, settings: Config) -> Response:
    found = _job_file(request, session, settings, job_id, kind="report_html")
    return found if isinstance(found, Response) else html_report(found)


@router.get(SCREEN_PATH + "/{job_id}/funnels/{ruleset_id}.svg")
def funnel(
    job_id: str, ruleset_id: str, request: Request, session: DbSession, settings: Config
) -> Response:
    found = _job_file(request, session, settings, job_id, kind="funnel", ruleset_id=ruleset_id)
    if isinstance(found, Response):
        return found
    policy = {"Content-Security-Policy": IMAGE_POLICY}
    return FileResponse(found, media_type="image/svg+xml", headers=policy)


@router.get(SCREEN_PATH + "/{job_id}/{name}")
def download(
    job_id: str, name: str, request: Request, session: DbSession, settings: Config
) -> Response:
    if name not in _BY_NAME:
        who = screener(request, session, settings)
        if isinstance(who, Response):
            return who
        return _message(request, settings, who, "Not found", "There is no such file.", status=404)
    kind, media = _BY_NAME[name]
    found = _job_file(request, session, settings, job_id, kind=kind)
    if isinstance(found, Response):
        return found
    attachment = {"Content-Disposition": f'attachment; filename="screening-{job_id}.{name}"'}
    if name == "results.csv":  # converted from the Parquet results while sent
        return StreamingResponse(csv_chunks(found), media_type=CSV, headers=attachment)
    return FileResponse(found, media_type=media, headers=attachment)


async def small_form(request: Request, admitted: Admitted) -> dict[str, str]:
    """A cancel or delete button's form: a CSRF token, nothing else, never more than that."""
    if isinstance(admitted, Response):
        return {}
    form = await request.form(max_files=0, max_fields=5, max_part_size=1024)
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


Small = Annotated[dict[str, str], Depends(small_form)]


@dataclass(frozen=True, slots=True)
class _Button:
    """A job page's button: the service's action, the page's title when the job's state
    forbids it (409), and whether the job's page follows (else the list: the job is gone)."""

    act: Callable[[Session, Settings, Screening], object]
    refused: str
    to_job: bool

    def press(
        self,
        request: Request,
        session: Session,
        settings: Settings,
        admitted: Screener | Response,
        *,
        form: dict[str, str],
        job_id: str,
    ) -> Response:
        """Pressed by a user who may, with a form from this site."""
        if isinstance(admitted, Response):
            return admitted
        try:
            web_auth.check_csrf(request, settings, form.get(web_auth.CSRF_FIELD))
        except web_auth.CrossSiteRefused as exc:
            return _refused(request, settings, exc)
        job = _find(session, job_id, admitted)
        if job is None:
            return _not_found(request, settings, admitted, job_id)
        try:
            self.act(session, settings, job)
        except Conflict as exc:
            return _message(request, settings, admitted, self.refused, exc.detail, status=409)
        return RedirectResponse(f"{SCREEN_PATH}/{job.id}" if self.to_job else SCREEN_PATH, 303)


_CANCEL = _Button(service.cancel, "Cannot cancel", to_job=True)
_DELETE = _Button(service.delete, "Cannot delete yet", to_job=False)


@router.post(SCREEN_PATH + "/{job_id}/cancel", response_class=HTMLResponse)
def cancel(
    *,
    job_id: str,
    request: Request,
    admitted: Admitted,
    form: Small,
    session: DbSession,
    settings: Config,
) -> Response:
    return _CANCEL.press(request, session, settings, admitted, form=form, job_id=job_id)


@router.post(SCREEN_PATH + "/{job_id}/delete", response_class=HTMLResponse)
def delete(
    *,
    job_id: str,
    request: Request,
    admitted: Admitted,
    form: Small,
    session: DbSession,
    settings: Config,
) -> Response:
    return _DELETE.press(request, session, settings, admitted, form=form, job_id=job_id)
