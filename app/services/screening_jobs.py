"""Registry screenings as server jobs: queued in the database, run by worker threads, restarted
after a crash, cancellable.

    POST /v1/screenings --row `queued`--> Worker claims it --screen()--> `succeeded`
                                                     |--Cancelled--> `cancelled` (files removed)
                                                     |--bad input--> `failed` (the message)
                                                     +--process dies--> heartbeat goes stale
                                                                        --> `queued` again

Why it is built this way:
- The queue is the `screenings` table (app/db/screenings.py), not a broker: the service already
  has a database that every process shares, and a job must outlive the process that took it.
- A heartbeat thread per running job, not writes from the progress callback: the runner calls
  back between batches only, and a large source can go a long time before its first batch
  (counting, the validation query, the report). The heartbeat also carries the progress and
  brings back `cancel_requested`, so the runner's `cancelled()` reads a flag, not the database.
- A restart starts from scratch: the runner writes each file whole or not at all, so nothing a
  dead attempt left can pass for a result. Each attempt writes in a folder of its own, and every
  change to the row names the attempt, so an attempt that lost its job (its process stalled
  past the stale timeout and another took over) can neither overwrite nor record anything.
- The outcome's write (succeeded, failed, cancelled) is tried again with backoff for a few
  seconds when the database is briefly unavailable: the heartbeat has stopped by then, so a
  lost write would leave the job `running` until stale, then screen it again from scratch.
- Logs name jobs by id and exceptions by class and code location, never by message: messages
  from a data source can quote its cells, and the results are the registry's own identifiers.

Files: `<screening dir>/<job id>/` holds the upload (`source.<ext>`, removed once the job is
finished), the mapping (`mapping.yaml`) and `attempt-<n>/results.parquet` with the runner's side
files beside it. Only files the worker made are ever removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, NotRequired, ParamSpec, TypeVar

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import ConfigDict, with_config
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

# typing_extensions': pydantic reads field descriptions from it on Python 3.11.
from typing_extensions import TypedDict

from app.batch import funnel, head
from app.batch.backends import (
    FORMATS,
    Backend,
    DuckDBBackend,
    SourceError,
    file_format,
)
from app.batch.bulk import BulkError
from app.batch.database import DatabaseBackend
from app.batch.mapping import MappingError, MappingFile, RawKind, load_mapping, plan
from app.batch.runner import Cancelled, Outcome, Request, screen, side_file
from app.db import screenings as repo
from app.db.models import ScreeningState
from app.db.session import normalise_url
from app.engine.inputs import InvalidInput
from app.engine.model import Feature, RuleBase
from app.engine.present import StatusText
from app.services.screening_request import (
    PathSource,
    ScreeningRequest,
    UploadSource,
    UrlSource,
    stored_request,
)
from app.settings import Settings

log = logging.getLogger("eligo.screening")

MAX_ATTEMPTS = 3
HEARTBEAT_SECONDS = 1.0
POLL_SECONDS = 1.0
STOP_SECONDS = 10.0
ORPHAN_SECONDS = 3600  # a folder without a row this old was left by a failed submission
RETRY_FIRST_SECONDS = 0.1  # a final write the database refused is tried again after this,
RETRY_MAX_SECONDS = 2.0  # then twice as long each time, up to this
BAD_INPUT = (SourceError, BulkError, MappingError, InvalidInput)
UNEXPECTED = "the screening failed unexpectedly; the server log has the details (by job id)"
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a job's files are. Job ids are UUIDs this service made, never caller text."""

    root: Path

    def job(self, job_id: str) -> Path:
        return self.root / job_id

    def create(self, job_id: str) -> Path:
        """The job's folder, readable by this service's user only (it holds registry data)."""
        self.root.mkdir(parents=True, exist_ok=True)
        folder = self.job(job_id)
        folder.mkdir(mode=0o700)
        return folder

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.job(job_id), ignore_errors=True)

    def mapping(self, job_id: str) -> Path:
        return self.job(job_id) / "mapping.yaml"

    def upload(self, job_id: str, suffix: str) -> Path:
        return self.job(job_id) / f"source{suffix}"

    def attempt(self, job_id: str, attempt: int) -> Path:
        return self.job(job_id) / f"attempt-{attempt}"

    def results(self, job_id: str, attempt: int) -> Path:
        return self.attempt(job_id, attempt) / "results.parquet"

    def side(self, job_id: str, attempt: int, suffix: str) -> Path:
        """`.report.json`, `.rejected.csv` or `.funnels` beside the results."""
        return side_file(self.results(job_id, attempt), suffix)

    def fresh_attempt(self, job_id: str, attempt: int) -> Path:
        """An empty folder for this attempt; earlier attempts' folders go (their partial
        files, or a stalled attempt's whole results, must never be served)."""
        for old in self.job(job_id).glob("attempt-*"):
            shutil.rmtree(old, ignore_errors=True)
        folder = self.attempt(job_id, attempt)
        folder.mkdir(mode=0o700, parents=True)
        return folder


