"""The screening request: one typed definition from the API to the stored job to the run.

    POST /v1/screenings (JSON, or multipart/form-data), the web page
        --> ScreeningRequest --accepted (path resolved, as_of set)--> the job's row
            (`model_dump(mode="json")`) --stored_request()--> the worker
            --screening_jobs.run_request()--> app.batch.runner.Request

The source is a discriminated union, each variant with only its fields: a server path, an
upload, or a database table (`kind: "url"`, the word the job view has always shown). JSON
clients send `{"path": ...}` or `{"url": ..., "table": ...}` without `kind`; the discriminator
tells them apart by their keys, so that public shape stays as it was. An upload comes by
multipart/form-data only, as does a mapping file (`mapping_file`): both are left out of the
JSON body's schema and refused there (app/api/screenings.py).

Jobs stored before this model (a looser dict: names beside each source, the mapping wrapped,
`engine` before `backend`) are read through `_earlier()`, on read rather than by a migration:
the rows stay as they were written, and a process of the previous version still running beside
this one during a deploy keeps writing that shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

Backend = Literal["duckdb", "spark"]
BACKENDS: tuple[Backend, ...] = ("duckdb", "spark")
TABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
SOURCE_KINDS = ("path", "upload", "url")
INLINE_MAPPING = "mapping"  # how messages and the job view name a mapping given as JSON

_FIXED = ConfigDict(extra="forbid", frozen=True)


class PathSource(BaseModel):
    """A file or FHIR Bulk folder on the server. Once accepted, `path` is the resolved path
    (the worker checks it again against the settings it runs with)."""

    model_config = _FIXED

    kind: Literal["path"] = "path"
    path: str = Field(
        min_length=1,
        max_length=4096,
        description="Inside one of the server's ELIGO_SCREENING_SOURCES directories "
        "(absolute, or relative to one of them)",
    )

    @property
    def name(self) -> str:
        return PurePath(self.path).name


class UploadSource(BaseModel):
    """A file uploaded with the request (multipart/form-data `file`), kept in the job's
    folder as `source<suffix>`."""

    model_config = _FIXED

    kind: Literal["upload"] = "upload"
    name: str = Field(description="The file's name as sent")

    @property
    def suffix(self) -> str:
        return PurePath(self.name).suffix.lower()


class UrlSource(BaseModel):
    """A table in a database, screened where it lies."""

    model_config = _FIXED

    kind: Literal["url"] = "url"
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="SQLAlchemy URL of a database ELIGO_SCREENING_URL_PREFIXES allows",
    )
    table: str = Field(max_length=127, pattern=TABLE_NAME, description="table or schema.table")

    @property
    def name(self) -> str:
        return self.table


def _source_kind(given: Any) -> str | None:
    """The variant: `kind` when given, else the one of `path` and `url` present (the public
    JSON shape has no `kind`). None (both, neither, not an object) is the error below."""
    if isinstance(given, PathSource | UploadSource | UrlSource):
        return given.kind
    if not isinstance(given, dict):
        return None
    if "kind" in given:
        kind = given["kind"]
        return kind if kind in SOURCE_KINDS else None
    present = [key for key in ("path", "url") if key in given]
    return present[0] if len(present) == 1 else None


Source = Annotated[
    Annotated[PathSource, Tag("path")]
    | Annotated[UrlSource, Tag("url")]
    | SkipJsonSchema[Annotated[UploadSource, Tag("upload")]],
    Discriminator(
        _source_kind,
        custom_error_type="one_source",
        custom_error_message="give either `path` or `url` (with `table`)",
    ),
]


def _or_null(schema: dict[str, Any]) -> None:
    """`backend`'s schema as it is read: one of the backends, or null (the default)."""
    values = {"enum": schema.pop("enum"), "type": schema.pop("type")}
    schema["anyOf"] = [values, {"type": "null"}]
    schema["default"] = "duckdb"


class UploadedMapping(BaseModel):
    """A mapping file uploaded with the request (multipart/form-data `mapping`)."""

    model_config = _FIXED

    name: str = Field(description="The file's name as sent")
    text: str = Field(description="Its content (UTF-8), as uploaded")


