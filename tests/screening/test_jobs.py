"""Screening jobs (app/services/screening_jobs.py): the sources a request may name (no database:
`one_pass`), and the worker's handling of each way a job ends, on the application database
(`ELIGO_TEST_DATABASE`).

Where a test needs a screening that runs until told to stop, the runner is replaced by one
that waits on its `cancelled()` callback; everything else is the real thing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.batch.backends import SourceError
from app.batch.runner import Cancelled, Outcome, Request
from app.db import screenings as repo
from app.db import session as db_session
from app.db.migrate import upgrade
from app.db.models import Screening, ScreeningState
from app.db.session import make_engine, session_factory
from app.engine.model import RuleBase
from app.services import screening_jobs as jobs
from app.services import screenings
from app.services.screening_request import stored_request
from app.settings import Settings
from tests.databases import POSTGRES_ADMIN_URL, app_database, database
from tests.waiting import eventually

# Source checks ------------------------------------------------------------------------------


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    (root / "bulk").mkdir(parents=True)
    (root / "cohort.csv").write_text("id\np1\n")
    (root / "notes.txt").write_text("x")
    (tmp_path / "secret.csv").write_text("id\np1\n")
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    return root


@pytest.mark.one_pass
def test_a_path_inside_an_allowed_directory_is_resolved(allowed: Path) -> None:
    assert jobs.source_path("cohort.csv", [allowed]) == allowed.resolve() / "cohort.csv"
    assert jobs.source_path(str(allowed / "cohort.csv"), [allowed]) == allowed / "cohort.csv"
    assert jobs.source_path("bulk", [allowed]) == allowed / "bulk"  # a FHIR Bulk folder
    assert jobs.source_path("bulk/../cohort.csv", [allowed]) == allowed / "cohort.csv"


@pytest.mark.one_pass
@pytest.mark.parametrize(
    "given",
    ["../secret.csv", "link.csv", "missing.csv", "{tmp}/secret.csv", "/etc/passwd", "{root}/.."],
)
def test_paths_leading_outside_or_nowhere_are_refused(allowed: Path, given: str) -> None:
    path = given.format(tmp=allowed.parent, root=allowed)
    with pytest.raises(SourceError, match="no such file or folder in the directories"):
        jobs.source_path(path, [allowed])


@pytest.mark.one_pass
def test_no_allowed_directory_means_no_path_and_formats_are_checked(allowed: Path) -> None:
    with pytest.raises(SourceError, match="reads no source by path"):
        jobs.source_path("cohort.csv", [])
    with pytest.raises(SourceError, match=r"notes\.txt: unsupported format"):
        jobs.source_path("notes.txt", [allowed])


ALLOWED = ["postgresql://reader:s3cret@db.example:5432/registry"]


@pytest.mark.one_pass
@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://reader@db.example/registry", "reader:s3cret@db.example/registry"),
        ("postgresql+psycopg://reader:own@DB.example:5432/registry", "reader:own@DB.example"),
    ],
)
def test_a_url_naming_an_allowed_database_is_used(given: str, used: str) -> None:
    url = jobs.database_url(given, ALLOWED)
    assert url.startswith("postgresql+psycopg://")
    assert used in url


@pytest.mark.one_pass
@pytest.mark.parametrize(
    "given",
    [
        "postgresql://reader@db.example/registry2",  # another database
        "postgresql://reader@db.example.evil.test/registry",  # a prefix is not a host
        "postgresql://admin@db.example/registry",  # another user
        "postgresql://reader@db.example:6543/registry",  # another port
        "postgresql://reader@db.example/registry?host=/tmp",  # libpq redirect
        "mysql://reader@db.example/registry",
        "not a url",
    ],
)
def test_other_databases_are_refused(given: str) -> None:
    with pytest.raises(SourceError):
        jobs.database_url(given, ALLOWED)


@pytest.mark.one_pass
def test_responses_never_show_a_password() -> None:
    assert jobs.public_url(ALLOWED[0]) == "postgresql://reader:***@db.example:5432/registry"


@pytest.mark.one_pass
def test_csv_chunks_match_pyarrows_csv(tmp_path: Path) -> None:
    table = pa.table({"id": ["a", "b,c", 'd"'], "n": [1, None, 3]})
    pq.write_table(table, tmp_path / "r.parquet", row_group_size=1)
    pa_csv.write_csv(table, tmp_path / "r.csv")
    assert b"".join(jobs.csv_chunks(tmp_path / "r.parquet")) == (tmp_path / "r.csv").read_bytes()
    pq.write_table(table.slice(0, 0), tmp_path / "e.parquet")
    assert b"".join(jobs.csv_chunks(tmp_path / "e.parquet")) == b'"id","n"\n'


# The worker ---------------------------------------------------------------------------------


class Env:
    def __init__(
        self, root: Path, sessions: sessionmaker[Session], rules: RuleBase, **settings: Any
    ) -> None:
        self.root, self.sessions, self.rules = root, sessions, rules
        self.settings = Settings(
            rules_dir=root,
            database_url="sqlite://",
            screening_dir=root / "jobs",
            screening_sources=[root / "registry"],
            **({"screening_stale_seconds": 3} | settings),
        )
        self.worker = jobs.Worker(
            jobs.JobStore(sessions, threading.Lock()), self.settings, lambda: rules
        )

    def add(self, csv: str | bytes = "id,age_years\np1,40\np2,200\n", **row: Any) -> str:
        job_id = str(uuid.uuid4())
        source = self.root / "registry" / "r.csv"
        source.write_bytes(csv if isinstance(csv, bytes) else csv.encode())
        self.worker.layout.create(job_id)
        spec = {
            "source": {"kind": "path", "name": "r.csv", "path": str(self.root / "registry/r.csv")},
            "backend": "duckdb",
            "rulesets": ["hsct-ssc-astis"],
            "mapping": None,
            "as_of": date.today().isoformat(),
        }
        values: dict[str, Any] = {
            "id": job_id,
            "state": ScreeningState.QUEUED,
            "created_at": datetime.now(UTC),
            "attempts": 0,
            "cancel_requested": False,
            "request": spec,
            "rows_done": 0,
            "rules_hash": self.rules.hash,
            "client_id": None,
            "requested_by": "test",
        }
        with self.sessions() as session:
            session.add(Screening(**(values | row)))
            session.commit()
        return job_id

    def job(self, job_id: str) -> Screening:
        with self.sessions() as session:
            job = repo.get(session, job_id)
            assert job is not None
            return job

    def until(
        self, job_id: str, check: Callable[[Screening], bool], timeout: float = 20
    ) -> Screening:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if check(job):
                return job
            assert time.monotonic() < deadline, f"still {job.state} after {timeout} s"
            time.sleep(0.05)

    def finished(self, job_id: str) -> Screening:
        return self.until(job_id, lambda j: j.state not in {"queued", "running"})


@pytest.fixture
def env(tmp_path: Path, shipped_rules: RuleBase, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(jobs, "POLL_SECONDS", 0.05)
    (tmp_path / "registry").mkdir()
    with app_database(tmp_path) as url:
        upgrade(url)
        engine = make_engine(url)
        env = Env(tmp_path, session_factory(engine), shipped_rules)
        try:
            yield env
        finally:
            env.worker.stop()
            engine.dispose()


def _waits_for_cancel(seen: list[Request]) -> Callable[..., Outcome]:
    def fake(
        request: Request,
        rules: RuleBase,  # noqa: ARG001 - screen()'s signature
        *,
        progress: Callable[[int, int], None],
        cancelled: Callable[[], bool],
    ) -> Outcome:
        seen.append(request)
        progress(5, 10)
        while not cancelled():
            time.sleep(0.01)
        raise Cancelled

    return fake


def _running_until_stopped(env: Env, monkeypatch: pytest.MonkeyPatch) -> str:
    """A job whose screening runs until it is told to stop, once the worker has it."""
    monkeypatch.setattr(jobs, "screen", _waits_for_cancel([]))
    job_id = env.add()
    env.worker.start()
    env.until(job_id, lambda j: j.state == "running")
    return job_id


def test_a_job_runs_and_records_its_counts(env: Env) -> None:
    job_id = env.add()
    env.worker.start()
    job = env.finished(job_id)
    assert job.state == "succeeded", job.error
    assert job.summary is not None
    # The second row's bad cell is unknown, the row screened (issue 20).
    assert (job.summary["rows"], job.summary["screened"], job.summary["rejected"]) == (2, 2, 0)
    assert job.summary["unknown_cells"] == 1
    assert (job.rows_done, job.rows_total, job.attempts) == (2, 2, 1)
    assert env.worker.layout.results(job_id, 1).is_file()


def test_a_job_stored_before_the_rename_runs_on_the_backend_it_named(env: Env) -> None:
    stored = env.job(env.add()).request
    before = {k: v for k, v in stored.items() if k != "backend"} | {"engine": "duckdb"}
    for spec, backend in (
        (stored | {"backend": "spark"}, "spark"),
        (before | {"engine": "spark"}, "spark"),  # as stored before `backend`
        ({k: v for k, v in stored.items() if k != "backend"}, "duckdb"),
    ):
        request = jobs.run_request(
            stored_request(spec),
            env.worker.layout,
            env.add(),
            out=env.root / "r.parquet",
            settings=env.settings,
            features=env.rules.features,
        )
        assert request.backend == backend
    job_id = env.add(request=before)
    env.worker.start()
    job = env.finished(job_id)
    assert job.state == "succeeded", job.error
    assert job.request == before  # read as it was stored, not rewritten


def _earlier_upload(env: Env, mapping: str) -> tuple[str, dict[str, Any]]:
    """A job as the code before the typed request stored an upload with a mapping file: the
    source with its `suffix`, the mapping wrapped as {name, text}, no `long` or `strict`."""
    spec: dict[str, Any] = {
        "source": {"kind": "upload", "name": "Registry.CSV", "suffix": ".csv"},
        "engine": "duckdb",
        "rulesets": ["hsct-ssc-astis"],
        "mapping": {"name": "registry-mapping.yaml", "text": mapping},
        "as_of": date.today().isoformat(),
    }
    job_id = env.add(request=spec)
    env.worker.layout.upload(job_id, ".csv").write_text("patient_no,AGE\nr1,45\nr2,200\n")
    env.worker.layout.mapping(job_id).write_text(mapping)
    return job_id, spec


def test_an_upload_stored_before_the_typed_request_still_runs(env: Env) -> None:
    job_id, spec = _earlier_upload(env, "id: patient_no\ncolumns:\n  age_years: AGE\n")
    shown = screenings.view(env.job(job_id))["request"]
    assert shown["source"] == {"kind": "upload", "name": "Registry.CSV"}
    assert shown["mapping"] == spec["mapping"]
    assert (shown["backend"], shown["long"], shown["strict"]) == ("duckdb", False, False)
    env.worker.start()
    job = env.finished(job_id)
    assert job.state == "succeeded", job.error
    assert job.summary is not None
    assert (job.summary["rows"], job.summary["unknown_cells"]) == (2, 1)
    assert job.request == spec  # read as it was stored, not rewritten


def test_a_failing_job_names_its_files_as_the_caller_knows_them(env: Env) -> None:
    job_id, _ = _earlier_upload(env, "id: patient_no\ncolumns:\n  lvef_percent: LVEF\n")
    env.worker.start()
    job = env.finished(job_id)
    assert job.state == "failed"
    assert job.error == "registry-mapping.yaml:3: lvef_percent: no column 'LVEF' in the source"
    shown = screenings.view(job)
    assert str(env.root) not in json.dumps(shown, default=str)


def test_a_cancel_stops_a_running_job_and_removes_its_files(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Request] = []
    monkeypatch.setattr(jobs, "screen", _waits_for_cancel(seen))
    job_id = env.add()
    env.worker.start()
    running = env.until(job_id, lambda j: j.rows_done == 5)  # the heartbeat carried progress
    assert (running.state, running.rows_total) == ("running", 10)
    with env.sessions() as session:
        repo.request_cancel(session, job_id, datetime.now(UTC))
        session.commit()
    assert env.finished(job_id).state == "cancelled"
    eventually(lambda: not env.worker.layout.job(job_id).exists(), "files removed")
    assert seen[0].source_name == "r.csv"


def test_a_shutdown_puts_the_running_job_back_in_the_queue(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _running_until_stopped(env, monkeypatch)
    env.worker.stop()
    job = env.job(job_id)
    assert (job.state, job.attempts) == ("queued", 0)
    assert not env.worker.layout.attempt(job_id, 1).exists()


def test_an_attempt_that_lost_its_job_records_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _running_until_stopped(env, monkeypatch)
    with env.sessions() as session:  # another process took it over (as after a stall)
        session.execute(update(Screening).where(Screening.id == job_id).values(attempts=2))
        session.commit()
    deadline = time.monotonic() + 10
    while env.worker.layout.attempt(job_id, 1).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job = env.job(job_id)
    assert (job.state, job.attempts, job.error) == ("running", 2, None)


def test_bad_input_fails_with_the_precise_message(env: Env) -> None:
    """The source changed after it was accepted: a column no feature is named after."""
    job_id = env.add(csv="id,NAME\np1,x\n")
    env.worker.start()
    job = env.finished(job_id)
    assert job.state == "failed"
    assert job.error is not None
    assert job.error.startswith("r.csv: column 'NAME' is not a feature id")
    # The worker removes the files once the failure is recorded (not before: had it lost
    # the job, they would be another attempt's).
    eventually(lambda: not env.worker.layout.job(job_id).exists(), "files removed")


def test_an_unexpected_error_is_generic_and_logged_without_its_message(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any, **__: Any) -> Outcome:
        raise KeyError("P0000042")  # as if a message quoted a registry id

    monkeypatch.setattr(jobs, "screen", broken)
    job_id = env.add()
    with caplog.at_level(logging.INFO, logger="eligo.screening"):
        env.worker.start()
        job = env.finished(job_id)
    assert (job.state, job.error) == ("failed", jobs.UNEXPECTED)
    assert "KeyError at test_jobs.py" in caplog.text
    assert job_id in caplog.text
    assert "P0000042" not in caplog.text


def test_a_job_whose_process_died_is_restarted_and_finishes(env: Env) -> None:
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    job_id = env.add(
        state=ScreeningState.RUNNING, attempts=1, started_at=long_ago, heartbeat_at=long_ago
    )
    half_written = env.worker.layout.attempt(job_id, 1)
    half_written.mkdir()
    (half_written / ".results.parquet.partial").write_bytes(b"PAR1")
    env.worker.start()
    job = env.finished(job_id)
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert not half_written.exists()
    assert pq.read_table(env.worker.layout.results(job_id, 2)).num_rows == 2


def test_folders_of_jobs_never_recorded_are_removed(env: Env) -> None:
    root = env.worker.layout.root
    orphan, recent, other = root / str(uuid.uuid4()), root / str(uuid.uuid4()), root / "keep"
    for folder in (orphan, recent, other):
        folder.mkdir(parents=True)
    old = time.time() - 2 * jobs.ORPHAN_SECONDS
    for folder in (orphan, other):
        os.utime(folder, (old, old))
    job_id = env.add()  # recorded: kept whatever its age
    os.utime(env.worker.layout.job(job_id), (old, old))
    env.worker.start()
    env.finished(job_id)
    assert not orphan.exists()
    assert recent.exists()
    assert other.exists()
    assert env.worker.layout.job(job_id).exists()


# Hostile sources and drivers (issue 17) -----------------------------------------------------


@pytest.mark.one_pass
def test_a_path_with_nul_or_an_unencodable_name_is_refused_not_raised(allowed: Path) -> None:
    with pytest.raises(SourceError, match="U\\+0000") as refused:
        jobs.source_path("cohort.csv\x00", [allowed])
    assert refused.value.code == "invalid_character"
    with pytest.raises(SourceError, match="no such file or folder"):
        jobs.source_path("cohort\ud800.csv", [allowed])


@pytest.mark.one_pass
@pytest.mark.parametrize(
    ("driver", "named"),
    [("pg8000", "'pg8000'"), ("asyncpg", "'asyncpg'"), ("nosuch", "'postgresql+nosuch'")],
)
def test_an_allowed_database_named_with_a_driver_not_installed_is_refused(
    driver: str, named: str
) -> None:
    with pytest.raises(SourceError) as refused:
        jobs.database_url(f"postgresql+{driver}://reader:own@db.example/registry", ALLOWED)
    assert refused.value.code == "driver_unavailable"
    assert named in str(refused.value)
    assert "own" not in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_a_source_too_wide_for_the_job_fails_naming_the_file_and_the_count(env: Env) -> None:
    """A source that changed after it was accepted meets the request's checks again: the
    header is counted before DuckDB reads it, and the job fails with the same message."""
    wide = ",".join(["id", *(f"c{i}" for i in range(1000))]) + "\np1" + ",1" * 1000 + "\n"
    job_id = env.add(csv=wide)
    env.worker.start()
    job = env.finished(job_id)
    assert job.state == "failed"
    assert job.error == (
        "r.csv:1: the header has 1,001 columns; a source may have at most 1,000 "
        "(ELIGO_SCREENING_MAX_COLUMNS): give a narrower extract"
    )


def test_a_first_line_too_long_for_the_job_fails_naming_the_file(env: Env) -> None:
    job_id = env.add(csv=b"id,age_years" + b"x" * (1024 * 1024) + b"\np1,40\n")
    env.worker.start()
    job = env.finished(job_id)
    assert job.state == "failed"
    assert job.error is not None
    assert job.error.startswith("r.csv:1: the header (the first line) is longer than 1,048,576")


# The outcome's write meets an outage ----------------------------------------------------------


@pytest.mark.one_pass
def test_only_errors_that_may_pass_are_retried() -> None:
    cause = Exception("server closed the connection")
    assert jobs.transient(OperationalError("UPDATE", {}, cause))
    assert jobs.transient(InterfaceError("UPDATE", {}, cause))
    assert jobs.transient(DBAPIError("UPDATE", {}, cause, connection_invalidated=True))
    assert not jobs.transient(IntegrityError("UPDATE", {}, cause))
    assert not jobs.transient(DataError("UPDATE", {}, cause))


class Outage:
    """The database made unavailable for a moment, as tests/db/test_outage.py does it:
    PostgreSQL refuses connections and cuts those open; SQLite's write lock is held by
    another connection past the busy timeout."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url
        self.name = url.rsplit("/", 1)[1]
        self.blocker: sqlite3.Connection | None = None
        self.lock = threading.Lock()
        self.on = False

    def begin(self) -> None:
        with self.lock:
            self.on = True
            if self.kind == "sqlite":
                path = self.url.removeprefix("sqlite:///")
                self.blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                self.blocker.execute("BEGIN EXCLUSIVE")
                return
            _admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
            _admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name",
                name=self.name,
            )

    def end(self) -> None:
        with self.lock:
            if not self.on:
                return
            self.on = False
            if self.blocker is not None:
                self.blocker.execute("ROLLBACK")
                self.blocker.close()
                self.blocker = None
            else:
                _admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