# Sources a request may name -------------------------------------------------------------


def source_path(given: str, allowed: Sequence[Path]) -> Path:
    """A file or FHIR Bulk folder inside one of the allowed directories, with symlinks and
    `..` resolved before the check (so neither can lead outside). A relative path is looked
    up in each allowed directory in turn."""
    if not allowed:
        raise SourceError("this server reads no source by path (ELIGO_SCREENING_SOURCES is empty)")
    if "\x00" in given:  # the API refuses it first; the CLI and stored requests come here
        raise SourceError("a path cannot contain U+0000 (NUL)", "invalid_character")
    wanted = Path(given)
    candidates = [wanted] if wanted.is_absolute() else [root / wanted for root in allowed]
    roots = [root.resolve() for root in allowed]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            if not any(resolved.is_relative_to(root) for root in roots):
                continue
            is_dir, is_file = resolved.is_dir(), resolved.is_file()
        except (OSError, ValueError):  # ValueError: a name the file system cannot encode
            continue
        if is_dir:
            return resolved
        if is_file:
            if resolved.suffix.lower() not in FORMATS:
                known = ", ".join(sorted(FORMATS))
                raise SourceError(f"{given}: unsupported format (use {known}, or a folder)")
            return resolved
    raise SourceError(
        f"{given}: no such file or folder in the directories this server reads "
        "(ELIGO_SCREENING_SOURCES)"
    )


def database_url(given: str, allowed: Sequence[str]) -> str:
    """The URL to connect with, if `given` names a database an allowed entry names: the same
    backend, host, port and database, the entry's user if it names one, and no query
    parameters of its own (libpq takes `host=` and `service=` there, which could lead
    anywhere). The entry's password is used when `given` has none."""
    parsed = _url(given)
    for entry in allowed:
        permitted = _url(entry)
        if _same_database(parsed, permitted):
            password = parsed.password if parsed.password is not None else permitted.password
            url = normalise_url(parsed.set(password=password).render_as_string(False))
            _driver_installed(make_url(url))
            return url
    raise SourceError(
        "this database is not one the server may read from (ELIGO_SCREENING_URL_PREFIXES)"
    )


def _driver_installed(url: URL) -> None:
    """The URL's dialect and driver are installed and synchronous (an allowed database named
    with `+pg8000` or `+asyncpg` must be a 422, not a failure inside the backend). The
    message names the driver, never the URL's credentials."""
    driver = url.drivername
    try:
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        raise SourceError(
            f"no database dialect {driver!r} here; use postgresql:// (psycopg)",
            "driver_unavailable",
        ) from None
    except ImportError as exc:
        module = exc.name or url.get_driver_name()
        raise SourceError(
            f"the database driver {module!r} ({driver}) is not installed here; "
            "use postgresql:// (psycopg)",
            "driver_unavailable",
        ) from None
    if getattr(dialect, "is_async", False):
        raise SourceError(
            f"{driver} is an asynchronous driver; use postgresql:// (psycopg)",
            "driver_unavailable",
        )


