"""Hot reload against a real server process: file changes, SIGHUP, refused invalid rules, and
no request dropped or answered from a half-loaded rule base while reloads happen."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GOLDEN_RULES
from tests.demo_patients import DEMO_CANDIDATE
from tests.e2e.helpers import Server, eligo_process

pytestmark = pytest.mark.e2e

DEMO = "therapies/demo.yaml"
# LVEF 47 % is eligible under the demo rules and excluded once the threshold moves to < 50 %.
PATIENT: dict[str, Any] = {**DEMO_CANDIDATE, "lvef_percent": 47}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(GOLDEN_RULES, target, ignore=shutil.ignore_patterns("tests"))
    return target


def _server(rules: Path, tmp_path: Path, interval: str) -> Iterator[Server]:
    env = {
        "ELIGO_RULES_DIR": str(rules),
        "ELIGO_RULES_RELOAD_INTERVAL": interval,
        "ELIGO_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}",
    }
    with eligo_process(env, log=tmp_path / "server.log") as server:
        yield server


@pytest.fixture
def polling(rules: Path, tmp_path: Path) -> Iterator[Server]:
    yield from _server(rules, tmp_path, "0.1")


@pytest.fixture
def sighup_only(rules: Path, tmp_path: Path) -> Iterator[Server]:
    yield from _server(rules, tmp_path, "0")


def _listing(server: Server) -> dict[str, Any]:
    response = httpx.get(f"{server.base}/v1/rulesets", timeout=5)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _status(server: Server) -> str:
    response = httpx.post(f"{server.base}/v1/evaluations", json={"features": PATIENT}, timeout=5)
    assert response.status_code == 200, response.text
    status: str = response.json()["results"][0]["status"]
    return status


def _until(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _changed(server: Server, before: str) -> Callable[[], bool]:
    return lambda: _listing(server)["rules_hash"] != before


def _edit(rules: Path, old: str, new: str) -> None:
    path = rules / DEMO
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_changed_file_is_served_after_reload(polling: Server, rules: Path) -> None:
    before = _listing(polling)["rules_hash"]
    assert _status(polling) == "eligible"
    _edit(rules, "lvef_percent < 45 %", "lvef_percent < 50 %")
    _until(lambda: _listing(polling)["rules_hash"] != before)
    assert _status(polling) == "ineligible"
    assert "rules reloaded (files changed)" in polling.output()


def test_an_invalid_change_is_refused_and_the_old_rules_keep_serving(
    polling: Server, rules: Path
) -> None:
    before = _listing(polling)["rules_hash"]
    _edit(rules, "lvef_percent < 45 %", "lvef_precent < 45 %")
    _until(lambda: _listing(polling)["reload_error"] is not None)
    listing = _listing(polling)
    assert listing["rules_hash"] == before
    (diagnostic,) = listing["reload_error"]["diagnostics"]
    assert diagnostic["code"] == "E011"
    assert diagnostic["file"].endswith(DEMO)
    assert diagnostic["line"] > 1
    assert _status(polling) == "eligible"
    log = polling.output()
    assert "refused: 1 error(s)" in log
    assert f"{DEMO}:{diagnostic['line']}:{diagnostic['col']}: error E011" in log
    # Fixing the file clears the error and serves the fix.
    _edit(rules, "lvef_precent < 45 %", "lvef_percent < 50 %")
    _until(lambda: _listing(polling)["reload_error"] is None)
    assert _listing(polling)["rules_hash"] != before
    assert _status(polling) == "ineligible"


def test_sighup_reloads_when_polling_is_off(sighup_only: Server, rules: Path) -> None:
    before = _listing(sighup_only)["rules_hash"]
    _edit(rules, "lvef_percent < 45 %", "lvef_percent < 50 %")
    time.sleep(0.5)
    assert _listing(sighup_only)["rules_hash"] == before  # nothing watches the files
    sighup_only.process.send_signal(signal.SIGHUP)
    _until(lambda: _listing(sighup_only)["rules_hash"] != before)
    assert _status(sighup_only) == "ineligible"
    assert "rules reloaded (SIGHUP)" in sighup_only.output()


def test_no_request_is_dropped_or_mixed_during_reloads(polling: Server, rules: Path) -> None:
    """Clients evaluate continuously while the threshold flips ten times. Every answer is a
    200, and each is consistent with the rule set hash it reports: never half old, half new."""
    hashes: dict[str, str] = {}
    answers: list[tuple[int, str | None, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=polling.base, timeout=10) as http:
            while not stop.is_set():
                response = http.post("/v1/evaluations", json={"features": PATIENT})
                result = response.json()["results"][0] if response.status_code == 200 else {}
                answers.append(
                    (
                        response.status_code,
                        result.get("ruleset", {}).get("hash"),
                        result.get("status"),
                    )
                )

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for new in ["50", "45"] * 5:
            old = "45" if new == "50" else "50"
            before = _listing(polling)["rules_hash"]
            _edit(rules, f"lvef_percent < {old} %", f"lvef_percent < {new} %")
            _until(_changed(polling, before))
            ruleset = _listing(polling)["rulesets"][0]
            hashes[ruleset["hash"]] = "ineligible" if new == "50" else "eligible"
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(answers) > 100
    assert {code for code, _, _ in answers} == {200}
    assert len(hashes) == 2
    assert all(hashes[str(ruleset_hash)] == status for _, ruleset_hash, status in answers)
