"""`eligo serve --workers 2` as real processes: what must hold across workers does.

A request can be sent to one chosen worker: the others are stopped (SIGSTOP) for the moment,
so only that one accepts from the shared socket. Each stop lasts for a request or two, well
within the supervisor's five-second health check of its workers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.batch.synth import write_parquet
from app.db import clients
from app.db.models import Evaluation, Screening
from app.db.session import make_engine, session_factory
from app.engine.model import RuleBase
from app.security import Scope
from tests.astis_patients import ASTIS_CANDIDATE
from tests.cds.conftest import PATIENT, hook_request
from tests.cds.keys import SANDBOX_ISSUER, claims, sandbox_jwks, sign
from tests.conftest import GOLDEN_RULES
from tests.databases import app_database
from tests.demo_patients import DEMO_CANDIDATE
from tests.e2e.helpers import ELIGO, Server, eligo_process, run_eligo
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

WORKERS = 2
SERVE = (ELIGO, "serve", "--workers", str(WORKERS))
STALE_SECONDS = 3
# A job that runs for seconds (longer than the stale timeout here), so the other worker's
# sweeps for dead jobs happen while it runs.
LONG_JOB_ROWS = 150_000
DEMO = "therapies/demo.yaml"


# Finding the workers and talking to one of them -----------------------------------------


def two_workers(env: dict[str, str], log: Path) -> AbstractContextManager[Server]:
    """Started when the first worker serves; three processes take longer than one to be up
    on a busy machine."""
    return eligo_process(env, log=log, command=SERVE, ready_seconds=90)


def worker_pids(server: Server) -> list[int]:
    """The supervisor's workers: the children multiprocessing spawned (not its resource
    tracker, the other child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # exited meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server.process.pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return sorted(found)


def serving_workers(server: Server) -> list[int]:
    """Once every worker has started serving (the health check passes with the first)."""
    eventually(
        lambda: server.output().count("Application startup complete.") >= WORKERS,
        "every worker started",
        seconds=60,
    )
    pids = worker_pids(server)
    assert len(pids) == WORKERS, server.output()
    return pids


