"""Files Eligo keeps between processes to start faster (the UCUM answers of
app/engine/unit_memo.py, the compiled screening SQL of app/batch/sql_cache.py): where they
live, and how one is written so that a reader never sees half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def cache_home() -> Path | None:
    """$XDG_CACHE_HOME/eligo, else ~/.cache/eligo; None without a home."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative path is to be ignored
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no HOME and no passwd entry
            return None
    return Path(base) / "eligo"


def write_whole(path: Path, text: str) -> None:
    """Written to a temporary file beside `path` and renamed over it, so a reader (another
    process starting beside this one) sees the whole file or none. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
