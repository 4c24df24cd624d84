"""Outputs written whole or not at all: each file is written beside its final name
(`.<name>.partial`) and renamed over it once complete, so an interrupted screening leaves
nothing that looks finished."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """The partial path to write; renamed to `path` when the block ends normally, removed
    when it raises."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