def _url(text: str) -> URL:
    try:
        return make_url(text)
    except ArgumentError:
        raise SourceError("not a database URL (e.g. postgresql://user@host/database)") from None


def _same_database(given: URL, permitted: URL) -> bool:
    return (
        given.get_backend_name() == permitted.get_backend_name()
        and (given.host or "").lower() == (permitted.host or "").lower()
        and (given.port or 5432) == (permitted.port or 5432)
        and given.database == permitted.database
        and (permitted.username is None or given.username == permitted.username)
        and dict(given.query) == dict(permitted.query)
    )


def public_url(text: str) -> str:
    """A database URL for a response: never its password."""
    try:
        return make_url(text).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


# From the typed request to the runner's ------------------------------------------------


def source_of(request: ScreeningRequest, layout: Layout, job_id: str, settings: Settings) -> str:
    """The runner's `source`, checked again now: the settings may have changed since."""
    source = request.source
    if isinstance(source, UploadSource):
        return str(layout.upload(job_id, source.suffix))
    if isinstance(source, PathSource):
        return str(source_path(source.path, settings.screening_sources))
    return database_url(source.url, settings.screening_url_prefixes)


def job_mapping(
    request: ScreeningRequest, layout: Layout, job_id: str, features: Mapping[str, Feature]
) -> MappingFile | None:
    """The job's mapping file (in its folder, however it was given), its problems naming it
    as the caller did."""
    if request.mapping_name is None:
        return None
    return load_mapping(layout.mapping(job_id), features, name=request.mapping_name)


def run_request(
    request: ScreeningRequest,
    layout: Layout,
    job_id: str,
    *,
    out: Path,
    settings: Settings,
    features: Mapping[str, Feature],
) -> Request:
    """What the runner takes for this job: the request with the job's server paths resolved
    (its upload and mapping in its folder) and the server's limits. The source is named as
    the caller knows it, so the runner's own messages never show a server path."""
    source = request.source
    return Request(
        source=source_of(request, layout, job_id, settings),
        out=out,
        table=source.table if isinstance(source, UrlSource) else None,
        mapping=job_mapping(request, layout, job_id, features),
        rulesets=request.rulesets,
        backend=request.backend,
        as_of=request.as_of or date.today(),
        long=request.long,
        source_name=source.name,
        limits=settings.screening_limits(),
        strict=request.strict,
    )


def preflight(request: Request, rules: RuleBase, scratch: Path) -> None:
    """Open the source and match its columns, as the runner will, so a request that cannot
    run is refused with the reason instead of accepted and failed. Bounded in time whatever
    the source: a file's header is checked within its limits first (app/batch/head.py),
    then DuckDB reads a Parquet file's schema, or at most the first
    ELIGO_SCREENING_PREFLIGHT_BYTES of a CSV or NDJSON file (copied to `scratch`, the job's
    folder, and removed); a database gives its catalogue. What lies further in a file is the
    job's to find. A FHIR Bulk folder is read whole by the runner only (mapping it is the
    screening itself)."""
    path = Path(request.source)
    if request.table is None and path.is_dir():
        return
    backend: Backend
    if request.table is not None:
        key = request.mapping.key if request.mapping else "id"
        backend = DatabaseBackend(request.source, key=key, limits=request.limits)
    else:  # whichever backend runs it, the file's columns are the same
        backend = DuckDBBackend(request.limits)
    try:
        if request.table is not None:
            _, kinds = backend.open(request.table)
        else:
            assert isinstance(backend, DuckDBBackend)
            kinds = _sampled_columns(backend, path, request, scratch)
        plan(kinds, rules.features, request.mapping, name=request.source_name or "source")
    finally:
        backend.close()


