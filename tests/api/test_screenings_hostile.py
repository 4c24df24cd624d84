"""Hostile screening requests (issue 17): a source too wide or with a line too long is refused
from its first line, naming the file and the count, before DuckDB reads it; the request's check
reads a bounded part of a larger file and leaves the rest to the job, which names the line; bad
characters and uninstalled database drivers are 422 naming the field; nothing is left behind a
refusal and nothing reaches the log as an error or a traceback.

Bounds are asserted on what was read (bytes through app.batch.head, DuckDB's scans), never
on seconds. The service runs through the real ASGI app with its worker, on the application
database (`ELIGO_TEST_DATABASE`).
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import TypeAdapter

from app.api.schemas import Problem
from app.batch import head
from app.batch.backends import DuckDBBackend
from app.main import create_app
from app.security import Scope
from app.services.screenings import ScreeningJob
from app.settings import Settings
from tests.conftest import SHIPPED_RULES, add_client, bearer
from tests.databases import app_database
from tests.waiting import eventually

JOB = TypeAdapter(ScreeningJob)  # the job view's own type, which refuses a key it does not list

MIB = 1024 * 1024
HEADER_LIMIT = MIB  # the default ELIGO_SCREENING_MAX_HEADER_BYTES
SAMPLE = 2 * MIB  # ELIGO_SCREENING_PREFLIGHT_BYTES here (16 MiB by default)
COLUMNS = 1000  # the default ELIGO_SCREENING_MAX_COLUMNS
ROWS = "".join(f"p{i},{40 + i % 30}\n" for i in range(100_000)).encode()  # ~1 MiB of rows


@dataclass
class Api:
    client: TestClient
    root: Path
    jobs: Path


@dataclass
class Reads:
    """What app.batch.head read from source files, and the scans DuckDB was given."""

    sizes: list[int] = field(default_factory=list)
    scans: list[tuple[str, str]] = field(default_factory=list)  # (thread, scan)

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def requests(self) -> list[str]:
        """The scans made by request threads (not the worker's)."""
        return [scan for thread, scan in self.scans if not thread.startswith("eligo-screening")]


@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test sends, nothing in the log is an error or carries a traceback."""
    caplog.set_level(logging.WARNING)
    yield
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]
    assert "Traceback" not in caplog.text


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("screening-hostile")
    (root / "allowed").mkdir()
    with app_database(root) as url:
        settings = Settings(
            rules_dir=SHIPPED_RULES,
            database_url=url,
            max_body_bytes=MIB,
            screening_dir=root / "jobs",
            screening_sources=[root / "allowed"],
            screening_max_upload_bytes=16 * MIB,
            screening_preflight_bytes=SAMPLE,
            screening_url_prefixes=[
                "postgresql://reader:s3cret@127.0.0.1:5432/registry",
                "postgresql+pg8000://reader:s3cret@127.0.0.1:5432/registry",
            ],
        )
        app = create_app(settings)
        token = add_client(app, "registry analyst", [Scope.SCREEN])
        with TestClient(app, raise_server_exceptions=False, headers=bearer(token)) as client:
            yield Api(client, root, root / "jobs")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Count the bytes app.batch.head reads, and record every scan DuckDB is given."""
    seen = Reads()
    lock = threading.Lock()

    class Counted(io.FileIO):
        def read(self, size: int | None = -1, /) -> bytes:
            data = super().read(size)
            with lock:
                seen.sizes.append(len(data or b""))
            return data or b""

    def opened(path: Path) -> Counted:
        return Counted(path, "rb")

    real_view = DuckDBBackend._view

    def view(self: DuckDBBackend, scan: str, name: str) -> Any:
        with lock:
            seen.scans.append((threading.current_thread().name, scan))
        return real_view(self, scan, name)

    monkeypatch.setattr(head, "_opened", opened)
    monkeypatch.setattr(DuckDBBackend, "_view", view)
    return seen


def folders(jobs: Path) -> set[str]:
    return {p.name for p in jobs.iterdir()} if jobs.exists() else set()


def refused(response: Response, status: int = 422) -> list[dict[str, str]]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    Problem.model_validate(response.json())
    errors: list[dict[str, str]] = response.json().get("errors", [])
    return errors


def upload(client: TestClient, content: bytes, name: str, **fields: Any) -> Response:
    response: Response = client.post("/v1/screenings", files={"file": (name, content)}, data=fields)
    return response


def by_path(client: TestClient, path: str) -> Response:
    response: Response = client.post("/v1/screenings", json={"source": {"path": path}})
    return response


def wide_header(columns: int) -> bytes:
    """A header of `columns` columns named after no feature: 100,001 of them are 868 KiB."""
    return (",".join(["id", *(f"col{i}" for i in range(columns - 1))]) + "\n").encode()


# Wide sources and long lines -----------------------------------------------------------------


def test_a_header_of_100000_columns_is_refused_from_its_first_line(api: Api, reads: Reads) -> None:
    """The issue's case: a CSV of 100,001 columns (868 KiB of header) held a request thread
    for ~70 s. Now its first line is counted and the file refused; DuckDB never sees it, and
    nothing past the first line's chunk is read."""
    header = wide_header(100_001)
    assert 850 * 1024 < len(header) < HEADER_LIMIT
    content = header + ROWS
    before = folders(api.jobs)
    (error,) = refused(upload(api.client, content, "registry.csv"))
    assert (error["field"], error["code"]) == ("file", "too_many_columns")
    assert error["message"].startswith("registry.csv:1: the header has 100,001 columns")
    assert "ELIGO_SCREENING_MAX_COLUMNS" in error["message"]
    assert str(api.jobs) not in error["message"]
    assert reads.scans == []
    assert 0 < reads.total <= len(header) + head.CHUNK < len(content)
    assert folders(api.jobs) == before  # the upload went with the refusal


@pytest.mark.parametrize(("name", "line"), [("long.csv", b"id,"), ("long.ndjson", b'{"id": "')])
def test_a_64_mib_first_line_is_refused_without_reading_it(
    api: Api, reads: Reads, name: str, line: bytes
) -> None:
    """A 64 MiB line took DuckDB 10 s to refuse: the first line is read up to the limit (and
    one chunk) and refused there, whatever its length."""
    path = api.root / "allowed" / name
    with path.open("wb") as out:
        out.write(line)
        for _ in range(64):
            out.write(b"9" * MIB)
        out.write(b"\n" + ROWS)
    before = folders(api.jobs)
    (error,) = refused(by_path(api.client, name))
    assert (error["field"], error["code"]) == ("source.path", "line_too_long")
    assert error["message"].startswith(f"{name}:1: the ")
    assert f"is longer than {HEADER_LIMIT:,} bytes" in error["message"]
    assert str(api.root) not in error["message"]
    assert reads.scans == []
    assert reads.total <= HEADER_LIMIT + head.CHUNK
    assert folders(api.jobs) == before


def test_ndjson_lines_that_keep_adding_keys_are_refused_at_the_line(api: Api, reads: Reads) -> None:
    """Each line brings 20 keys never seen before: DuckDB took minutes to infer 400,000
    columns. The keys are counted line by line and the file refused where they pass the
    limit."""
    lines = [
        json.dumps({"id": f"p{n}", **{f"k{n}_{j}": 1 for j in range(20)}}) for n in range(20_000)
    ]
    (error,) = refused(upload(api.client, "\n".join(lines).encode(), "registry.ndjson"))
    assert (error["field"], error["code"]) == ("file", "too_many_columns")
    # 1 + 20 keys on line 1, 20 more on each line: 1,001 by line 50
    assert error["message"].startswith("registry.ndjson:50: 1,001 different keys (columns)")
    assert reads.scans == []


def test_a_wide_parquet_schema_and_an_oversized_footer_are_refused_before_duckdb(
    api: Api, reads: Reads, tmp_path: Path
) -> None:
    wide = tmp_path / "wide.parquet"
    pq.write_table(pa.table({f"c{i}": [1] for i in range(COLUMNS + 1)}), wide)
    (error,) = refused(upload(api.client, wide.read_bytes(), "wide.parquet"))
    assert error["code"] == "too_many_columns"
    assert error["message"].startswith("wide.parquet: the Parquet schema has 1,001 columns")
    # Many row groups: a footer larger than the request's check reads.
    groups = pa.table({f"c{i}": list(range(400)) for i in range(120)})
    footer = tmp_path / "footer.parquet"
    pq.write_table(groups, footer, row_group_size=1)
    (error,) = refused(upload(api.client, footer.read_bytes(), "footer.parquet"))
    assert error["code"] == "metadata_too_large"
    assert error["message"].startswith("footer.parquet: the Parquet metadata (footer) is ")
    assert f"at most {SAMPLE:,} are read" in error["message"]
    assert reads.scans == []


def test_a_large_file_is_checked_on_its_first_lines_and_the_job_finds_a_later_long_line(
    api: Api, reads: Reads
) -> None:
    """Past the sample the request reads nothing: DuckDB's check gets a copy of the first
    whole lines. A 3 MiB line further on (over DuckDB's 2,000,000 bytes) fails the job, its
    error naming the file and the line."""
    rows = ROWS * 3  # 300,000 rows, ~3 MiB: more than the sample
    content = b"id,age_years\n" + rows + b"p-long," + b"9" * (3 * MIB) + b"\n" + ROWS
    response = upload(api.client, content, "late.csv", rulesets="hsct-ssc-astis")
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    JOB.validate_python(job)
    (scan,) = reads.requests()
    assert "preflight-sample.csv" in scan
    assert not list((api.jobs / job["id"]).glob("preflight-sample.*"))  # the copy went
    done = _finished(api.client, job["id"])
    assert done["state"] == "failed"
    assert done["error"] == "late.csv:300002: a line longer than 2,000,000 bytes"
    eventually(lambda: not (api.jobs / job["id"]).exists(), "a failed job's folder removed")


def test_a_sample_cut_inside_a_quoted_value_still_names_the_columns(api: Api, reads: Reads) -> None:
    """The sample ends at a line break, which may lie inside a quoted value: the copy
    checked is cut there, and the request is not refused for it; the job screens the whole
    file (a value with line breaks is no number: those cells are read as unknown, the rows
    kept and the cells reported)."""
    lines = [b"id,age_years\n", b'p0,"4\n0"\n']
    size = sum(map(len, lines))
    while size < SAMPLE - 2000:
        lines.append(b"p%d,%d\n" % (len(lines), 40 + len(lines) % 30))
        size += len(lines[-1])
    rows = len(lines) - 1
    quoted = b'p-q,"' + b"4\n" * 2000 + b'"\n'  # one value across the sample's end
    content = b"".join(lines) + quoted + b"p-last,50\n"
    response = upload(api.client, content, "quoted.csv", rulesets="hsct-ssc-astis")
    assert response.status_code == 202, response.text
    assert [scan for scan in reads.requests() if "preflight-sample" in scan]
    done = _finished(api.client, response.json()["id"])
    assert done["state"] == "succeeded", done["error"]
    summary = done["summary"]
    assert (summary["rows"], summary["rejected"], summary["unknown_cells"]) == (rows + 2, 0, 2)


def _finished(client: TestClient, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(client.get(f"/v1/screenings/{job_id}").json())
        return found["state"] not in {"queued", "running"}

    eventually(done, "the job finished", seconds=120)
    JOB.validate_python(found)
    return found


# Characters and drivers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": {"path": "registry.csv\x00"}}, "source.path"),
        ({"source": {"path": "registry\ud800.csv"}}, "source.path"),
        (
            {"source": {"url": "postgresql://reader@127.0.0.1/registry", "table": "t\x00"}},
            "source.table",
        ),
        (
            {"source": {"path": "r.csv"}, "mapping": {"columns": {"age_years": "AGE\x00"}}},
            "mapping.columns.age_years",
        ),
        ({"source": {"path": "r.csv"}, "mapping": {"id": "\udc00"}}, "mapping.id"),
        ({"source": {"path": "r.csv"}, "rulesets": ["hsct-ssc-astis", "x\x00"]}, "rulesets[1]"),
    ],
)
def test_nul_and_lone_surrogates_in_a_screening_request_are_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    raw = json.dumps(body).encode()  # \u0000 and \ud800 escapes, as a client would send
    before = folders(api.jobs)
    errors = refused(
        api.client.post("/v1/screenings", content=raw, headers={"content-type": "application/json"})
    )
    assert (errors[0]["field"], errors[0]["code"]) == (field, "invalid_character")
    assert folders(api.jobs) == before


