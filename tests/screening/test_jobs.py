"""Screening jobs (app/screening/jobs.py): the sources a request may name (no database:
`one_pass`), and the worker's handling of each way a job ends, on the application database
(`ELIGO_TEST_DATABASE`).

Where a test needs a screening that runs until told to stop, the runner is replaced by one
that waits on its `cancelled()` callback; everything else is the real thing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.db import screenings as repo
from app.db.migrate import upgrade
from app.db.models import Screening, ScreeningState
from app.db.session import make_engine, session_factory
from app.engine.model import RuleBase
from app.screening import jobs
from app.screening.engines import SourceError
from app.screening.runner import Cancelled, Outcome, Request
from app.settings import Settings
from tests.databases import app_database
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
    def __init__(self, root: Path, sessions: sessionmaker[Session], rules: RuleBase) -> None:
        self.root, self.sessions, self.rules = root, sessions, rules
        self.settings = Settings(
            rules_dir=root,
            database_url="sqlite://",
            screening_dir=root / "jobs",
            screening_sources=[root / "registry"],
            screening_stale_seconds=3,
        )
        self.worker = jobs.Worker(
            jobs.JobStore(sessions, threading.Lock()), self.settings, lambda: rules
        )

    def add(self, csv: str = "id,age_years\np1,40\np2,200\n", **row: Any) -> str:
        job_id = str(uuid.uuid4())
        (self.root / "registry" / "r.csv").write_text(csv)
        self.worker.layout.create(job_id)
        spec = {
            "source": {"kind": "path", "name": "r.csv", "path": str(self.root / "registry/r.csv")},
            "engine": "duckdb",
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
    assert (job.summary["rows"], job.summary["screened"], job.summary["rejected"]) == (2, 1, 1)
    assert (job.rows_done, job.rows_total, job.attempts) == (2, 2, 1)
    assert env.worker.layout.results(job_id, 1).is_file()


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
    assert pq.read_table(env.worker.layout.results(job_id, 2)).num_rows == 1


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