@contextmanager
def only(server: Server, pid: int, database: str | None = None) -> Iterator[None]:
    """Connections made meanwhile are accepted by worker `pid`: the others are stopped. With
    a SQLite `database` the request will write to, they are stopped only between commits: a
    worker stopped holding the write lock (a screening heartbeat, a record) would hold it
    past the busy timeout, and the request would fail for the test's doing."""
    others = [p for p in worker_pids(server) if p != pid]
    deadline = time.monotonic() + 10
    while True:
        for other in others:
            os.kill(other, signal.SIGSTOP)
        if database is None or _write_lock_free(database):
            break
        for other in others:
            os.kill(other, signal.SIGCONT)
        assert time.monotonic() < deadline, "the other workers kept the SQLite write lock"
        time.sleep(0.05)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def _write_lock_free(url: str) -> bool:
    """Nobody holds SQLite's write lock (always true of PostgreSQL, which has none)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return True
    connection = sqlite3.connect(str(parsed.database), timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    except sqlite3.OperationalError:  # database is locked
        return False
    finally:
        connection.close()
    return True


def on_each_worker(server: Server, condition: Callable[[], bool], seconds: float = 20) -> None:
    """`condition` comes true on every worker, each asked alone (fresh connections)."""
    deadline = time.monotonic() + seconds
    for pid in serving_workers(server):
        while True:
            with only(server, pid):
                met = condition()
            if met:
                break
            assert time.monotonic() < deadline, f"worker {pid}: not within {seconds} s"
            time.sleep(0.1)


def logged_by(server: Server, message: str) -> set[int]:
    """The processes that logged `message` (each line names its process with several)."""
    pattern = re.compile(rf"\[(\d+)\] [\w.]+: {re.escape(message)}")
    return {int(m) for m in pattern.findall(server.output())}


def _token(url: str) -> str:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            _, credential = clients.create(session, "workers test", Scope)
            session.commit()
    finally:
        engine.dispose()
    return credential.token


def _count(url: str, model: type[Evaluation] | type[Screening]) -> int:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0
    finally:
        engine.dispose()


# Audit trail, CDS token ids, screening jobs: one server, authentication on ------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    """Two workers on the application database; (server, its database URL, a client token)."""
    scratch = tmp_path_factory.mktemp("workers")
    with app_database(scratch) as url:
        env = {
            "ELIGO_AUTH": "on",
            "ELIGO_DATABASE_URL": url,
            "ELIGO_CDS_ISSUERS": json.dumps({SANDBOX_ISSUER: {"jwks": sandbox_jwks()}}),
            "ELIGO_SCREENING_DIR": str(scratch / "jobs"),
            "ELIGO_SCREENING_WORKERS": "1",  # a worker running the long job runs nothing else
            "ELIGO_SCREENING_STALE_SECONDS": str(STALE_SECONDS),
        }
        with two_workers(env, scratch / "server.log") as server:
            serving_workers(server)
            yield server, url, _token(url)


def test_concurrent_evaluations_are_all_served_and_recorded(
    shared: tuple[Server, str, str],
) -> None:
    """16 clients at once, 8 connected to each worker, every answer a 200 with its record: on
    SQLite two processes commit to one file (WAL, the busy timeout), never `database is
    locked`."""
    server, url, token = shared
    before = _count(url, Evaluation)
    headers = {"Authorization": f"Bearer {token}"}
    connections: list[httpx.Client] = []
    for pid in serving_workers(server):
        with only(server, pid):  # each connection is kept alive, so stays with this worker
            for _ in range(8):
                http = httpx.Client(base_url=server.base, headers=headers, timeout=30)
                assert http.get("/healthz").status_code == 200
                connections.append(http)
    codes: Counter[int] = Counter()
    answered: list[str] = []
    body = {"features": ASTIS_CANDIDATE, "rulesets": ["hsct-ssc-astis"], "patient_id": "P-7"}
    start = threading.Barrier(len(connections))

    def client(http: httpx.Client) -> None:
        start.wait()
        try:
            for _ in range(15):
                response = http.post("/v1/evaluations", json=body)
                codes[response.status_code] += 1
                if response.status_code == 200:
                    answered.append(response.json()["id"])
        finally:
            http.close()

    threads = [threading.Thread(target=client, args=(http,)) for http in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == {200: 240}
    assert len(set(answered)) == 240
    assert _count(url, Evaluation) - before == 240
    assert "database is locked" not in server.output()


def test_a_replayed_cds_token_is_refused_by_the_other_worker(
    shared: tuple[Server, str, str],
) -> None:
    server, database, _ = shared
    first_worker, second_worker = serving_workers(server)
    url = f"{server.base}/cds-services/eligo-patient-view"
    headers = {"Authorization": f"Bearer {sign(claims(aud=url))}"}
    body = {**hook_request("http://127.0.0.1:9/fhir", PATIENT), "fhirServer": None}
    with only(server, first_worker, database):
        first = httpx.post(url, json=body, headers=headers, timeout=10)
    assert first.status_code == 412, first.text  # authenticated; no data to decide on
    with only(server, second_worker, database):
        again = httpx.post(url, json=body, headers=headers, timeout=10)
    assert again.status_code == 401, again.text
    assert "jti already used" in again.json()["detail"]


def test_each_screening_job_runs_once_and_a_live_one_is_never_taken_over(
    shared: tuple[Server, str, str], shipped_rules: RuleBase, tmp_path: Path
) -> None:
    """Both workers claim from one queue; each of five jobs runs once. The long one runs past
    the stale timeout while the other worker sweeps for dead jobs: its heartbeat keeps it."""
    server, url, token = shared
    headers = {"Authorization": f"Bearer {token}"}
    long_source, short_source = tmp_path / "long.parquet", tmp_path / "short.parquet"
    write_parquet(LONG_JOB_ROWS, shipped_rules.features, long_source, seed=3)
    write_parquet(200, shipped_rules.features, short_source, seed=4)

    def submit(source: Path) -> str:
        response = httpx.post(
            f"{server.base}/v1/screenings",
            files={"file": (source.name, source.read_bytes())},
            data={"rulesets": "hsct-ssc-astis"},
            headers=headers,
            timeout=60,
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def job(job_id: str) -> dict[str, Any]:
        response = httpx.get(f"{server.base}/v1/screenings/{job_id}", headers=headers, timeout=10)
        body: dict[str, Any] = response.json()
        return body

    long_job = submit(long_source)
    eventually(lambda: job(long_job)["state"] == "running", "the long job started", 30)
    short_jobs = [submit(short_source) for _ in range(4)]
    for job_id in [long_job, *short_jobs]:
        finished = _ended(partial(job, job_id), 120)
        assert (finished["state"], finished["attempts"]) == ("succeeded", 1), finished
    log = server.output()
    assert "heartbeat stale" not in log
    runners: dict[str, set[int]] = {}
    for job_id in [long_job, *short_jobs]:
        assert log.count(f"screening {job_id}: attempt") == 1
        runners[job_id] = logged_by(server, f"screening {job_id}: attempt 1 started")
    # The long job kept its worker busy: the other ran short jobs meanwhile.
    assert len(set().union(*runners.values())) == WORKERS
    assert _count(url, Screening) >= 5


def _ended(job: Callable[[], dict[str, Any]], seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while (state := job())["state"] in {"queued", "running"}:
        assert time.monotonic() < deadline, f"still {state['state']} after {seconds} s"
        time.sleep(0.1)
    return state


# Rules: every worker reloads (on a SQLite file of their own: one pass of the suite) ---------


def _rules_server(scratch: Path, interval: str) -> Iterator[tuple[Server, Path]]:
    rules = scratch / "rules"
    shutil.copytree(GOLDEN_RULES, rules, ignore=shutil.ignore_patterns("tests"))
    env = {
        "ELIGO_RULES_DIR": str(rules),
        "ELIGO_RULES_RELOAD_INTERVAL": interval,
        "ELIGO_DATABASE_URL": f"sqlite:///{scratch / 'e.db'}",
    }
    with two_workers(env, scratch / "server.log") as server:
        serving_workers(server)
        yield server, rules


@pytest.fixture
def polling(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    yield from _rules_server(tmp_path, "0.2")


@pytest.fixture(scope="module")
def sighup_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """Polling off: only a signal (or a request) reloads. Shared by the tests below, each of
    which moves the demo's LVEF threshold to a value of its own."""
    yield from _rules_server(tmp_path_factory.mktemp("sighup"), "0")


