"""Multipart uploads streamed straight to disk, for files too large to hold in memory.

Starlette's form parser spools each file to a temporary directory (a second copy of a registry,
in a place nobody cleans up for us) and limits only the parts that are not files. Here each
file part is written, as it arrives, to where the caller says; the whole body counts against
the caller's limit, a file against its own; and the writes run in a thread, so a slow disk
stalls this upload, not the event loop. Files are flushed to disk (fsync) before this returns:
a job accepted on an upload must still have it after a power cut.

Names, file names and field values are UTF-8 text without U+0000 (400 / 422 naming the field):
none of them could be stored or shown otherwise.

On any error the files written so far are closed; removing them is the caller's (it owns the
folder they are in).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.errors import FieldError, InvalidPayload, MalformedRequest, PayloadTooLarge
from app.strict_json import character_problem, printable

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 100
FLUSH_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SavedFile:
    filename: str  # as sent, without any folder part
    path: Path
    size: int


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, SavedFile] = field(default_factory=dict)


# (field name, file name as sent) -> where to write it and the most bytes it may have; raises
# InvalidPayload for a file it does not want.
Destination = Callable[[str, str], tuple[Path, int]]


def too_large(detail: str) -> PayloadTooLarge:
    # The rest of the body is not read: the connection cannot carry another request.
    return PayloadTooLarge(detail, headers={"Connection": "close"})


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)
    path: Path | None = None
    handle: IO[bytes] | None = None
    size: int = 0
    limit: int = MAX_FIELD_BYTES


class _Reader:
    def __init__(self, destination: Destination, fields: Collection[str]) -> None:
        self.destination, self.allowed = destination, fields
        self.form = Form()
        self.part = _Part()
        self.disposition = b""
        self.header_name = b""
        self.header_value = b""
        self.pending: list[tuple[IO[bytes], bytes]] = []
        self.pending_bytes = 0
        self.handles: list[IO[bytes]] = []
        self.count = 0
        self.ended = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
            "on_end": self._ended,
        }

    def _begin(self) -> None:
        self.part = _Part()
        self.disposition = b""
        self.count += 1
        if self.count > MAX_FIELDS:
            raise too_large(f"more than {MAX_FIELDS} form fields")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def _header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        if b"name" not in options:
            raise MalformedRequest("a multipart part has no Content-Disposition name")
        self.part.name = _text(options[b"name"], "a part's name")
        _acceptable(self.part.name, printable(self.part.name), "the field's name")
        if b"filename" not in options:
            if self.part.name not in self.allowed:
                raise _unexpected(self.part.name)
            return
        raw = _text(options[b"filename"], "a file name")
        _acceptable(raw, self.part.name, "the file name")
        self.part.filename = raw.replace("\\", "/").rsplit("/", 1)[-1]
        if self.part.name in self.form.files:
            raise InvalidPayload(
                "one file per field",
                [FieldError(self.part.name, "duplicate", "send one file in this field")],
            )
        self.part.path, self.part.limit = self.destination(self.part.name, self.part.filename)
        self.part.handle = self.part.path.open("xb")
        self.handles.append(self.part.handle)

    def _data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        self.part.size += len(chunk)
        if self.part.size > self.part.limit:
            raise too_large(f"{self.part.name}: larger than {self.part.limit} bytes")
        if self.part.handle is None:
            self.part.data.extend(chunk)
        else:
            self.pending.append((self.part.handle, chunk))
            self.pending_bytes += len(chunk)

    def _end(self) -> None:
        part = self.part
        if part.handle is None:
            value = _text(bytes(part.data), part.name)
            _acceptable(value, part.name, "the value")
            self.form.fields.setdefault(part.name, []).append(value)
        else:
            assert part.path is not None
            assert part.filename is not None
            self.form.files[part.name] = SavedFile(part.filename, part.path, part.size)

    def _ended(self) -> None:
        self.ended = True

    def flush(self) -> None:
        """Write what arrived (in a worker thread)."""
        for handle, chunk in self.pending:
            handle.write(chunk)
        self.pending.clear()
        self.pending_bytes = 0

    def finish(self) -> None:
        self.flush()
        for handle in self.handles:
            handle.flush()
            os.fsync(handle.fileno())
        self.close()

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest(f"{what} is not UTF-8") from None


def _acceptable(text: str, field: str, what: str) -> None:
    """The one policy for strings: U+0000 is refused, naming the field (surrogates cannot
    come out of strict UTF-8 decoding)."""
    problem = character_problem(text)
    if problem is not None:
        raise InvalidPayload(
            "a form field holds a character that cannot be accepted",
            [FieldError(field, "invalid_character", f"{what} {problem}")],
        )


def _unexpected(name: str) -> InvalidPayload:
    return InvalidPayload(
        "unexpected form field", [FieldError(name, "extra_forbidden", "unexpected field")]
    )


async def read_form(
    request: Request, *, limit: int, destination: Destination, fields: Collection[str]
) -> Form:
    """Parse a multipart/form-data body of at most `limit` bytes: `fields` are the text
    fields it may have, `destination` places (or refuses) each file."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedRequest("multipart/form-data without a boundary")
    reader = _Reader(destination, fields)
    try:
        parser = MultipartParser(boundary, reader.callbacks())  # type: ignore[arg-type]
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(f"request body exceeds the limit of {limit} bytes")
            parser.write(chunk)
            if reader.pending_bytes >= FLUSH_BYTES:
                await run_in_threadpool(reader.flush)
        parser.finalize()
        if not reader.ended:  # a body cut short must not pass for a whole file
            raise MalformedRequest("the multipart body ends before its closing boundary")
        await run_in_threadpool(reader.finish)
    except FormParserError:
        reader.close()
        raise MalformedRequest("malformed multipart/form-data body") from None
    except BaseException:
        reader.close()
        raise
    return reader.form