def _sampled_columns(
    backend: DuckDBBackend, path: Path, request: Request, scratch: Path
) -> dict[str, RawKind]:
    """A file's columns as DuckDB finds them, from its first lines only when it is larger
    than the sample. The header is checked on the file itself first."""
    fmt = file_format(path)
    if fmt == "parquet" or not path.is_file():
        return backend.open(str(path))[1]
    try:
        head.check(path, fmt, request.limits)
        part = head.sample(path, request.limits)
    except head.HeadError as exc:
        raise SourceError(str(exc), exc.code) from None
    if part is None:
        return backend.open(str(path))[1]
    copy = scratch / f"preflight-sample{path.suffix.lower()}"
    try:
        try:
            copy.write_bytes(part)
            kinds = backend.open(str(copy))[1]
        except SourceError:
            if fmt != "csv":  # an NDJSON record never spans lines: its defect is real
                raise
            # The cut may fall inside a quoted value: the header alone still names the
            # columns. Any defect of the first lines is then the job's to report.
            copy.write_bytes(head.first_line(path, request.limits.header_bytes) + b"\n")
            kinds = backend.open(str(copy))[1]
    except SourceError as exc:
        raise SourceError(str(exc).replace(str(copy), str(path)), exc.code) from None
    finally:
        copy.unlink(missing_ok=True)
    if fmt == "ndjson":  # keys that first appear past the sample may still be there
        kinds = {column: RawKind.JSON for column in _named(request.mapping)} | kinds
    return kinds


def _named(mapping: MappingFile | None) -> list[str]:
    """The columns a screening reads by name: the key and the mapped columns."""
    if mapping is None:
        return ["id"]
    return [mapping.key, *(wanted.column for wanted in mapping.wanted.values())]


def public_message(exc: Exception, request: ScreeningRequest, layout: Layout, job_id: str) -> str:
    """What a caller needs to correct their request: bad input's own message, one problem a
    line. The one place a server path is taken out of a message: the runner and the mapping
    name the source and the mapping as the caller knows them already, but a third party's
    message (DuckDB's, the file system's) names the file it was given, the upload in the
    job's folder or the resolved path."""
    if isinstance(exc, MappingError):
        text = "\n".join(exc.problems)
    elif isinstance(exc, InvalidInput):
        text = "\n".join(f"{i.field}: {i.message}" for i in exc.issues)
    else:
        text = str(exc)
    source = request.source
    if isinstance(source, UploadSource):
        text = _without(text, layout.upload(job_id, source.suffix), source.name)
    elif isinstance(source, PathSource):
        text = _without(text, Path(source.path), source.name)
    return _without(text, layout.job(job_id), "(the job's folder)")


def _without(message: str, path: Path, name: str) -> str:
    """`message` naming `path` (absolute, or relative to the working directory as some
    messages give it) as `name`."""
    message = message.replace(str(path), name)
    relative = os.path.relpath(path)
    return message.replace(relative, name) if os.sep in relative else message


# --- the job's summary: one typed definition, beside its builder -------------------------------
# Kept in the job's row and shown in the job view (app/services/screenings.py's ScreeningJob).


@with_config(ConfigDict(extra="forbid"))
class ScreeningRulesetCounts(TypedDict):
    id: str
    version: str
    hash: str
    counts: dict[StatusText, int]


@with_config(ConfigDict(extra="forbid"))
class RejectedReason(TypedDict):
    reason: str  # "no id", "duplicate id", under strict "a bad cell in <column>", "other"
    rows: int


@with_config(ConfigDict(extra="forbid"))
class ScreeningSummary(TypedDict):
    rows: int
    screened: int
    rejected: int
    # Why, as the report's funnel says it (a row may have several reasons); not in a job
    # from before 2026-12-04.
    rejected_because: NotRequired[list[RejectedReason]]
    unknown_cells: NotRequired[int]  # cells read as unknown (not in a job before issue 20)
    # Diagnoses no column gave, with why the counts mislead (not in a job before 2026-12-04).
    warnings: NotRequired[list[str]]
    rulesets: list[ScreeningRulesetCounts]