def _listing(server: Server) -> dict[str, Any]:
    response = httpx.get(f"{server.base}/v1/rulesets", timeout=5)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _hash(server: Server) -> str:
    rules_hash: str = _listing(server)["rules_hash"]
    return rules_hash


def _status(server: Server) -> str:
    patient = {**DEMO_CANDIDATE, "lvef_percent": 47}  # excluded once the threshold is < 50 %
    response = httpx.post(f"{server.base}/v1/evaluations", json={"features": patient}, timeout=5)
    assert response.status_code == 200, response.text
    status: str = response.json()["results"][0]["status"]
    return status


def _threshold(rules: Path, feature: str, value: int) -> None:
    """The demo's LVEF exclusion becomes `<feature> < <value> %` (an unknown feature makes
    the file invalid)."""
    path = rules / DEMO
    text, count = re.subn(r"when: \w+ < \d+ %", f"when: {feature} < {value} %", path.read_text())
    assert count == 1
    path.write_text(text, encoding="utf-8")


@pytest.mark.one_pass
def test_a_changed_rule_file_reaches_every_worker(polling: tuple[Server, Path]) -> None:
    server, rules = polling
    before = _hash(server)
    _threshold(rules, "lvef_percent", 50)
    on_each_worker(server, lambda: _hash(server) != before and _status(server) == "ineligible")
    assert logged_by(server, "rules reloaded (files changed)") == set(worker_pids(server))


@pytest.mark.one_pass
def test_sighup_to_the_supervisor_reloads_every_worker_without_replacing_it(
    sighup_only: tuple[Server, Path],
) -> None:
    server, rules = sighup_only
    workers = serving_workers(server)
    before = _hash(server)
    _threshold(rules, "lvef_percent", 50)
    server.process.send_signal(signal.SIGHUP)
    on_each_worker(server, lambda: _hash(server) != before and _status(server) == "ineligible")
    assert logged_by(server, "rules reloaded (SIGHUP)") == set(workers)
    assert worker_pids(server) == workers  # reloaded in place, not restarted


@pytest.mark.one_pass
def test_a_reload_asked_of_one_worker_reaches_the_others(
    sighup_only: tuple[Server, Path],
) -> None:
    """POST /v1/rulesets/reload lands on one worker; polling is off, so only the supervisor
    passing the reload on brings the other along."""
    server, rules = sighup_only
    asked = serving_workers(server)[0]
    before = _hash(server)
    _threshold(rules, "lvef_percent", 40)
    with only(server, asked):
        answer = httpx.post(f"{server.base}/v1/rulesets/reload", timeout=10)
    assert answer.status_code == 200, answer.text
    now = answer.json()["rules_hash"]
    assert now != before
    on_each_worker(server, lambda: _hash(server) == now and _status(server) == "eligible")