def _multipart(disposition: bytes, content: bytes) -> bytes:
    return (
        b"--b\r\nContent-Disposition: form-data; " + disposition + b"\r\n\r\n" + content
        + b"\r\n--b--\r\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("disposition", "content", "field"),
    [
        (b'name="file"; filename="registry\x00.csv"', b"id\np1\n", "file"),
        (b'name="rulesets"', b"hsct-ssc-astis\x00", "rulesets"),
        (b'name="engine\x00"', b"duckdb", "engine\\u0000"),
    ],
)
def test_nul_in_a_form_field_file_name_or_value_is_422_naming_it(
    api: Api, disposition: bytes, content: bytes, field: str
) -> None:
    before = folders(api.jobs)
    response = api.client.post(
        "/v1/screenings",
        content=_multipart(disposition, content),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    (error,) = refused(response)
    assert (error["field"], error["code"]) == (field, "invalid_character")
    assert folders(api.jobs) == before


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql+pg8000://reader:s3cret@127.0.0.1:5432/registry", "pg8000"),
        ("postgresql+asyncpg://reader:s3cret@127.0.0.1:5432/registry", "asyncpg"),
        ("postgresql+psycopg2://reader:s3cret@127.0.0.1/registry", "psycopg2"),
        ("postgresql+nosuchdriver://reader:s3cret@127.0.0.1/registry", "nosuchdriver"),
    ],
)
def test_a_database_url_whose_driver_is_not_installed_is_422_naming_it(
    api: Api, url: str, driver: str
) -> None:
    """The allow-list names the database, not the driver: a `+driver` this server does not
    have was a 500 (ModuleNotFoundError). Now a 422 on `source.url` naming the driver, and
    never the credentials."""
    response = api.client.post("/v1/screenings", json={"source": {"url": url, "table": "t"}})
    (error,) = refused(response)
    assert (error["field"], error["code"]) == ("source.url", "driver_unavailable")
    assert driver in error["message"]
    assert "s3cret" not in response.text


