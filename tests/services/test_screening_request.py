"""The typed screening request (app/services/screening_request.py): each source variant from
the public JSON shape, what a job row keeps and reads back, the rows stored before the model,
and the one place server paths are taken out of a message (no database: `one_pass`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.batch.backends import SourceError
from app.batch.mapping import MappingError
from app.services import screening_jobs as jobs
from app.services.screening_request import (
    PathSource,
    ScreeningRequest,
    UploadedMapping,
    UploadSource,
    UrlSource,
    stored_request,
    untagged,
)

pytestmark = pytest.mark.one_pass

URL = "postgresql://reader@127.0.0.1/registry"


@pytest.mark.parametrize(
    ("given", "variant"),
    [
        ({"path": "registry.csv"}, PathSource(path="registry.csv")),
        ({"kind": "path", "path": "registry.csv"}, PathSource(path="registry.csv")),
        ({"url": URL, "table": "ssc.registry"}, UrlSource(url=URL, table="ssc.registry")),
        ({"kind": "url", "url": URL, "table": "t"}, UrlSource(url=URL, table="t")),
        ({"kind": "upload", "name": "R.CSV"}, UploadSource(name="R.CSV")),
    ],
)
def test_each_source_variant_is_read_from_its_keys(given: dict[str, Any], variant: Any) -> None:
    request = ScreeningRequest.model_validate({"source": given})
    assert request.source == variant
    assert stored_request(request.model_dump(mode="json")) == request  # as a job keeps it


def test_each_variant_names_its_source_and_has_only_its_fields() -> None:
    assert PathSource(path="/srv/registry/bulk/").name == "bulk"
    assert UrlSource(url=URL, table="ssc.registry").name == "ssc.registry"
    upload = UploadSource(name="Registry 2026.CSV")
    assert (upload.name, upload.suffix) == ("Registry 2026.CSV", ".csv")
    for wrong in (
        {"path": "r.csv", "table": "t"},
        {"kind": "url", "url": URL, "table": "t", "path": "r.csv"},
        {"kind": "upload", "name": "r.csv", "path": "r.csv"},
    ):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            ScreeningRequest.model_validate({"source": wrong})


@pytest.mark.parametrize(
    "given",
    [{"path": "a", "url": URL}, {}, {"table": "t"}, {"kind": "file", "path": "a"}, "a.csv", None],
)
def test_a_source_that_is_not_exactly_one_variant_is_refused_naming_source(given: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        ScreeningRequest.model_validate({"source": given})
    (error,) = caught.value.errors()
    assert (error["loc"], error["type"]) == (("source",), "one_source")
    assert error["msg"] == "give either `path` or `url` (with `table`)"


def test_errors_inside_a_variant_are_located_without_its_tag() -> None:
    with pytest.raises(ValidationError) as caught:
        ScreeningRequest.model_validate({"source": {"url": URL, "table": "no such"}})
    (error,) = caught.value.errors()
    assert error["loc"] == ("source", "url", "table")  # pydantic's: the tag, then the field
    assert untagged(error["loc"]) == ("source", "table")
    assert untagged(("source",)) == ("source",)
    assert untagged(("mapping", "path", "x")) == ("mapping", "path", "x")


@pytest.mark.parametrize(
    ("given", "backend", "field"),
    [
        ({}, "duckdb", "backend"),
        ({"backend": "spark"}, "spark", "backend"),
        ({"engine": "spark"}, "spark", "engine"),
        ({"backend": None, "engine": "spark"}, "spark", "backend"),
        ({"backend": "spark", "engine": "spark"}, "spark", "backend"),
    ],
)
def test_engine_is_the_alias_of_backend(given: dict[str, Any], backend: str, field: str) -> None:
    request = ScreeningRequest.model_validate({"source": {"path": "r.csv"}, **given})
    assert (request.backend, request.backend_field) == (backend, field)
    assert "engine" not in request.model_dump()


def test_backend_and_engine_that_differ_are_refused_under_backend() -> None:
    body = {"source": {"path": "r.csv"}, "backend": "duckdb", "engine": "spark"}
    with pytest.raises(ValidationError) as caught:
        ScreeningRequest.model_validate(body)
    (error,) = caught.value.errors()
    assert (error["loc"], error["type"]) == (("backend",), "conflict")
    assert error["msg"] == "backend 'duckdb' and its alias engine 'spark' differ: give one"


def test_a_mapping_is_given_inline_or_as_a_file_not_both() -> None:
    both = {
        "source": {"path": "r.csv"},
        "mapping": {"id": "no"},
        "mapping_file": {"name": "m.yaml", "text": "id: no\n"},
    }
    with pytest.raises(ValidationError, match="not both"):
        ScreeningRequest.model_validate(both)


def test_the_json_body_schema_shows_the_path_and_url_variants_only() -> None:
    schema = ScreeningRequest.model_json_schema()
    variants = [ref["$ref"].rsplit("/", 1)[1] for ref in schema["properties"]["source"]["oneOf"]]
    assert variants == ["PathSource", "UrlSource"]  # an upload comes as multipart only
    assert "mapping_file" not in schema["properties"]
    assert schema["$defs"]["UrlSource"]["required"] == ["url", "table"]


# Rows stored before the typed request -----------------------------------------------------

EARLIER: list[tuple[dict[str, Any], ScreeningRequest]] = [
    (
        {
            "source": {"kind": "path", "name": "r.csv", "path": "/srv/registry/r.csv"},
            "engine": "spark",  # before the rename to `backend`; no `long`, `strict` then
            "rulesets": ["hsct-ssc-astis"],
            "mapping": {"name": "mapping", "content": {"id": "patient_no"}},
            "as_of": "2026-11-02",
        },
        ScreeningRequest(
            source=PathSource(path="/srv/registry/r.csv"),
            backend="spark",
            rulesets=["hsct-ssc-astis"],
            mapping={"id": "patient_no"},
            as_of=date(2026, 11, 2),
        ),
    ),
    (
        {
            "source": {"kind": "upload", "name": "Reg.CSV", "suffix": ".csv"},
            "backend": "duckdb",
            "rulesets": None,
            "mapping": {"name": "m.yaml", "text": "id: patient_no\n"},
            "as_of": "2026-12-01",
            "long": True,
            "strict": True,
        },
        ScreeningRequest(
            source=UploadSource(name="Reg.CSV"),
            mapping_file=UploadedMapping(name="m.yaml", text="id: patient_no\n"),
            as_of=date(2026, 12, 1),
            long=True,
            strict=True,
        ),
    ),
    (
        {
            "source": {"kind": "url", "name": "ssc", "url": URL, "table": "ssc"},
            "backend": "duckdb",
            "rulesets": None,
            "mapping": None,
            "as_of": "2026-12-01",
            "long": False,
            "strict": False,
        },
        ScreeningRequest(source=UrlSource(url=URL, table="ssc"), as_of=date(2026, 12, 1)),
    ),
]


@pytest.mark.parametrize(("stored", "expected"), EARLIER, ids=["path", "upload", "url"])
def test_a_request_stored_before_the_typed_model_is_read_as_it(
    stored: dict[str, Any], expected: ScreeningRequest
) -> None:
    assert stored_request(stored) == expected
    assert "mapping_file" in expected.model_dump(mode="json")  # what tells the shapes apart


# Messages ------------------------------------------------------------------------------------


def test_server_paths_are_taken_out_of_a_third_partys_message(tmp_path: Path) -> None:
    layout = jobs.Layout(tmp_path / "jobs")
    job_id = "00000000-0000-0000-0000-000000000001"
    upload = ScreeningRequest(source=UploadSource(name="Registry.CSV"))
    at = layout.upload(job_id, ".csv")
    said = SourceError(f'Invalid Input Error: CSV Error on Line: 3 in file "{at}"')
    assert jobs.public_message(said, upload, layout, job_id) == (
        'Invalid Input Error: CSV Error on Line: 3 in file "Registry.CSV"'
    )
    sample = layout.job(job_id) / "preflight-sample.csv"
    elsewhere = SourceError(f"cannot open {sample}")
    assert str(tmp_path) not in jobs.public_message(elsewhere, upload, layout, job_id)
    by_path = ScreeningRequest(source=PathSource(path=str(tmp_path / "registry" / "r.csv")))
    problems = MappingError([f"{tmp_path}/registry/r.csv: no key column 'id'"])
    assert jobs.public_message(problems, by_path, layout, job_id) == "r.csv: no key column 'id'"
