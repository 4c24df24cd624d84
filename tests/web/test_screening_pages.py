"""Registry screening from the web (/screen) through the real app, its worker running, on the
application database: who may screen, a job followed to its report and files, problems shown
next to their fields, and nothing left on disk by a request that was not accepted."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from app.db import clients
from app.main import create_app
from app.security import Scope, parse_token
from app.services import accounts
from app.settings import Settings
from tests.conftest import SHIPPED_RULES, add_client
from tests.databases import app_database
from tests.web.conftest import csrf_of

PASSWORD = "a long enough clinic passphrase"  # noqa: S105 - test accounts'
REGISTRY = (
    "patient_no,AGE,ssc_diagnosis,lvef_percent\n"
    "r1,45,yes,60\n"
    ",45,yes,55\n"  # no id: rejected, line 3 (a bad cell only makes its value unknown)
    "r3,50,yes,\n"
    "r4,200,yes,58\n"  # age out of range: read as unknown, r4 stays in, the cell reported
)
MAPPING = "id: patient_no\ncolumns:\n  age_years: AGE\n"
RULESETS = ["hsct-ssc-astis", "hsct-ssc-scot"]
UPLOAD_LIMIT = 64 * 1024
REPORT = "<!doctype html><title>Eligo screening report</title><h1>Screening report</h1>"


@dataclass
class Site:
    client: TestClient
    app: FastAPI
    jobs: Path
    allowed: Path


def _client_id(token: str) -> str:
    parsed = parse_token(token)
    assert parsed is not None
    return parsed[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Local accounts: `analyst` and `colleague` screen as two clients holding `screen`,
    `evaluator` as one holding only `evaluate`, `revoked` as a revoked one; `stranger` as
    none."""
    root = tmp_path_factory.mktemp("screen-web")
    allowed = root / "allowed"
    allowed.mkdir()
    (allowed / "registry.csv").write_text(REGISTRY, encoding="utf-8")
    (allowed / "notes.txt").write_text("not a registry", encoding="utf-8")
    with app_database(root) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            sign_in="local",
            screening_dir=root / "jobs",
            screening_sources=[allowed],
            screening_max_upload_bytes=UPLOAD_LIMIT,
        )
        app = create_app(settings)
        linked = {
            "analyst": add_client(app, "registry team", [Scope.SCREEN]),
            "colleague": add_client(app, "another team", [Scope.SCREEN]),
            "evaluator": add_client(app, "ehr", [Scope.EVALUATE]),
            "revoked": add_client(app, "old team", [Scope.SCREEN]),
        }
        with app.state.sessions() as session:
            found = clients.find(session, _client_id(linked["revoked"]))
            assert found is not None
            found.revoked_at = datetime.now(UTC)
            for name in (*linked, "stranger"):
                accounts.create_clinician(session, name, name.title(), PASSWORD, datetime.now(UTC))
            session.commit()
        web = {name: _client_id(token) for name, token in linked.items()}
        app.state.settings = settings.model_copy(update={"screening_web_clients": web})
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Site(client, app, root / "jobs", allowed)


def sign_in(client: TestClient, username: str) -> None:
    client.cookies.clear()
    token = csrf_of(client.get("/sign-in").text)
    fields = {"username": username, "password": PASSWORD, "next": "/", "csrf_token": token}
    answer = client.post("/sign-in", data=fields, follow_redirects=False)
    assert answer.status_code == 303, answer.text


def post(
    client: TestClient,
    *,
    file: tuple[str, bytes] | None = ("registry.csv", REGISTRY.encode()),
    mapping: str | None = MAPPING,
    **fields: Any,
) -> Response:
    """The request form as a browser posts it: empty file inputs as parts without a name."""
    token = csrf_of(client.get("/screen").text)
    data = {"csrf_token": token, "source": "upload", "rulesets": RULESETS, **fields}
    files = {
        "file": file or ("", b""),
        "mapping": ("mapping.yaml", mapping.encode()) if mapping is not None else ("", b""),
    }
    response: Response = client.post("/screen", data=data, files=files, follow_redirects=False)
    return response


