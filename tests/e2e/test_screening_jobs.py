"""A screening job survives the death of its server: `eligo serve` is killed (SIGKILL, no
shutdown) while the job runs; started again on the same database and folder, it takes the job
up by itself and finishes it with complete results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from app.batch.synth import write_parquet
from app.db import screenings as repo
from app.db.session import make_engine, session_factory
from app.engine.model import RuleBase
from tests.databases import app_database
from tests.e2e.helpers import eligo_process
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

# Large enough to be still running a moment after it starts (several seconds here).
COHORT = 150_000


def _job(base: str, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base}/v1/screenings/{job_id}", timeout=10).json()
    return body


def _until(base: str, job_id: str, states: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = _job(base, job_id)
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"still {job['state']} after {timeout} s"
        time.sleep(0.1)


def test_a_job_killed_with_its_server_restarts_and_finishes(
    tmp_path: Path, shipped_rules: RuleBase
) -> None:
    cohort = tmp_path / "cohort.parquet"
    write_parquet(COHORT, shipped_rules.features, cohort, seed=11)
    with app_database(tmp_path) as url:
        env = {
            "ELIGO_DATABASE_URL": url,
            "ELIGO_SCREENING_DIR": str(tmp_path / "jobs"),
            "ELIGO_SCREENING_STALE_SECONDS": "3",
        }
        with eligo_process(env, log=tmp_path / "first.log") as server:
            response = httpx.post(
                f"{server.base}/v1/screenings",
                files={"file": ("cohort.parquet", cohort.read_bytes())},
                data={"rulesets": "hsct-ssc-astis"},
                timeout=60,
            )
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            running = _until(server.base, job_id, {"running", "succeeded", "failed"}, 30)
            assert running["state"] == "running", running
            server.process.kill()  # SIGKILL: no shutdown, the job is left `running`
            server.process.wait()

        engine = make_engine(url)
        with session_factory(engine)() as session:
            left = repo.get(session, job_id)
            assert left is not None
            assert (left.state, left.attempts) == ("running", 1)
        engine.dispose()

        with eligo_process(env, log=tmp_path / "second.log") as server:
            done = _until(server.base, job_id, {"succeeded", "failed", "cancelled"}, 120)
            assert done["state"] == "succeeded", done["error"]
            assert done["attempts"] == 2
            assert done["summary"]["rows"] == COHORT
            assert done["summary"]["screened"] == COHORT
            results = httpx.get(f"{server.base}{done['links']['results_parquet']}", timeout=60)
            assert results.status_code == 200
            (tmp_path / "served.parquet").write_bytes(results.content)
            log = server.output()

    served = pq.read_table(tmp_path / "served.parquet")
    assert served.num_rows == COHORT
    ids = pq.read_table(cohort, columns=["id"]).column("id")
    assert pc.all(pc.equal(served.column("id").combine_chunks(), ids.combine_chunks())).as_py()
    folder = tmp_path / "jobs" / job_id  # the upload goes just after success is recorded
    eventually(lambda: sorted(p.name for p in folder.iterdir()) == ["attempt-2"], "upload removed")
    assert "heartbeat stale; now queued" in log
    assert "P00" not in log + (tmp_path / "first.log").read_text()