def _admin(statement: str, **params: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(statement), params)
    admin.dispose()


@contextmanager
def _outage_env(
    kind: str, tmp_path: Path, rules: RuleBase, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> Iterator[tuple[Env, Outage]]:
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(jobs, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 100)  # locked fails in 0.1 s
    (tmp_path / "registry").mkdir()
    with database(kind, tmp_path) as url:
        upgrade(url)
        engine = make_engine(url)
        env = Env(tmp_path, session_factory(engine), rules, **settings)
        outage = Outage(kind, url)
        try:
            yield env, outage
        finally:
            outage.end()
            env.worker.stop()
            engine.dispose()


def _outage_at_the_outcome(
    outage: Outage, monkeypatch: pytest.MonkeyPatch, seconds: float | None
) -> list[float]:
    """The first write of a job's success begins an outage (ended after `seconds`, or by
    the test); the times of every write tried."""
    real, tried = repo.succeed, list[float]()

    def succeed(session: Session, *args: Any) -> bool:
        if not tried:
            outage.begin()
            if seconds is not None:
                threading.Timer(seconds, outage.end).start()
        tried.append(time.monotonic())
        return real(session, *args)

    monkeypatch.setattr(repo, "succeed", succeed)
    return tried


def _settled(
    env: Env, job_id: str, check: Callable[[Screening], bool], timeout: float
) -> Screening:
    """`env.until`, reading through the outage (a read may fail while it lasts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            job = env.job(job_id)
            if check(job):
                return job
        except OperationalError:
            pass
        assert time.monotonic() < deadline, f"not settled after {timeout} s"
        time.sleep(0.05)


@pytest.mark.one_pass
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_outcome_met_by_a_short_outage_is_recorded_not_restarted(
    kind: str,
    tmp_path: Path,
    shipped_rules: RuleBase,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 17: a success lost to a brief database error left the job `running` until its
    heartbeat went stale, then screened it again from scratch. Now the write is tried again,
    with backoff, and the outcome recorded once the database is back: one attempt."""
    with _outage_env(
        kind,
        tmp_path,
        shipped_rules,
        monkeypatch,
        screening_stale_seconds=20,
        screening_record_retry_seconds=8,
    ) as (env, outage):
        tried = _outage_at_the_outcome(outage, monkeypatch, seconds=1.0)
        job_id = env.add()
        with caplog.at_level(logging.INFO, logger="eligo.screening"):
            env.worker.start()
            job = _settled(env, job_id, lambda j: j.state not in {"queued", "running"}, 15)
    assert (job.state, job.attempts, job.error) == ("succeeded", 1, None)
    assert job.summary is not None
    assert job.summary["rows"] == 2
    assert len(tried) >= 2  # refused during the outage, recorded once it was over
    assert "the outcome could not be written (OperationalError); again in 0.1 s" in caplog.text
    assert "could not record the outcome" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.one_pass
def test_an_outage_longer_than_the_retries_leaves_the_job_to_the_stale_restart(
    tmp_path: Path,
    shipped_rules: RuleBase,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The retries are bounded: past ELIGO_SCREENING_RECORD_RETRY_SECONDS the worker gives the
    write up (an error in the log, without a traceback), and the job is restarted as after a
    crash once the database is back and its heartbeat stale."""
    with _outage_env(
        "sqlite", tmp_path, shipped_rules, monkeypatch, screening_record_retry_seconds=0.5
    ) as (env, outage):
        tried = _outage_at_the_outcome(outage, monkeypatch, seconds=None)
        job_id = env.add()
        with caplog.at_level(logging.INFO, logger="eligo.screening"):
            env.worker.start()
            eventually(lambda: "could not record the outcome" in caplog.text, "given up")
            given_up = len(tried)
            outage.end()
            job = _settled(env, job_id, lambda j: j.state == "succeeded", timeout=20)
    assert 1 < given_up < 10  # tried again, a few times only
    assert job.attempts == 2
    assert "could not record the outcome (OperationalError" in caplog.text
    assert "heartbeat stale; now queued" in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
