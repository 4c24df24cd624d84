"""POST /v1/screenings and friends through the real ASGI app with its worker running, on the
application database (`ELIGO_TEST_DATABASE`): uploads, server paths and a PostgreSQL table,
compared with the runner's own output; refusals; cancelling; access control."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import TypeAdapter

from app.api.schemas import Problem
from app.batch.report import ScreeningReport
from app.batch.runner import Request, screen
from app.batch.synth import write_parquet
from app.db import screenings as repo
from app.engine.model import RuleBase
from app.main import create_app
from app.security import Scope
from app.services.screenings import ScreeningJob, ScreeningList
from app.settings import Settings
from tests.conftest import SHIPPED_RULES, add_client, bearer
from tests.databases import app_database, postgres_database
from tests.waiting import eventually

COHORT = 3_000
RULESETS = ["hsct-ssc-astis", "car-t-sle"]
UPLOAD_LIMIT = 2 * 1024 * 1024
BAD_CSV = (
    "patient_no,AGE,ssc_diagnosis,lvef_percent\n"
    "r1,45,yes,60\n"
    "r2,200,yes,55\n"  # age out of range: line 3
    "r3,50,maybe,abc\n"  # line 4
    "r4,61,no,\n"
)
MAPPING = "id: patient_no\ncolumns:\n  age_years: AGE\n  ssc_diagnosis: ssc_diagnosis\n"
# The documented contract: the payloads' own types, which refuse a key they do not list.
JOB = TypeAdapter(ScreeningJob)
LIST = TypeAdapter(ScreeningList)
REPORT = TypeAdapter(ScreeningReport)


@dataclass
class Api:
    client: TestClient
    app: FastAPI
    root: Path
    jobs: Path
    token: str


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, shipped_rules: RuleBase) -> Path:
    path = tmp_path_factory.mktemp("cohort") / "cohort.parquet"
    write_parquet(COHORT, shipped_rules.features, path, seed=7)
    return path


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    """A registry table in a PostgreSQL database of its own."""
    with postgres_database() as url:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE TABLE registry (id TEXT PRIMARY KEY, ssc_diagnosis BOOLEAN, "
                    "age_years DOUBLE PRECISION, lvef_percent TEXT)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO registry VALUES ('p0', true, 45, '60'), ('p1', false, 30, '55'),"
                    " ('p2', true, 200, 'abc')"
                )
            )
        engine.dispose()
        yield url


def _settings(root: Path, database_url: str, **extra: Any) -> Settings:
    return Settings(
        rules_dir=SHIPPED_RULES,
        database_url=database_url,
        max_body_bytes=64 * 1024,
        screening_dir=root / "jobs",
        screening_sources=[root / "allowed"],
        screening_max_upload_bytes=UPLOAD_LIMIT,
        **extra,
    )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, registry_url: str) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("screening-api")
    (root / "allowed").mkdir()
    with app_database(root) as url:
        app = create_app(_settings(root, url, screening_url_prefixes=[registry_url]))
        token = add_client(app, "registry analyst", [Scope.SCREEN])
        with TestClient(app, raise_server_exceptions=False, headers=bearer(token)) as client:
            yield Api(client, app, root, root / "jobs", token)


def upload(
    client: TestClient,
    content: bytes,
    name: str = "cohort.parquet",
    mapping: str | None = None,
    **fields: Any,
) -> Response:
    files: dict[str, Any] = {"file": (name, content)}
    if mapping is not None:
        files["mapping"] = ("registry-mapping.yaml", mapping.encode())
    response: Response = client.post("/v1/screenings", files=files, data=fields)
    return response


def accepted(response: Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    JOB.validate_python(body)
    assert response.headers["location"] == f"/v1/screenings/{body['id']}"
    return body


def finished(client: TestClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/screenings/{job_id}").json()
        if body["state"] not in {"queued", "running"}:
            JOB.validate_python(body)
            return body
        assert time.monotonic() < deadline, f"still {body['state']}"
        time.sleep(0.1)


def refused(response: Response, status: int = 422) -> list[dict[str, str]]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    Problem.model_validate(response.json())
    errors: list[dict[str, str]] = response.json().get("errors", [])
    return errors


def folders(jobs: Path) -> set[str]:
    return {p.name for p in jobs.iterdir()} if jobs.exists() else set()


def test_an_upload_is_screened_as_the_runner_screens_it(
    api: Api, cohort: Path, shipped_rules: RuleBase, tmp_path: Path
) -> None:
    job = accepted(upload(api.client, cohort.read_bytes(), rulesets=",".join(RULESETS)))
    assert job["state"] in {"queued", "running"}
    assert job["request"]["source"] == {"kind": "upload", "name": "cohort.parquet"}
    assert job["requested_by"] == "registry analyst"
    done = finished(api.client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    assert done["progress"] == {"rows_done": COHORT, "rows_total": COHORT, "percent": 100.0}
    assert done["attempts"] == 1

    direct = screen(
        Request(
            source=str(cohort),
            out=tmp_path / "direct.parquet",
            rulesets=RULESETS,
            source_name="cohort.parquet",
        ),
        shipped_rules,
    )
    parquet = api.client.get(done["links"]["results_parquet"])
    assert parquet.status_code == 200
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    (tmp_path / "served.parquet").write_bytes(parquet.content)
    served = pq.read_table(tmp_path / "served.parquet")
    assert served.num_rows == COHORT
    assert served.equals(pq.read_table(direct.results))

    screen(
        Request(source=str(cohort), out=tmp_path / "direct.csv", rulesets=RULESETS),
        shipped_rules,
    )
    csv = api.client.get(done["links"]["results_csv"])
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in csv.headers["content-disposition"]
    assert csv.content == (tmp_path / "direct.csv").read_bytes()

    served_report = api.client.get(done["links"]["report"])
    report = REPORT.validate_json(served_report.content)
    assert served_report.json() == direct.report == report
    assert [r["id"] for r in done["summary"]["rulesets"]] == RULESETS
    assert done["summary"]["rulesets"][0]["counts"] == direct.report["rulesets"][0]["counts"]
    assert api.client.get(done["links"]["rejected"]).text.startswith('"row","where","id"')

    funnel = api.client.get(done["links"]["funnels"]["car-t-sle"])
    assert funnel.headers["content-type"] == "image/svg+xml"
    assert funnel.headers["content-security-policy"].startswith("default-src 'none'")
    assert funnel.text.startswith("<svg")
    missing = api.client.get(f"/v1/screenings/{job['id']}/funnels/hsct-ssc-scot.svg")
    refused(missing, 404)
    # The upload is gone once screened; the row holds no registry id.
    # (removed just after the state is recorded)
    eventually(lambda: not list((api.jobs / job["id"]).glob("source.*")), "upload removed")
    with api.app.state.sessions() as session:
        row = repo.get(session, job["id"])
        assert row is not None
        stored = json.dumps([row.request, row.summary, row.error, row.requested_by])
    assert "P000" not in stored
    assert "P000" not in json.dumps(done)


@pytest.mark.parametrize("strict", [False, True])
def test_a_csv_with_bad_rows_and_a_mapping_file(api: Api, strict: bool) -> None:
    """A bad cell is unknown for that patient and listed in problems.csv; the form's
    `strict` rejects its row instead, as before issue 20."""
    fields = {"strict": "true"} if strict else {}
    response = upload(
        api.client, BAD_CSV.encode(), "registry.csv", MAPPING, rulesets="hsct-ssc-astis",
        **fields,
    )  # fmt: skip
    job = accepted(response)
    assert job["request"]["mapping"] == {"name": "registry-mapping.yaml", "text": MAPPING}
    assert job["request"]["strict"] is strict
    done = finished(api.client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    summary = done["summary"]
    assert (summary["rows"], summary["rejected"]) == ((4, 2) if strict else (4, 0))
    assert summary["unknown_cells"] == (0 if strict else 2)
    places = ['"registry.csv:3"', '"registry.csv:4"']
    rejected = api.client.get(done["links"]["rejected"]).text.splitlines()
    assert [line.split(",")[1] for line in rejected[1:]] == (places if strict else [])
    problems = api.client.get(done["links"]["problems"]).text.splitlines()
    assert problems[0] == '"row","where","id","column","feature","value","problem"'
    assert [line.split(",")[1] for line in problems[1:]] == ([] if strict else places)
    csv = api.client.get(done["links"]["results_csv"]).text.splitlines()
    kept = ['"r1"', '"r4"'] if strict else ['"r1"', '"r2"', '"r3"', '"r4"']
    assert [line.split(",")[0] for line in csv[1:]] == kept


def test_long_format_results_are_made_and_served_when_asked_for(
    api: Api, cohort: Path, shipped_rules: RuleBase, tmp_path: Path
) -> None:
    job = accepted(upload(api.client, cohort.read_bytes(), rulesets="hsct-ssc-astis", long="true"))
    assert job["request"]["long"] is True
    done = finished(api.client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    served = api.client.get(done["links"]["long"])
    assert served.status_code == 200
    assert served.headers["content-type"] == "application/vnd.apache.parquet"
    (tmp_path / "served.parquet").write_bytes(served.content)
    request = Request(
        source=str(cohort), out=tmp_path / "d.parquet", rulesets=["hsct-ssc-astis"], long=True
    )
    direct = screen(request, shipped_rules)
    assert direct.long is not None
    key = [("id", "ascending")]
    expected = pq.read_table(direct.long).sort_by(key)
    assert pq.read_table(tmp_path / "served.parquet").sort_by(key).equals(expected)
    assert expected.num_rows == COHORT

    plain = finished(api.client, accepted(upload(api.client, cohort.read_bytes()))["id"])
    assert "long" not in plain["links"]
    refused(api.client.get(f"/v1/screenings/{plain['id']}/long.parquet"), 404)
    errors = refused(upload(api.client, cohort.read_bytes(), long="maybe"))
    assert [e["field"] for e in errors] == ["long"]


def test_a_file_in_an_allowed_directory_is_screened_by_path(api: Api, cohort: Path) -> None:
    shutil.copy(cohort, api.root / "allowed" / "registry.parquet")
    for given in ("registry.parquet", str(api.root / "allowed" / "registry.parquet")):
        body = {"source": {"path": given}, "rulesets": ["hsct-ssc-astis"]}
        job = accepted(api.client.post("/v1/screenings", json=body))
        assert job["request"]["source"]["name"] == "registry.parquet"
        done = finished(api.client, job["id"])
        assert done["state"] == "succeeded", done["error"]
        assert done["summary"]["rows"] == COHORT


@pytest.mark.parametrize("given", ["../cohort.parquet", "{cohort}", "link.parquet", "none.csv"])
def test_a_path_outside_the_allowed_directories_is_refused(
    api: Api, cohort: Path, given: str
) -> None:
    (api.root / "cohort.parquet").write_bytes(b"")
    link = api.root / "allowed" / "link.parquet"
    if not link.is_symlink():
        link.symlink_to(cohort)
    before = folders(api.jobs)
    response = api.client.post(
        "/v1/screenings", json={"source": {"path": given.format(cohort=cohort)}}
    )
    (error,) = refused(response)
    assert (error["field"], error["code"]) == ("source.path", "source_refused")
    assert folders(api.jobs) == before


def test_a_postgresql_table_is_screened_where_it_lies(api: Api, registry_url: str) -> None:
    body = {"source": {"url": registry_url, "table": "registry"}, "rulesets": ["hsct-ssc-astis"]}
    job = accepted(api.client.post("/v1/screenings", json=body))
    assert job["request"]["source"]["kind"] == "url"
    done = finished(api.client, job["id"])
    assert done["state"] == "succeeded", done["error"]
    assert (done["summary"]["rows"], done["summary"]["rejected"]) == (3, 0)
    assert done["summary"]["unknown_cells"] == 2  # p2's age 200 and LVEF abc
    strict = accepted(api.client.post("/v1/screenings", json={**body, "strict": True}))
    done = finished(api.client, strict["id"])
    assert (done["summary"]["rows"], done["summary"]["rejected"]) == (3, 1)
    other = {"source": {"url": registry_url + "_other", "table": "registry"}}
    (error,) = refused(api.client.post("/v1/screenings", json=other))
    assert error["field"] == "source.url"
    missing = {"source": {"url": registry_url, "table": "no_such_table"}}
    (error,) = refused(api.client.post("/v1/screenings", json=missing))
    assert (error["field"], error["code"]) == ("source.url", "unreadable_source")


def test_an_oversized_upload_is_413_and_leaves_nothing(api: Api) -> None:
    before = folders(api.jobs)
    big = b"id\n" + b"p1\n" * (UPLOAD_LIMIT // 3 + 1)
    refused(upload(api.client, big, "big.csv"), 413)

    def chunked() -> Iterator[bytes]:  # no Content-Length: cut off while it streams
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
        for _ in range(UPLOAD_LIMIT // 65536 + 2):
            yield b"p1\n" * 21845
        yield b"\r\n--b--\r\n"

    response = api.client.post(
        "/v1/screenings",
        content=chunked(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    refused(response, 413)
    assert folders(api.jobs) == before
    long_header = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n'
        b"X-Padding: " + b"x" * 20_000 + b"\r\n\r\nid\n\r\n--b--\r\n"
    )
    response = api.client.post(
        "/v1/screenings",
        content=long_header,
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    refused(response, 400)  # python-multipart caps a part's headers (8 of 4 KiB each)
    large_json = {"source": {"path": "x" * 4000}, "rulesets": ["x" * 1000] * 70}
    refused(api.client.post("/v1/screenings", json=large_json), 413)


def test_a_bad_mapping_is_422_naming_each_line(api: Api) -> None:
    before = folders(api.jobs)
    unknown = MAPPING + "  lvef_pct: lvef_percent\n"
    (error,) = refused(upload(api.client, BAD_CSV.encode(), "registry.csv", unknown))
    assert (error["field"], error["code"]) == ("mapping", "invalid_mapping")
    assert error["message"].startswith("registry-mapping.yaml:5: unknown feature 'lvef_pct'")
    unfit = MAPPING + "  lvef_percent: LVEF\n  serum_creatinine: {column: AGE, unit: furlong}\n"
    errors = refused(upload(api.client, BAD_CSV.encode(), "registry.csv", unfit))
    assert [(e["field"], e["code"]) for e in errors] == [("mapping", "columns")] * 2
    assert (
        errors[0]["message"]
        == "registry-mapping.yaml:5: lvef_percent: no column 'LVEF' in the source"
    )
    assert errors[1]["message"].startswith("registry-mapping.yaml:6: serum_creatinine: 'furlong'")
    inline = {"source": {"path": "x.csv"}, "mapping": {"columns": {"nope": "X"}}}
    errors = refused(api.client.post("/v1/screenings", json=inline))
    assert {e["field"] for e in errors} == {"source.path", "mapping"}
    # Columns that fit no feature, without a mapping: named by the file as uploaded.
    errors = refused(upload(api.client, BAD_CSV.encode(), "registry.csv"))
    assert {e["field"] for e in errors} == {"file"}
    assert errors[0]["message"].startswith("registry.csv: column 'patient_no' is not a feature")
    assert errors[-1]["message"].startswith("registry.csv: no key column 'id'")
    assert str(api.jobs) not in json.dumps(errors)
    assert folders(api.jobs) == before


def test_unknown_rule_sets_formats_and_fields_are_422(api: Api, cohort: Path) -> None:
    content = cohort.read_bytes()
    (error,) = refused(upload(api.client, content, rulesets=["hsct-ssc-astis", "nope"]))
    assert (error["field"], error["code"]) == ("rulesets[1]", "unknown_ruleset")
    # A source the server reads, so the rule set is the one thing wrong (the file is this
    # test's own: tests run apart, in any order).
    shutil.copy(cohort, api.root / "allowed" / "registry.parquet")
    body = {"source": {"path": "registry.parquet"}, "rulesets": ["nope"]}
    (error,) = refused(api.client.post("/v1/screenings", json=body))
    assert error["field"] == "rulesets[0]"
    (error,) = refused(upload(api.client, content, "cohort.xlsx"))
    assert (error["field"], error["code"]) == ("file", "unsupported_format")
    (error,) = refused(upload(api.client, content, engine="pandas"))
    assert error["field"] == "engine"
    (error,) = refused(upload(api.client, content, colour="blue"))
    assert error["field"] == "colour"
    no_file = {"mapping": ("m.yaml", MAPPING.encode())}
    (error,) = refused(api.client.post("/v1/screenings", files=no_file))
    assert (error["field"], error["code"]) == ("file", "missing")
    errors = refused(api.client.post("/v1/screenings", json={"source": {"path": "a", "url": "b"}}))
    assert errors[0]["field"] == "source"
    garbage = b"PAR1 this is not parquet"
    (error,) = refused(upload(api.client, garbage))
    assert (error["field"], error["code"]) == ("file", "unreadable_source")


@pytest.mark.parametrize(
    ("source", "field", "code"),
    [
        ({"path": "a", "url": "postgresql://h/d", "table": "t"}, "source", "one_source"),
        ({}, "source", "one_source"),
        ({"url": "postgresql://reader@127.0.0.1/registry"}, "source.table", "missing"),
        ({"path": "r.csv", "table": "t"}, "source.table", "extra_forbidden"),
        ({"path": ""}, "source.path", "string_too_short"),
        (
            {"url": "postgresql://h/d", "table": "no such"},
            "source.table",
            "string_pattern_mismatch",
        ),
        ({"kind": "upload", "name": "r.csv"}, "source.kind", "upload_in_json"),
    ],
)
def test_a_json_source_is_exactly_one_variant_or_422_naming_the_field(
    api: Api, source: dict[str, Any], field: str, code: str
) -> None:
    before = folders(api.jobs)
    (error,) = refused(api.client.post("/v1/screenings", json={"source": source}))
    assert (error["field"], error["code"]) == (field, code)
    assert folders(api.jobs) == before


def test_a_mapping_file_comes_by_multipart_only(api: Api) -> None:
    body = {"source": {"path": "r.csv"}, "mapping_file": {"name": "m.yaml", "text": "id: x\n"}}
    (error,) = refused(api.client.post("/v1/screenings", json=body))
    assert (error["field"], error["code"]) == ("mapping_file", "extra_forbidden")


def test_a_mapping_file_that_is_not_text_is_422(api: Api) -> None:
    before = folders(api.jobs)
    files = {"file": ("r.csv", BAD_CSV.encode()), "mapping": ("m.yaml", b"id: \xff\xfe\n")}
    (error,) = refused(api.client.post("/v1/screenings", files=files))
    assert (error["field"], error["code"]) == ("mapping", "not_utf8")
    assert folders(api.jobs) == before


def test_the_openapi_document_shows_the_source_variants(api: Api) -> None:
    operation = api.client.get("/openapi.json").json()["paths"]["/v1/screenings"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    variants = schema["properties"]["source"]["oneOf"]
    assert [v["title"] for v in variants] == ["PathSource", "UrlSource"]
    assert [v["required"] for v in variants] == [["path"], ["url", "table"]]
    assert "mapping_file" not in schema["properties"]


def test_malformed_and_unsupported_bodies(api: Api) -> None:
    headers = {"content-type": "application/json"}
    refused(api.client.post("/v1/screenings", content=b"{", headers=headers), 400)
    refused(
        api.client.post("/v1/screenings", content=b"x", headers={"content-type": "text/csv"}), 415
    )
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    refused(api.client.post("/v1/screenings", content=b"--b\r\nnonsense", headers=multipart), 400)


def test_a_job_failing_on_its_rows_is_409_for_results_and_404_when_unknown(api: Api) -> None:
    """A CSV whose defect lies past what the pre-check samples is accepted, then fails: the
    error names the file as uploaded, and there are no results to download."""
    refused(api.client.get("/v1/screenings/00000000-0000-0000-0000-000000000000"), 404)
    refused(api.client.get("/v1/screenings/nope/results.parquet"), 404)
    lines = ["id,age_years", *(f"p{i},{40 + i % 30}" for i in range(50_000)), "p-x,41,99,7"]
    job = accepted(upload(api.client, "\n".join(lines).encode(), "late.csv"))
    done = finished(api.client, job["id"])
    assert done["state"] == "failed"
    assert done["error"].startswith("late.csv: ")
    assert done["error"].endswith("CSV Error on Line: 50002")
    assert str(api.jobs) not in done["error"]  # DuckDB's message named the upload's path
    assert set(done["links"]) == {"self", "delete"}
    for name in ("results.parquet", "results.csv", "report.json", "rejected.csv"):
        refused(api.client.get(f"/v1/screenings/{job['id']}/{name}"), 409)
    eventually(lambda: not (api.jobs / job["id"]).exists(), "a failed job's folder removed")
    listed = api.client.get("/v1/screenings", params={"limit": 2}).json()
    LIST.validate_python(listed)
    assert [item["id"] for item in listed["items"]][:1] == [job["id"]]
    assert len(listed["items"]) == 2


def test_a_finished_job_is_deleted_with_its_files(api: Api) -> None:
    job = accepted(upload(api.client, BAD_CSV.encode(), "registry.csv", MAPPING))
    done = finished(api.client, job["id"])
    assert done["links"]["delete"] == f"/v1/screenings/{job['id']}"
    assert (api.jobs / job["id"]).is_dir()
    other = bearer(add_client(api.app, "a third analyst", [Scope.SCREEN]))
    refused(api.client.delete(done["links"]["delete"], headers=other), 404)
    response = api.client.delete(done["links"]["delete"])
    assert response.status_code == 204
    assert response.content == b""
    assert not (api.jobs / job["id"]).exists()
    refused(api.client.get(f"/v1/screenings/{job['id']}"), 404)
    refused(api.client.get(done["links"]["results_parquet"]), 404)
    refused(api.client.delete(done["links"]["delete"]), 404)
    listed = api.client.get("/v1/screenings", params={"limit": 200}).json()["items"]
    assert job["id"] not in {item["id"] for item in listed}


def test_the_html_report_is_served_to_its_client_only_and_may_run_nothing(api: Api) -> None:
    """The runner writes `results.report.html` beside the results (the report's own change);
    here the file is placed, so the endpoint is held to its contract either way."""
    job = accepted(upload(api.client, BAD_CSV.encode(), "registry.csv", MAPPING))
    done = finished(api.client, job["id"])
    link = done["links"]["report_html"]
    assert link == f"/v1/screenings/{job['id']}/report.html"
    placed = api.jobs / job["id"] / f"attempt-{done['attempts']}" / "results.report.html"
    placed.unlink(missing_ok=True)
    missing = refused(api.client.get(link), 404)
    assert missing == []
    page = "<!doctype html><title>Eligo screening report</title><h1>Screening report</h1>"
    placed.write_text(page, encoding="utf-8")
    served = api.client.get(link)
    assert served.status_code == 200
    assert served.text == page
    assert served.headers["content-type"] == "text/html; charset=utf-8"
    policy = served.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "style-src 'unsafe-inline'" in policy
    assert "script-src" not in policy
    assert "frame-ancestors 'none'" in policy
    other = bearer(add_client(api.app, "a fourth analyst", [Scope.SCREEN]))
    refused(api.client.get(link, headers=other), 404)
    documented = api.client.get("/openapi.json").json()["paths"]
    operation = documented["/v1/screenings/{screening_id}/report.html"]["get"]
    assert "text/html" in operation["responses"]["200"]["content"]
    assert {"401", "403", "404", "409"} <= set(operation["responses"])


@contextmanager
def idle(tmp_path: Path) -> Iterator[TestClient]:
    """The service without a worker in this process: a job stays queued."""
    (tmp_path / "allowed").mkdir()
    with app_database(tmp_path) as url:
        app = create_app(_settings(tmp_path, url, screening_workers=0, auth=False))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


def test_a_queued_job_is_cancelled_at_once(tmp_path: Path, cohort: Path) -> None:
    with idle(tmp_path) as client:
        job = accepted(upload(client, cohort.read_bytes()))
        assert job["links"]["cancel"] == f"/v1/screenings/{job['id']}/cancel"
        assert (tmp_path / "jobs" / job["id"]).is_dir()
        refused(client.get(f"/v1/screenings/{job['id']}/results.csv"), 409)
        response = client.post(job["links"]["cancel"])
        assert response.status_code == 202
        assert response.json()["state"] == "cancelled"
        again = finished(client, job["id"], timeout=1)
        assert again["state"] == "cancelled"
        assert again["cancel_requested"] is True
        assert "cancel" not in again["links"]
        assert not (tmp_path / "jobs" / job["id"]).exists()
        assert client.post(job["links"]["cancel"]).status_code == 202  # no-op
        refused(client.get(f"/v1/screenings/{job['id']}/report.json"), 409)
        assert response.json()["links"]["delete"] == again["links"]["delete"]


def test_every_job_view_and_report_is_its_documented_type(api: Api, tmp_path: Path) -> None:
    """Queued, running, cancelled, succeeded (with rejected rows and a mapping), failed, the
    list, the answer to a cancel and the report: each validates against its TypedDict, which
    refuses a key it does not list, and the OpenAPI document names those types."""
    job = accepted(upload(api.client, BAD_CSV.encode(), "registry.csv", MAPPING))
    done = finished(api.client, job["id"])
    assert done["state"] == "succeeded"
    assert set(done["links"]) >= {"report", "funnels", "delete"}
    report = api.client.get(done["links"]["report"])
    assert report.headers["content-type"] == "application/json"
    REPORT.validate_json(report.content)
    LIST.validate_json(api.client.get("/v1/screenings").content)
    with idle(tmp_path) as client:
        queued = accepted(upload(client, BAD_CSV.encode(), "registry.csv", MAPPING))
        JOB.validate_json(client.get(queued["links"]["self"]).content)
        cancelled = client.post(queued["links"]["cancel"])
        assert JOB.validate_json(cancelled.content)["state"] == "cancelled"
        JOB.validate_json(client.get(queued["links"]["self"]).content)
        running = accepted(upload(client, BAD_CSV.encode(), "registry.csv", MAPPING))
        app: Any = client.app
        with app.state.sessions() as session:
            row = repo.get(session, running["id"])
            assert row is not None
            row.state, row.rows_done, row.rows_total, row.attempts = "running", 2, 4, 1
            session.commit()
        shown = JOB.validate_json(client.get(running["links"]["self"]).content)
        assert (shown["state"], shown["progress"]["percent"]) == ("running", 50.0)
        asked = JOB.validate_json(client.post(running["links"]["cancel"]).content)
        assert (asked["state"], asked["cancel_requested"]) == ("running", True)
        LIST.validate_json(client.get("/v1/screenings").content)
    with pytest.raises(ValueError, match="extra"):
        JOB.validate_python({**done, "surprise": 1})
    paths = api.app.openapi()["paths"]
    ok = paths["/v1/screenings/{screening_id}/report.json"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScreeningReport"
    }


def test_a_queued_job_must_be_cancelled_before_it_is_deleted(tmp_path: Path, cohort: Path) -> None:
    with idle(tmp_path) as client:
        job = accepted(upload(client, cohort.read_bytes()))
        assert "delete" not in job["links"]
        response = client.delete(job["links"]["self"])
        refused(response, 409)
        assert "cancel it first" in response.json()["detail"]
        assert (tmp_path / "jobs" / job["id"]).is_dir()
        assert client.get(job["links"]["self"]).json()["state"] == "queued"
        client.post(job["links"]["cancel"])
        assert client.delete(job["links"]["self"]).status_code == 204
        refused(client.get(job["links"]["self"]), 404)


def test_a_finished_job_cannot_be_cancelled(api: Api) -> None:
    job = accepted(upload(api.client, BAD_CSV.encode(), "registry.csv", MAPPING))
    finished(api.client, job["id"])
    refused(api.client.post(f"/v1/screenings/{job['id']}/cancel"), 409)


def test_screening_needs_the_screen_scope_and_jobs_are_their_clients(
    api: Api, cohort: Path
) -> None:
    job = accepted(upload(api.client, BAD_CSV.encode(), "registry.csv", MAPPING))
    before = folders(api.jobs)
    with TestClient(api.app, raise_server_exceptions=False) as bare:
        refused(bare.post("/v1/screenings", files={"file": ("c.parquet", b"x")}), 401)
        evaluator = bearer(add_client(api.app, "ehr", [Scope.EVALUATE]))
        denied = bare.post(
            "/v1/screenings", files={"file": ("c.parquet", cohort.read_bytes())}, headers=evaluator
        )
        refused(denied, 403)
        assert 'scope="screen"' in denied.headers["www-authenticate"]
        assert folders(api.jobs) == before
        other = bearer(add_client(api.app, "another analyst", [Scope.SCREEN]))
        for path in ("", "/results.parquet", "/report.json"):
            refused(bare.get(f"/v1/screenings/{job['id']}{path}", headers=other), 404)
        refused(bare.post(f"/v1/screenings/{job['id']}/cancel", headers=other), 404)
        assert bare.get("/v1/screenings", headers=other).json() == {"items": []}


def test_a_job_that_could_not_be_recorded_leaves_no_files(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit fails after the upload was saved and checked: 503, and the folder goes."""

    def add_broken(session: Any, job: Any) -> None:
        job.state = "lost"  # the state's CHECK constraint fails the commit
        session.add(job)

    monkeypatch.setattr(repo, "add", add_broken)
    before = folders(api.jobs)
    response = upload(api.client, BAD_CSV.encode(), "registry.csv", MAPPING)
    refused(response, 503)
    assert folders(api.jobs) == before


@pytest.mark.parametrize("field", ["backend", "engine"])
def test_the_backend_is_named_backend_or_by_its_alias_engine(
    api: Api, cohort: Path, field: str
) -> None:
    job = accepted(upload(api.client, cohort.read_bytes(), **{field: "duckdb"}))
    assert job["request"]["backend"] == "duckdb"
    assert "engine" not in job["request"]
    (error,) = refused(upload(api.client, cohort.read_bytes(), **{field: "pandas"}))
    assert error["field"] == field  # the name the client used
    body = {"source": {"path": "registry.parquet"}, field: "pandas"}
    (error,) = refused(api.client.post("/v1/screenings", json=body))
    assert error["field"] == field


def test_backend_and_engine_that_differ_are_422_naming_both(api: Api, cohort: Path) -> None:
    before = folders(api.jobs)
    both = {"backend": "duckdb", "engine": "spark"}
    (error,) = refused(upload(api.client, cohort.read_bytes(), **both))
    assert (error["field"], error["code"]) == ("backend", "conflict")
    assert "backend 'duckdb'" in error["message"]
    assert "engine 'spark'" in error["message"]
    body = {"source": {"path": "registry.parquet"}, **both}
    (error,) = refused(api.client.post("/v1/screenings", json=body))
    assert (error["field"], error["code"]) == ("backend", "conflict")
    assert folders(api.jobs) == before  # nothing half-written
    agreeing = {"backend": "duckdb", "engine": "duckdb"}
    accepted(upload(api.client, cohort.read_bytes(), **agreeing))
