"""Compiled screening SQL kept on disk between processes, so that `eligo screen` on a warm
cache neither imports SQLAlchemy nor builds and prints the query.

Building the screening query with SQLAlchemy and printing it for DuckDB costs a second for the
shipped rule sets (0.4 s of it importing SQLAlchemy), every run, for the same text: the SQL
depends only on the rules, the source's columns and this code. So the text is kept, one JSON
file per key, under $XDG_CACHE_HOME/eligo/screening-sql/ (~/.cache/eligo/screening-sql/; the
XDG convention, as the UCUM answers of app/engine/unit_memo.py).

The key is a hash of everything the text is made from: the whole feature catalogue (each
definition as loaded), each rule set's content hash, the source's columns and kinds and how
they map to features (units, value codes), the dialect, the code of app/engine and
app/batch, and the versions of Eligo and SQLAlchemy. A change to any of them is another
key; the old file is never read again and is pruned with the oldest. A file that cannot be
read, is not JSON, was written for another key, or whose text does not match the checksum
written with it is ignored, silently: the SQL is compiled again, as without the cache, and the
file written anew. A folder that cannot be written is no error either.

Only SQL that names no patient is kept: a query naming the duplicate keys it found (patient
ids) is compiled each time and never written (app/batch/runner.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from app.cache_files import cache_home, write_whole

log = logging.getLogger(__name__)

FORMAT = 1
# What the text is printed by: a new version of either, or an edit of the code, is a new key.
PACKAGES = ("eligo", "sqlalchemy")
CODE = (Path(__file__).resolve().parent.parent / "engine", Path(__file__).resolve().parent)
# Distinct keys kept: one per rule base, source layout and rule set selection in use.
MAX_ENTRIES = 64

Texts = dict[str, str]

_lock = threading.Lock()
_folder: list[Path | None] = []  # set by `use`; empty: the default, found on first need
_code: list[str] = []  # the code key, computed once per process


def default_folder() -> Path | None:
    """$XDG_CACHE_HOME/eligo/screening-sql, else ~/.cache/eligo/screening-sql; None without a
    home."""
    home = cache_home()
    return None if home is None else home / "screening-sql"


def use(folder: Path | None) -> None:
    """Keep the SQL in `folder` from now on (None: nowhere, compiled every time)."""
    with _lock:
        _folder[:] = [folder]


def folder() -> Path | None:
    with _lock:
        if not _folder:
            _folder.append(default_folder())
        return _folder[0]


def _code_key() -> str | None:
    """The versions and code the SQL comes from; None if they cannot be known."""
    with _lock:
        if not _code:
            digest = hashlib.sha256()
            try:
                for name in PACKAGES:
                    digest.update(f"{name}={metadata.version(name)}\n".encode())
                for root in CODE:
                    for path in sorted(root.glob("*.py")):
                        digest.update(f"{root.name}/{path.name}\n".encode())
                        digest.update(path.read_bytes())
            except (metadata.PackageNotFoundError, OSError):
                return None
            _code.append(digest.hexdigest())
        return _code[0]


def key(parts: Any) -> str | None:
    """The cache key of SQL made from `parts` (JSON-able) by this code; None: not cacheable."""
    code = _code_key()
    if code is None:
        return None
    document = json.dumps([FORMAT, code, parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(document.encode()).hexdigest()


def _checksum(texts: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()


def recall(parts: Any, compile_texts: Callable[[], Texts]) -> Texts:
    """The SQL texts made from `parts`: read from the cache, or compiled (and kept)."""
    found = key(parts)
    where = folder()
    if found is None or where is None:
        return compile_texts()
    path = where / f"{found}.json"
    texts = _read(path, found)
    if texts is None:
        texts = compile_texts()
        _save(path, found, texts)
    return texts


def _read(path: Path, expected: str) -> Texts | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON: compiled instead
        log.debug("ignoring the compiled SQL in %s: %s", path, exc)
        return None
    texts = data.get("sql") if isinstance(data, dict) else None
    if (
        not isinstance(texts, dict)
        or data.get("key") != expected
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in texts.items())
        or data.get("checksum") != _checksum(texts)
    ):
        log.debug("ignoring the compiled SQL in %s: another key, or damaged", path)
        return None
    return texts


def _save(path: Path, found: str, texts: Texts) -> None:
    """Written to a temporary file and renamed, so a reader (a screening starting beside this
    one) sees the whole file or none; then the oldest files beyond MAX_ENTRIES go. Any failure
    (a read-only home in a container) is silent."""
    document = json.dumps({"key": found, "checksum": _checksum(texts), "sql": texts})
    try:
        write_whole(path, document)
        _prune(path.parent)
    except OSError as exc:
        log.debug("compiled SQL not saved to %s: %s", path, exc)


def _prune(where: Path) -> None:
    entries = sorted(where.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[MAX_ENTRIES:]:
        with contextlib.suppress(OSError):
            stale.unlink()


def macros() -> list[str]:
    """What DuckDB defines before it runs a screening (`validate.duckdb_macros`)."""
    texts = recall({"macros": "duckdb"}, _compile_macros)
    return [texts[f"macro{i}"] for i in range(len(texts))]


def _compile_macros() -> Texts:
    from app.batch.validate import duckdb_macros  # noqa: PLC0415 - only on a miss

    return {f"macro{i}": text for i, text in enumerate(duckdb_macros())}