def test_the_allow_list_comes_before_the_driver(api: Api) -> None:
    """A database the server may not read is refused as such, whatever driver it names."""
    url = "postgresql+pg8000://reader@127.0.0.1:5432/elsewhere"
    (error,) = refused(
        api.client.post("/v1/screenings", json={"source": {"url": url, "table": "t"}})
    )
    assert (error["field"], error["code"]) == ("source.url", "source_refused")
    assert "pg8000" not in error["message"]


def test_an_inline_mapping_is_bounded_like_a_mapping_file(api: Api) -> None:
    many = {f"f{i}": f"C{i}" for i in range(COLUMNS + 1)}
    errors = refused(
        api.client.post(
            "/v1/screenings", json={"source": {"path": "r.csv"}, "mapping": {"columns": many}}
        )
    )
    assert ("mapping.columns", "too_many_columns") in {(e["field"], e["code"]) for e in errors}
    large = {f"f{i}": "C" * 400 for i in range(800)}  # ~330 kB: more than 256 KiB
    errors = refused(
        api.client.post(
            "/v1/screenings", json={"source": {"path": "r.csv"}, "mapping": {"columns": large}}
        )
    )
    assert ("mapping", "too_large") in {(e["field"], e["code"]) for e in errors}


def test_the_openapi_document_states_the_screening_limits(api: Api) -> None:
    operation = api.client.get("/openapi.json").json()["paths"]["/v1/screenings"]["post"]
    assert operation["x-limits"] == {
        "screening_max_upload_bytes": 16 * MIB,
        "screening_max_mapping_bytes": 256 * 1024,
        "screening_max_columns": COLUMNS,
        "screening_max_header_bytes": HEADER_LIMIT,
        "screening_preflight_bytes": SAMPLE,
    }
    for name in ("ELIGO_SCREENING_MAX_COLUMNS", "ELIGO_SCREENING_MAX_HEADER_BYTES"):
        assert name in operation["description"]
