"""A bounded first look at a source file, before any engine reads it.

DuckDB takes ~36 s to describe a CSV header of 100,000 columns (and ~30 s a Parquet schema as
wide), reads a 64 MiB line whole before it says the line is too long, and infers the columns of
an NDJSON file whose lines bring 400,000 different keys in minutes. So a file's header is read
here first, within limits, and what is too wide or too long is refused with its file:line
before an engine sees it:

- CSV: the first line, read in chunks up to `header_bytes` (never further: a longer line is
  refused), its columns counted by the candidate delimiter that splits it most (an upper bound
  on what DuckDB's sniffer can find);
- NDJSON: the first line likewise, then the distinct keys of the lines within `sample_bytes`;
- Parquet: the footer's length from the file's last 8 bytes, then its schema if the footer is
  within `sample_bytes`.

The job (DuckDBBackend.open) makes the same checks, so a source that changed after it was
accepted fails with the same message. The request's check (jobs.preflight) then gives DuckDB
only `sample()`, the file's first whole lines within `sample_bytes`, so it ends in bounded time
whatever the file holds further on; the job reads the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

CHUNK = 64 * 1024
DELIMITERS = (b",", b";", b"\t", b"|")  # those DuckDB's sniffer tries
PARQUET_MAGIC = b"PAR1"


def csv_scan(literal: str) -> str:
    """DuckDB's reader of the CSV file at `literal` (an SQL string literal), every cell as text.
    The quote and its escape are RFC 4180's, never sniffed: on a file whose first lines quote
    nothing, DuckDB's sniffer can pick `'` as the quote, and then `"1,5"` splits in two and every
    later cell of the line moves one column to the right, into another feature. The delimiter
    is still sniffed (registries export `;` and tabs too)."""
    return f"read_csv({literal}, header = true, all_varchar = true, quote = '\"', escape = '\"')"


class HeadError(ValueError):
    """A source refused on its header; `code` says which limit, the message names the file
    (and line) and the setting."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Limits:
    columns: int = 1000
    header_bytes: int = 1024 * 1024
    sample_bytes: int = 16 * 1024 * 1024

    @classmethod
    def of(cls, columns: int, header_bytes: int, preflight_bytes: int) -> Limits:
        """The limits the caller configures (the server's and the CLI's settings): this
        package reads no settings of its own."""
        # a sample always holds the whole first line
        return cls(columns, header_bytes, max(preflight_bytes, header_bytes))


def _opened(path: Path) -> BinaryIO:
    """Every read of a source made here goes through this (tests count the bytes)."""
    return path.open("rb")


def check(path: Path, fmt: str, limits: Limits) -> None:
    """Refuse `path` (HeadError) if its header breaks `limits`; read no more than they allow."""
    if fmt == "parquet":
        _parquet(path, limits)
        return
    first = first_line(path, limits.header_bytes, fmt)
    if fmt == "csv":
        count = csv_columns(first)
        if count > limits.columns:
            raise _too_many(f"{path}:1: the header has {count:,} columns", limits)
    elif fmt == "ndjson":
        _ndjson_keys(path, limits)


def first_line(path: Path, limit: int, fmt: str = "csv") -> bytes:
    """The first line of `path` without its line end, read `CHUNK` bytes at a time and never
    past `limit` + one chunk: a line longer than `limit` bytes is refused."""
    line = bytearray()
    with _opened(path) as handle:
        while True:
            chunk = handle.read(CHUNK)
            end = _line_end(chunk)
            line += chunk if end < 0 else chunk[:end]
            if len(line) > limit:
                what = "header (the first line)" if fmt == "csv" else "first line"
                raise HeadError(
                    f"{path}:1: the {what} is longer than {limit:,} bytes "
                    "(ELIGO_SCREENING_MAX_HEADER_BYTES); nothing past it was read",
                    "line_too_long",
                )
            if end >= 0 or not chunk:
                return bytes(line)


def _line_end(chunk: bytes) -> int:
    ends = [i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0]
    return min(ends) if ends else -1


def first_long_line(path: Path, limit: int) -> int | None:
    """The number of the first line of `path` longer than `limit` bytes, or None: a scan of
    the whole file, for a job's error message (a request reads no more than its sample)."""
    number, length = 1, 0
    with _opened(path) as handle:
        while chunk := handle.read(CHUNK * 16):
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                if length + end - start > limit:
                    return number
                number, length, start = number + 1, 0, end + 1
            length += len(chunk) - start
            if length > limit:
                return number
    return None


def csv_columns(header: bytes) -> int:
    """How many columns a header line can give: by the candidate delimiter that splits it
    most (quotes are not parsed: a bound, not DuckDB's exact count)."""
    return max(header.count(d) for d in DELIMITERS) + 1


def sample(path: Path, limits: Limits) -> bytes | None:
    """The first whole lines of `path` within `limits.sample_bytes`, or None when the file is
    no larger than that (the file itself is the sample)."""
    if path.stat().st_size <= limits.sample_bytes:
        return None
    with _opened(path) as handle:
        data = handle.read(limits.sample_bytes)
    end = max(data.rfind(b"\n"), data.rfind(b"\r"))
    return data[: end + 1] if end >= 0 else data


def _ndjson_keys(path: Path, limits: Limits) -> None:
    """The distinct top-level keys of the lines in the sample, refused past `limits.columns`
    at the line that brings one too many. A line that is not a JSON object is left to DuckDB,
    which says what is wrong with it."""
    data = sample(path, limits)
    if data is None:
        with _opened(path) as handle:
            data = handle.read()
    keys: set[str] = set()
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            keys.update(value)
            if len(keys) > limits.columns:
                raise _too_many(
                    f"{path}:{number}: {len(keys):,} different keys (columns) by this line", limits
                )


def _parquet(path: Path, limits: Limits) -> None:
    """The footer's length, then (if within the sample) its schema. A file that is not
    Parquet is left to DuckDB, which names the defect."""
    size = path.stat().st_size
    if size < 12:
        return
    with _opened(path) as handle:
        handle.seek(size - 8)
        tail = handle.read(8)
    if tail[4:] != PARQUET_MAGIC:
        return
    footer = int.from_bytes(tail[:4], "little")
    if footer > size - 12:  # not a footer: DuckDB says what the file is not
        return
    if footer > limits.sample_bytes:
        raise HeadError(
            f"{path}: the Parquet metadata (footer) is {footer:,} bytes; at most "
            f"{limits.sample_bytes:,} are read (ELIGO_SCREENING_PREFLIGHT_BYTES)",
            "metadata_too_large",
        )
    try:
        count = len(pq.read_schema(path))
    except (pa.ArrowException, OSError):
        return
    if count > limits.columns:
        raise _too_many(f"{path}: the Parquet schema has {count:,} columns", limits)


def columns_within(count: int, name: str, limits: Limits) -> None:
    """After an engine described a source (a database table, NDJSON keys past the sample)."""
    if count > limits.columns:
        raise _too_many(f"{name}: {count:,} columns", limits)


def _too_many(found: str, limits: Limits) -> HeadError:
    return HeadError(
        f"{found}; a source may have at most {limits.columns:,} "
        "(ELIGO_SCREENING_MAX_COLUMNS): give a narrower extract",
        "too_many_columns",
    )