class ScreeningRequest(BaseModel):
    """POST /v1/screenings as JSON (a file is uploaded as multipart/form-data instead, into
    this same request), and what the job keeps."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"source": {"path": "registry-2026.parquet"}, "rulesets": ["hsct-ssc-astis"]},
                {
                    "source": {"url": "postgresql://reader@registry-db/registry", "table": "ssc"},
                    "mapping": {"id": "patient_no", "columns": {"lvef_percent": "LVEF"}},
                },
            ]
        },
    )

    source: Source
    mapping: dict[str, Any] | None = Field(
        default=None,
        description="Column mapping, as the YAML mapping file would give it: "
        "{id: key column, missing, decimal, strict, columns: {feature id: column | "
        "{column, unit, values, missing, decimal}}}",
    )
    mapping_file: SkipJsonSchema[UploadedMapping | None] = None
    rulesets: list[str] | None = Field(
        default=None, description="Rule set ids to screen against [default: all]"
    )
    # Before `backend`: its validator reads the alias.
    engine: Backend | None = Field(
        default=None,
        exclude=True,
        description="Alias of `backend`, its earlier name (still accepted)",
    )
    backend: Backend = Field(
        default=None,
        validate_default=True,
        description="The SQL backend that reads a file [default: duckdb]",
        json_schema_extra=_or_null,
    )
    as_of: date | None = Field(
        default=None,
        description="FHIR Bulk: the day freshness windows count back from [default: the day "
        "the request is accepted]",
    )
    long: bool = Field(
        default=False,
        description="Also the results in long format (one row per patient and rule set: "
        "id, ruleset, status, first reason, missing, to_confirm), at long.parquet",
    )
    strict: bool = Field(
        default=False,
        description="A bad cell rejects its row; by default the value is unknown for that "
        "patient, the row screened and the cell reported (problems.csv)",
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _or_its_alias(cls, given: object, info: ValidationInfo) -> object:
        """`engine` is `backend`'s published name before the rename: accepted alone or
        agreeing with it."""
        engine = info.data.get("engine")
        if given is None:
            return engine or "duckdb"
        if engine is not None and given in BACKENDS and given != engine:
            message = f"backend {given!r} and its alias engine {engine!r} differ: give one"
            raise PydanticCustomError("conflict", message)
        return given

    @model_validator(mode="after")
    def _one_mapping(self) -> ScreeningRequest:
        if self.mapping is not None and self.mapping_file is not None:
            raise ValueError("give the mapping inline or as a file, not both")
        return self

    @property
    def backend_field(self) -> str:
        """The name the client gave the backend by: a problem with it is reported there."""
        if self.engine is not None and "backend" not in self.model_fields_set:
            return "engine"
        return "backend"

    @property
    def mapping_name(self) -> str | None:
        """How messages name the mapping: the file as sent, or `mapping` if given inline."""
        if self.mapping_file is not None:
            return self.mapping_file.name
        return INLINE_MAPPING if self.mapping is not None else None


def untagged(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error's location without the source variant's tag pydantic puts in it
    (`source.path.path` -> `source.path`): fields are named as the client wrote them."""
    if len(loc) > 2 and loc[0] == "source" and loc[1] in SOURCE_KINDS:
        return (loc[0], *loc[2:])
    return loc


def stored_request(stored: Mapping[str, Any]) -> ScreeningRequest:
    """A job's request as its row keeps it, whichever version wrote it."""
    return ScreeningRequest.model_validate(_earlier(stored) if _is_earlier(stored) else stored)


def _is_earlier(stored: Mapping[str, Any]) -> bool:
    """`model_dump` writes every field, `mapping_file` included: a row without it was written
    before this model."""
    return "mapping_file" not in stored


def _earlier(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A request as stored before this model: each source with a `name` (and an upload's
    `suffix`), both derived now; the mapping wrapped as {name: "mapping", content} (JSON) or
    {name, text} (a file); `engine` before `backend`; no `long` or `strict` before issue 20."""
    source = stored["source"]
    fields = {"path": ("kind", "path"), "upload": ("kind", "name"), "url": ("kind", "url", "table")}
    wrapped = stored.get("mapping")
    return {
        "source": {key: source[key] for key in fields[source["kind"]]},
        "mapping": wrapped["content"] if wrapped and "content" in wrapped else None,
        "mapping_file": wrapped if wrapped and "text" in wrapped else None,
        "rulesets": stored.get("rulesets"),
        "backend": stored.get("backend") or stored.get("engine"),
        "as_of": stored.get("as_of"),
        "long": stored.get("long", False),
        "strict": stored.get("strict", False),
    }