def summary_of(report: Mapping[str, Any]) -> ScreeningSummary:
    """The counts kept in the job's row: no rejected row's values, no identifier."""
    return {
        "rows": report["rows"],
        "screened": report["screened"],
        "rejected": report["rejected"]["count"],
        "rejected_because": [
            {"reason": reason, "rows": rows}
            for reason, rows in funnel.rejected_reasons(report["rejected"])
        ],
        "unknown_cells": report["problems"]["cells"],
        "warnings": [u["message"] for u in report.get("indications_unread", [])],
        "rulesets": [
            {"id": r["id"], "version": r["version"], "hash": r["hash"], "counts": r["counts"]}
            for r in report["rulesets"]
        ],
    }


def csv_chunks(results: Path) -> Iterator[bytes]:
    """The results as CSV, converted batch by batch while they are sent (memory stays at one
    batch), with the header and quoting the runner's own CSV output has."""
    parquet = pq.ParquetFile(str(results))
    first = True
    for batch in parquet.iter_batches():
        sink = pa.BufferOutputStream()
        options = pa_csv.WriteOptions(include_header=first)
        pa_csv.write_csv(pa.Table.from_batches([batch]), sink, write_options=options)
        first = False
        yield sink.getvalue().to_pybytes()
    if first:  # no rows: the header alone
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(parquet.schema_arrow.empty_table(), sink)
        yield sink.getvalue().to_pybytes()


# The worker ---------------------------------------------------------------------------------


class JobStore:
    """The worker's database access: each change is its own short transaction, committed
    here (there is no request whose session would commit it), under the commit lock that
    queues this process's SQLite writers."""

    def __init__(self, sessions: sessionmaker[Session], lock: AbstractContextManager[object]):
        self.sessions, self.lock = sessions, lock

    def write(
        self, change: Callable[Concatenate[Session, P], T], *args: P.args, **kw: P.kwargs
    ) -> T:
        with self.lock, self.sessions() as session:
            result = change(session, *args, **kw)
            session.commit()
            return result

    def read(self, query: Callable[Concatenate[Session, P], T], *args: P.args, **kw: P.kwargs) -> T:
        with self.sessions() as session:
            return query(session, *args, **kw)