@pytest.mark.one_pass
def test_an_invalid_change_is_refused_by_every_worker(sighup_only: tuple[Server, Path]) -> None:
    server, rules = sighup_only
    before = _hash(server)
    _threshold(rules, "lvef_precent", 45)
    server.process.send_signal(signal.SIGHUP)

    def refused() -> bool:
        listing = _listing(server)
        return listing["reload_error"] is not None and listing["rules_hash"] == before

    on_each_worker(server, refused)
    assert len(serving_workers(server)) == WORKERS  # nobody died of it
    _threshold(rules, "lvef_percent", 45)
    server.process.send_signal(signal.SIGHUP)
    on_each_worker(server, lambda: _listing(server)["reload_error"] is None)


@pytest.mark.one_pass
def test_a_worker_replaced_while_the_rules_are_invalid_waits_for_a_fix(
    sighup_only: tuple[Server, Path],
) -> None:
    """A worker that dies is replaced, and the replacement loads the rules from the files. If
    they are invalid by then it cannot start (it has no old rules to keep serving); the other
    worker serves on, and the replacement starts once the files are fixed."""
    server, rules = sighup_only
    before = _hash(server)
    survivor, victim = serving_workers(server)
    started = server.output().count("Application startup complete.")
    _threshold(rules, "lvef_precent", 45)
    os.kill(victim, signal.SIGKILL)
    eventually(
        lambda: "worker not started: the rules are invalid" in server.output(),
        "the replacement refused the rules",
        seconds=60,
    )
    assert "E011 unknown-feature" in server.output()
    with only(server, survivor):
        assert _hash(server) == before
    _threshold(rules, "lvef_percent", 45)
    eventually(
        lambda: server.output().count("Application startup complete.") > started,
        "a replacement serves",
        seconds=60,
    )
    assert survivor in worker_pids(server)
    on_each_worker(server, lambda: _hash(server) == before)


@pytest.mark.one_pass
def test_a_worker_still_starting_is_sent_sighup_once_it_serves(
    sighup_only: tuple[Server, Path],
) -> None:
    """SIGHUP's default action ends a process: a worker that has not yet set up its handler
    must not get it then. A third worker (SIGTTIN) is still starting when SIGHUP comes; it is
    passed on once that worker serves."""
    server, _ = sighup_only
    workers = serving_workers(server)
    server.process.send_signal(signal.SIGTTIN)
    eventually(lambda: len(worker_pids(server)) > WORKERS, "a third worker", seconds=10)
    (third,) = set(worker_pids(server)) - set(workers)
    server.process.send_signal(signal.SIGHUP)
    reloaded = "rules reload (SIGHUP): unchanged"
    eventually(lambda: third in logged_by(server, reloaded), "passed on to the third", 60)
    assert f"Child process [{third}] died" not in server.output()
    assert logged_by(server, reloaded) >= {*workers, third}
    server.process.send_signal(signal.SIGTTOU)  # back to two, for any test after this one
    eventually(lambda: worker_pids(server) == workers, "the third worker stopped", seconds=30)


# Refusals come from the supervisor, before any worker starts -------------------------------


@pytest.mark.one_pass
def test_invalid_rules_refuse_the_start_with_their_diagnostics(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(GOLDEN_RULES, rules, ignore=shutil.ignore_patterns("tests"))
    _threshold(rules, "lvef_precent", 45)
    env = {"ELIGO_RULES_DIR": str(rules), "ELIGO_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}"}
    result = run_eligo("serve", "--workers", "2", "--port", "1", env=env)
    assert result.returncode == 1
    assert "E011 unknown-feature: unknown feature 'lvef_precent'" in result.stderr
    assert "refusing to start" in result.stderr
    assert "Started parent process" not in result.stderr  # no worker was started


@pytest.mark.one_pass
def test_production_refuses_an_unsafe_configuration_with_any_number_of_workers(
    tmp_path: Path,
) -> None:
    env = {
        "ELIGO_ENV": "production",
        "ELIGO_AUTH": "on",
        "ELIGO_WORKERS": "3",
        "ELIGO_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
    }
    result = run_eligo("serve", "--port", "1", env=env)
    assert result.returncode == 3
    assert "ELIGO_PSEUDONYM_KEY is unset" in result.stderr