def folders(jobs: Path) -> set[str]:
    return {p.name for p in jobs.iterdir()} if jobs.exists() else set()


def done(client: TestClient, page: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"{page}/job.json").json()
        if job["state"] not in {"queued", "running"}:
            return job
        assert time.monotonic() < deadline, f"still {job['state']}"
        time.sleep(0.1)


def errors_of(html: str) -> dict[str, list[str]]:
    """The problems shown next to fields, by field: `<p class="error" id="e-file1">`."""
    found: dict[str, list[str]] = {}
    pattern = r'<p class="error" id="e-([a-z_]+)\d+"><span[^>]*>Error: </span>(.*?)</p>'
    for key, message in re.findall(pattern, html):
        found.setdefault(key, []).append(message)
    return found


def test_only_users_linked_to_a_client_with_the_screen_scope_may_screen(site: Site) -> None:
    site.client.cookies.clear()
    answer = site.client.get("/screen", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=%2Fscreen"
    before = folders(site.jobs)
    for user in ("stranger", "evaluator", "revoked"):
        sign_in(site.client, user)
        page = site.client.get("/screen")
        assert page.status_code == 403, user
        assert "You need the screen scope" in page.text
        assert 'name="file"' not in page.text
        posted = post(site.client)  # its token from the 403 page: a real one, still refused
        assert posted.status_code == 403
        assert folders(site.jobs) == before  # the upload was never written
        assert site.client.get("/screen/x/job.json").status_code == 403
    sign_in(site.client, "analyst")
    page = site.client.get("/screen")
    assert page.status_code == 200
    assert 'href="/screen" aria-current="page">Screen a registry</a>' in page.text
    # the server's sources, listed by their directory; what screening cannot read, not
    assert f'<option value="{site.allowed / "registry.csv"}"' in page.text
    assert "allowed/registry.csv" in page.text
    assert "notes.txt" not in page.text
    # rule sets grouped by disease, then therapy, every one ticked
    groups = re.findall(r'<h3 id="g-[^"]+">([^<]+)</h3>', page.text)
    assert groups.index("Autologous HSCT for SSc") < groups.index("CD19 CAR-T for SLE")
    rulesets = site.app.state.rules.rulesets
    assert len(groups) == len({(r.therapy, r.indication) for r in rulesets.values()})
    box = r'<input type="checkbox" name="rulesets" value="([^"]+)"( checked)?'
    boxes = re.findall(box, page.text)
    assert len(boxes) == len(rulesets)
    assert all(checked for _, checked in boxes)


def test_an_upload_is_followed_to_its_report_and_files_seen_by_its_client_only(
    site: Site,
) -> None:
    sign_in(site.client, "analyst")
    answer = post(site.client)
    assert answer.status_code == 303, errors_of(answer.text)
    page_url = answer.headers["location"]
    job_id = page_url.removeprefix("/screen/")
    job = done(site.client, page_url)
    assert job["state"] == "succeeded", job["error"]
    assert job["requested_by"] == "analyst (web) via registry team"
    assert [r["id"] for r in job["summary"]["rulesets"]] == RULESETS
    page = site.client.get(page_url).text
    assert "Screening of registry.csv" in page
    assert "4 rows read, 3 screened, 1 rejected (no id: 1). 1 cell could not be read and" in page
    assert job["summary"]["rejected_because"] == [{"reason": "no id", "rows": 1}]
    # The mapping names no diagnosis column (the file's ssc_diagnosis is left out): no
    # patient can be not_indicated, and the page says so.
    (warning,) = job["summary"]["warnings"]
    assert warning.startswith("no column gives ssc_diagnosis: under hsct-ssc-astis, ")
    assert "Diagnosis not in the source:</strong> no column gives ssc_diagnosis" in page
    assert f'href="{page_url}/problems.csv"' in page
    astis = job["summary"]["rulesets"][0]["counts"]
    row = re.search(r'<th scope="row" title="hsct-ssc-astis">ASTIS</th>(.*?)</tr>', page)
    assert row is not None
    shown = [int(n) for n in re.findall(r'<td class="n">([\d,]+)</td>', row.group(1))]
    assert shown == [astis[s] for s in ("eligible", "indeterminate", "ineligible", "not_indicated")]
    assert 'http-equiv="refresh"' not in page  # finished: nothing to follow
    for name in ("results.csv", "results.parquet", "rejected.csv", "report.json"):
        assert f'href="{page_url}/{name}"' in page
    assert "long.parquet" not in page  # not asked for
    assert "<dt>Unreadable cells</dt><dd>read as unknown, the patient screened</dd>" in page
    assert site.client.get(f"{page_url}/long.parquet").status_code == 404
    csv = site.client.get(f"{page_url}/results.csv")
    assert csv.status_code == 200
    attachment = f'attachment; filename="screening-{job_id}.results.csv"'
    assert csv.headers["content-disposition"] == attachment
    screened_ids = {line.split(",")[0].strip('"') for line in csv.text.splitlines()[1:]}
    assert screened_ids == {"r1", "r3", "r4"}
    rejected = site.client.get(f"{page_url}/rejected.csv").text
    assert "registry.csv:3" in rejected
    funnel = site.client.get(f"{page_url}/funnels/hsct-ssc-astis.svg")
    assert funnel.headers["content-type"] == "image/svg+xml"
    assert "sandbox" in funnel.headers["content-security-policy"]

    # The HTML report: the runner writes it beside the results (the report's own change);
    # the page offers it only when it is there.
    report = site.jobs / job_id / f"attempt-{job['attempts']}" / "results.report.html"
    report.unlink(missing_ok=True)
    assert "Open the report" not in site.client.get(page_url).text
    assert site.client.get(f"{page_url}/report.html").status_code == 404
    report.write_text(REPORT, encoding="utf-8")
    assert f'href="{page_url}/report.html"' in site.client.get(page_url).text
    served = site.client.get(f"{page_url}/report.html")
    assert served.status_code == 200
    assert served.text == REPORT
    assert served.headers["content-type"] == "text/html; charset=utf-8"
    policy = served.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy

    listed = site.client.get("/screen").text
    assert f'<a href="{page_url}">' in listed

    sign_in(site.client, "colleague")  # another client: as if the job did not exist
    assert page_url not in site.client.get("/screen").text
    for path in ("", "/job.json", "/results.csv", "/report.html", "/funnels/hsct-ssc-astis.svg"):
        assert site.client.get(page_url + path).status_code == 404, path
    token = csrf_of(site.client.get("/screen").text)
    for action in ("cancel", "delete"):
        refused = site.client.post(f"{page_url}/{action}", data={"csrf_token": token})
        assert refused.status_code == 404
    assert job_id in folders(site.jobs)

    sign_in(site.client, "analyst")
    token = csrf_of(site.client.get(page_url).text)
    done_already = site.client.post(f"{page_url}/cancel", data={"csrf_token": token})
    assert done_already.status_code == 409
    assert "<h1>Cannot cancel</h1>" in done_already.text
    assert "succeeded" in done_already.text
    gone = site.client.post(
        f"{page_url}/delete", data={"csrf_token": token}, follow_redirects=False
    )
    assert gone.status_code == 303
    assert gone.headers["location"] == "/screen"
    assert job_id not in folders(site.jobs)
    assert site.client.get(page_url).status_code == 404


def test_problems_come_back_next_to_their_fields_and_leave_nothing(site: Site) -> None:
    sign_in(site.client, "analyst")
    before = folders(site.jobs)
    wrong = post(site.client, file=("registry.xlsx", b"PK\x03\x04"), mapping=None)
    assert wrong.status_code == 422
    assert errors_of(wrong.text) == {
        "file": ["registry.xlsx: a registry is read from .csv, .jsonl, .ndjson, .parquet"]
    }
    assert 'id="file" name="file" type="file"' in wrong.text
    assert 'aria-invalid="true"' in wrong.text
    assert '<a href="#file">Registry file: registry.xlsx' in wrong.text

    bad_mapping = post(site.client, mapping="id: patient_no\ncolumns:\n  no_such_feature: AGE\n")
    shown = errors_of(bad_mapping.text)
    assert bad_mapping.status_code == 422
    assert list(shown) == ["mapping"]
    assert "no_such_feature" in shown["mapping"][0]
    assert "mapping.yaml:3" in shown["mapping"][0]  # the file as uploaded, and the line

    nothing = post(site.client, file=None, mapping=None, rulesets=[])
    assert errors_of(nothing.text) == {
        "file": ["choose the registry file to upload (or a source on the server)"],
        "rulesets": ["tick at least one rule set"],
    }
    # what was chosen is kept: no rule set ticked stays unticked
    assert " checked> ASTIS" not in nothing.text

    outside = post(site.client, file=None, mapping=None, source="path", path="/etc/passwd")
    assert outside.status_code == 422
    assert list(errors_of(outside.text)) == ["path"]
    assert "ELIGO_SCREENING_SOURCES" in errors_of(outside.text)["path"][0]

    unknown = post(site.client, mapping=None, rulesets=["hsct-ssc-astis", "no-such-ruleset"])
    assert unknown.status_code == 422
    assert "no-such-ruleset" in errors_of(unknown.text)["rulesets"][0]

    large = b"id,age_years\n" + b"p,40\n" * (UPLOAD_LIMIT // 5)
    too_large = post(site.client, file=("registry.csv", large), mapping=None)
    assert too_large.status_code == 413
    assert errors_of(too_large.text) == {
        "file": ["larger than the 64 KiB a registry upload may be"]
    }

    forged = site.client.post(
        "/screen",
        data={"csrf_token": "x" * 43, "source": "upload"},
        files={"file": ("registry.csv", REGISTRY.encode())},
    )
    assert forged.status_code == 403
    assert "security token" in forged.text
    assert folders(site.jobs) == before


def test_strict_and_long_are_offered_explained_and_passed_to_the_job(site: Site) -> None:
    """The form's two options, as the API and `eligo screen` have them: `strict` leaves out
    r4 (its age 200 cannot be read) besides the row without an id; `long` adds the long
    file, offered on the job's page."""
    sign_in(site.client, "analyst")
    form = site.client.get("/screen").text
    for name in ("strict", "long"):
        box = re.search(
            rf'<input id="{name}" name="{name}" type="checkbox" value="true"[^>]*>', form
        )
        assert box is not None
        assert f'aria-describedby="h-{name}"' in box.group(0)
        assert "checked" not in box.group(0)
    assert "Leave out rows with an unreadable cell</label>" in form
    assert "counts as unknown for that patient" in form
    assert "one row per patient and rule set" in form

    answer = post(site.client, strict="true", long="true")
    assert answer.status_code == 303, errors_of(answer.text)
    page_url = answer.headers["location"]
    job = done(site.client, page_url)
    assert job["state"] == "succeeded", job["error"]
    assert (job["request"]["strict"], job["request"]["long"]) == (True, True)
    summary = job["summary"]
    assert (summary["rows"], summary["rejected"], summary["screened"]) == (4, 2, 2)
    assert summary["unknown_cells"] == 0
    page = site.client.get(page_url).text
    assert "<dt>Unreadable cells</dt><dd>the row left out (strict)</dd>" in page
    assert "4 rows read, 2 screened, 2 rejected (no id: 1; a bad cell in AGE: 1)." in page
    assert "problems.csv" not in page  # none was read as unknown: no empty file offered
    assert f'href="{page_url}/rejected.csv"' in page  # the rows left out are there
    assert f'<a href="{page_url}/long.parquet" download>Results in long format' in page
    long = site.client.get(f"{page_url}/long.parquet")
    assert long.status_code == 200
    assert long.content[:4] == b"PAR1"
    attachment = f'attachment; filename="screening-{job["id"]}.long.parquet"'
    assert long.headers["content-disposition"] == attachment
    table = pq.read_table(io.BytesIO(long.content))
    assert table.num_rows == 2 * len(RULESETS)  # r1 and r3, each rule set
    assert set(table.column("id").to_pylist()) == {"r1", "r3"}
    funnel = site.client.get(f"{page_url}/funnels/hsct-ssc-astis.svg").text
    assert ">• no id (1)</text>" in funnel
    assert ">• a bad cell in AGE (1)</text>" in funnel


def test_the_options_are_kept_with_a_problem_and_a_wrong_value_is_named(site: Site) -> None:
    sign_in(site.client, "analyst")
    before = folders(site.jobs)
    kept = post(site.client, rulesets=[], long="true")
    assert kept.status_code == 422
    assert list(errors_of(kept.text)) == ["rulesets"]
    assert re.search(r'<input id="long" [^>]*checked', kept.text)
    assert not re.search(r'<input id="strict" [^>]*checked', kept.text)
    wrong = post(site.client, strict="sometimes")
    assert wrong.status_code == 422
    assert errors_of(wrong.text) == {"strict": ["tick the box or leave it empty (true or false)"]}
    assert '<a href="#strict">Rows with an unreadable cell: tick the box' in wrong.text
    assert folders(site.jobs) == before


def test_a_server_source_is_screened_by_choosing_it(site: Site) -> None:
    sign_in(site.client, "analyst")
    chosen = str(site.allowed / "registry.csv")
    answer = post(site.client, file=None, mapping=MAPPING, source="path", path=chosen)
    assert answer.status_code == 303, errors_of(answer.text)
    job = done(site.client, answer.headers["location"])
    assert job["state"] == "succeeded"
    assert job["request"]["source"] == {"kind": "path", "name": "registry.csv", "path": chosen}
    assert (job["summary"]["screened"], job["summary"]["unknown_cells"]) == (3, 1)


def test_a_queued_job_is_cancelled_from_its_page_which_refreshes_without_script(
    tmp_path: Path,
) -> None:
    """Development mode (no sign-in: everyone screens), no worker in this process: the job
    stays queued until cancelled."""
    with app_database(tmp_path) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            auth=False,
            screening_dir=tmp_path / "jobs",
            screening_workers=0,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            form = client.get("/screen").text
            assert "ELIGO_SCREENING_SOURCES is empty" in form
            assert '<select id="source-path" name="path" disabled' in form
            answer = post(client)
            assert answer.status_code == 303
            page_url = answer.headers["location"]
            page = client.get(page_url).text
            assert "State: <span data-job-state>Queued</span>" in page
            assert "Waiting for a worker" in page
            assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in page
            token = csrf_of(page)
            running = client.post(f"{page_url}/delete", data={"csrf_token": token})
            assert running.status_code == 409  # cancel it first
            assert "<h1>Cannot delete yet</h1>" in running.text
            forged = client.post(f"{page_url}/delete", data={"csrf_token": "x" * 43})
            assert forged.status_code == 403
            cancelled = client.post(f"{page_url}/cancel", data={"csrf_token": token})
            assert cancelled.status_code == 200  # the job page, after the redirect
            assert "State: <span data-job-state>Cancelled</span>" in cancelled.text
            assert "http-equiv" not in cancelled.text
            assert 'action="' + page_url + '/delete"' in cancelled.text
            assert client.get(f"{page_url}/results.csv").status_code == 409


def test_a_diagnosis_the_source_does_not_give_is_said_on_the_job_page(site: Site) -> None:
    """The registry gives ssc_diagnosis only; screened against an SLE rule set too, no patient
    can be not_indicated there: the job page says so before the counts."""
    sign_in(site.client, "analyst")
    mapping = MAPPING + "  ssc_diagnosis: ssc_diagnosis\n"
    answer = post(site.client, mapping=mapping, rulesets=[*RULESETS, "car-t-sle"])
    assert answer.status_code == 303, errors_of(answer.text)
    job = done(site.client, answer.headers["location"])
    assert job["state"] == "succeeded", job["error"]
    (warning,) = job["summary"]["warnings"]
    assert warning.startswith("no column gives sle_diagnosis: under car-t-sle ")
    page = site.client.get(answer.headers["location"]).text
    assert "Diagnosis not in the source:</strong> no column gives sle_diagnosis" in page