def transient(exc: SQLAlchemyError) -> bool:
    """A database error that may pass by itself: the server unreachable or restarting, a
    connection cut, SQLite locked past its busy timeout. Not a statement the database
    refuses (a constraint, a value it cannot store), which fails the same way every time."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _now() -> datetime:
    return datetime.now(UTC)


class _Heartbeat:
    """Beats for one attempt in a thread of its own (see the module docstring), carrying the
    progress the runner reports and bringing back whether a cancel was asked for."""

    def __init__(self, store: JobStore, job_id: str, attempt: int) -> None:
        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.seen: tuple[int, int | None] = (0, None)
        self.cancel_asked = False
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"eligo-heartbeat-{job_id[:8]}", daemon=True
        )

    def progress(self, done: int, total: int) -> None:
        self.seen = (done, total)

    @property
    def should_stop(self) -> bool:
        return self.cancel_asked or self.lost

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._beat()

    def _beat(self) -> None:
        try:
            asked = self.store.write(repo.beat, self.job_id, self.attempt, _now(), self.seen)
        except SQLAlchemyError as exc:  # the next beat retries; a long outage makes it stale
            log.warning("screening %s: heartbeat failed (%s)", self.job_id, type(exc).__name__)
            return
        if asked is None:
            self.lost = True
            self._stop.set()
        elif asked:
            self.cancel_asked = True


@dataclass(frozen=True, slots=True)
class _Ended:
    """How an attempt ended: `outcome` if it succeeded, else `error` or `cancelled`."""

    outcome: Outcome | None = None
    rules_hash: str = ""
    error: str | None = None
    cancelled: bool = False


class Worker:
    """`settings.screening_workers` threads, each running one job at a time."""

    def __init__(self, store: JobStore, settings: Settings, rules: Callable[[], RuleBase]) -> None:
        self.store, self.settings, self.rules = store, settings, rules
        self.layout = Layout(settings.screening_folder())
        self.stale = timedelta(seconds=settings.screening_stale_seconds)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sweep_lock = threading.Lock()
        self._next_sweep = 0.0

    def start(self) -> None:
        if self.settings.screening_workers == 0:
            return
        self._remove_orphans()
        for number in range(self.settings.screening_workers):
            thread = threading.Thread(
                target=self._loop, name=f"eligo-screening-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Running jobs stop at their next batch and go back to the queue (the attempt not
        counted). One still busy after STOP_SECONDS is left to the stale-heartbeat restart."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + STOP_SECONDS
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s still busy at shutdown; its job restarts later", thread.name)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            claimed = None
            try:
                self._sweep()
                if self.store.read(repo.any_queued):
                    claimed = self.store.write(repo.claim_next, _now())
            except SQLAlchemyError as exc:
                log.warning("screening queue: database error (%s)", type(exc).__name__)
            except Exception as exc:  # the thread must outlive any one surprise
                log.error("screening queue: %s", _described(exc))
            if claimed is not None:
                self._run(*claimed)
                continue
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _sweep(self) -> None:
        """Every half stale timeout, by one thread: restart the jobs whose process died."""
        with self._sweep_lock:
            if time.monotonic() < self._next_sweep:
                return
            self._next_sweep = time.monotonic() + self.stale.total_seconds() / 2
        now = _now()
        found = self.store.write(repo.requeue_stale, now - self.stale, now, MAX_ATTEMPTS)
        for state, ids in found.items():
            for job_id in ids:
                log.warning("screening %s: heartbeat stale; now %s", job_id, state.value)
                if state is not ScreeningState.QUEUED:
                    self.layout.remove(job_id)

    def _remove_orphans(self) -> None:
        """Folders whose job was never recorded (a submission that failed after saving its
        upload, or a crash during one). Only folders named like a job id are looked at, and a
        problem here must not keep the service from starting."""
        try:
            folders = self._old_folders(time.time() - ORPHAN_SECONDS)
            known = self.store.read(repo.existing, list(folders))
        except (OSError, SQLAlchemyError) as exc:
            log.warning("screening folders not tidied: %s", type(exc).__name__)
            return
        for name in folders - known:
            log.info("removing the folder of screening %s, which was never recorded", name)
            self.layout.remove(name)

    def _old_folders(self, cutoff: float) -> set[str]:
        if not self.layout.root.is_dir():
            return set()
        return {
            p.name
            for p in self.layout.root.iterdir()
            if _JOB_ID.match(p.name) and p.is_dir() and p.stat().st_mtime < cutoff
        }

    def _run(self, job_id: str, attempt: int) -> None:
        log.info("screening %s: attempt %d started", job_id, attempt)
        heartbeat = _Heartbeat(self.store, job_id, attempt)
        try:
            ended = self._attempt(job_id, attempt, heartbeat)
            if heartbeat.lost:
                log.warning("screening %s: attempt %d lost the job; discarded", job_id, attempt)
                shutil.rmtree(self.layout.attempt(job_id, attempt), ignore_errors=True)
            else:
                self._record(job_id, attempt, ended, heartbeat)
        except SQLAlchemyError as exc:  # an outage longer than the retries: restarts when stale
            code = getattr(getattr(exc, "orig", None), "sqlstate", None)
            log.error(
                "screening %s: could not record the outcome (%s); the job restarts once its "
                "heartbeat is stale",
                job_id,
                f"{type(exc).__name__} {code}" if code else type(exc).__name__,
            )
        except Exception as exc:  # the thread must go on; the job restarts when stale
            log.error("screening %s: could not record the outcome: %s", job_id, _described(exc))

    def _lasting(
        self,
        job_id: str,
        change: Callable[Concatenate[Session, P], T],
        *args: P.args,
        **kw: P.kwargs,
    ) -> T:
        """A job's final write (its outcome), tried again with backoff while the database is
        briefly unavailable, for ELIGO_SCREENING_RECORD_RETRY_SECONDS (at most half the stale
        timeout, so no other process has restarted the job meanwhile; if one has, the write
        is fenced by the attempt and changes nothing). Losing it would restart the screening
        from scratch once the heartbeat, stopped now, went stale."""
        window = min(self.settings.screening_record_retry_seconds, self.stale.total_seconds() / 2)
        deadline = time.monotonic() + window
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                return self.store.write(change, *args, **kw)
            except SQLAlchemyError as exc:
                if not transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "screening %s: the outcome could not be written (%s); again in %.1f s",
                    job_id,
                    type(exc).__name__,
                    delay,
                )
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _attempt(self, job_id: str, attempt: int, heartbeat: _Heartbeat) -> _Ended:
        rules = self.rules()  # the rules served now: a reload since the request counts
        job = self.store.read(repo.get, job_id)
        assert job is not None, "a claimed job has a row"
        try:
            asked = stored_request(job.request)
            out = self.layout.fresh_attempt(job_id, attempt) / "results.parquet"
            request = run_request(
                asked, self.layout, job_id, out=out, settings=self.settings,
                features=rules.features,
            )  # fmt: skip
            heartbeat.start()
            outcome = screen(
                request,
                rules,
                progress=heartbeat.progress,
                cancelled=lambda: heartbeat.should_stop or self._stopping.is_set(),
            )
            return _Ended(outcome=outcome, rules_hash=rules.hash)
        except Cancelled:
            return _Ended(cancelled=True)
        except BAD_INPUT as exc:
            return _Ended(error=public_message(exc, asked, self.layout, job_id))
        except Exception as exc:
            log.error("screening %s: attempt %d failed: %s", job_id, attempt, _described(exc))
            return _Ended(error=UNEXPECTED)
        finally:
            heartbeat.stop()

    def _record(self, job_id: str, attempt: int, ended: _Ended, heartbeat: _Heartbeat) -> None:
        now = _now()
        if ended.outcome is not None:
            summary = summary_of(ended.outcome.report)
            kept = (summary, ended.rules_hash)
            if self._lasting(job_id, repo.succeed, job_id, attempt, now, kept):
                self._drop_upload(job_id)
                log.info("screening %s: succeeded (%d rows)", job_id, summary["rows"])
            return
        if ended.cancelled and not heartbeat.cancel_asked:  # this process is stopping
            self._lasting(job_id, repo.release, job_id, attempt)
            shutil.rmtree(self.layout.attempt(job_id, attempt), ignore_errors=True)
            log.info("screening %s: back in the queue (shutdown)", job_id)
            return
        if ended.cancelled:
            recorded = self._lasting(job_id, repo.cancelled, job_id, attempt, now)
        else:
            error = ended.error or UNEXPECTED
            recorded = self._lasting(job_id, repo.fail, job_id, attempt, now, error)
        if recorded:
            self.layout.remove(job_id)
            log.info("screening %s: %s", job_id, "cancelled" if ended.cancelled else "failed")

    def _drop_upload(self, job_id: str) -> None:
        """The uploaded registry is not kept once its results are: less data lying about."""
        for upload in self.layout.job(job_id).glob("source.*"):
            with contextlib.suppress(OSError):
                upload.unlink()


def _described(exc: BaseException) -> str:
    """An exception for the log: its class and where it was raised (the innermost frame, and
    the last frames of this project's code), not its message, which can quote a source's
    cells."""
    frames = list(traceback.extract_tb(exc.__traceback__))
    ours = [i for i, f in enumerate(frames) if f"{os.sep}app{os.sep}" in f.filename]
    chosen = sorted({len(frames) - 1, *ours[-3:]} - {-1}, reverse=True)
    places = " <- ".join(
        f"{Path(frames[i].filename).name}:{frames[i].lineno} in {frames[i].name}" for i in chosen
    )
    return f"{type(exc).__name__} at {places or 'unknown'}"
