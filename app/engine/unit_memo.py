"""What ucumvert and pint answered about the rules' units, kept on disk between processes.

Building the UCUM parser and pint's registry takes about half a second, more than the rest of
loading the rules, yet what a load asks of them is small and always the same: is this unit
valid UCUM (if not, the message), and the linear map from one unit to another. Those answers
are kept in one JSON file, so a process loading rules that it or an earlier process has
loaded before builds neither. The units still come from ucumvert: the file only remembers its
answers, and is thrown away when ucumvert, pint, lark, units.py or this module change.

Only what a load asks (inside `recording()`) is written, never what a request asks: a
client's units are its own, and the file stays as small as the rule files behind it. A
request still finds the load's answers (the catalogue's other units are worked out at load
for that reason).

The file is $XDG_CACHE_HOME/eligo/units.json (~/.cache/eligo/units.json): the XDG
convention, not an ELIGO_ setting, because the engine is loaded by commands that read no
settings, and the engine imports nothing of `app`. A file that cannot be read, parsed or
written, or was written by other versions, is ignored: the answers are then computed, as
they were before the file existed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from app.cache_files import cache_home, write_whole

log = logging.getLogger(__name__)

FORMAT = 1
# What the answers depend on: a new version of any, or an edit of the code, invalidates them.
PACKAGES = ("ucumvert", "pint", "lark")
SOURCES = ("units.py", "unit_memo.py")
# A file this large is not one rule base's units: keep only the latest load's answers.
MAX_ANSWERS = 4096

Problem = str  # a UnitError's message
Verdict = Problem | None  # of a unit: None when it is valid UCUM
Conversion = tuple[float, float] | Problem  # (scale, offset), or why there is none
ConversionKey = tuple[str, str, float | None]  # source, target, molar mass

K = TypeVar("K")
A = TypeVar("A")


@dataclass
class _Answers:
    units: dict[str, Verdict] = field(default_factory=dict)
    conversions: dict[ConversionKey, Conversion] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.units) + len(self.conversions)


@dataclass
class _Recording:
    """The answers one load asked for, and whether any was not in the file."""

    used: _Answers = field(default_factory=_Answers)
    new: bool = False


@dataclass
class _Memo:
    path: Path | None
    answers: _Answers | None = None  # read on first need
    key: dict[str, str] | None = None


_lock = threading.RLock()
_memo: _Memo | None = None
# Per thread and task: a reload recording in its thread does not catch requests' units.
_recording: ContextVar[_Recording | None] = ContextVar("unit_memo_recording", default=None)


def default_path() -> Path | None:
    """$XDG_CACHE_HOME/eligo/units.json, else ~/.cache/eligo/units.json; None without a home."""
    home = cache_home()
    return None if home is None else home / "units.json"


def use(path: Path | None) -> None:
    """Remember in `path` from now on (None: nowhere), forgetting what was read before."""
    global _memo  # noqa: PLW0603 - one memo per process, like the lru caches it backs
    with _lock:
        _memo = _Memo(path)


def is_recording() -> bool:
    return _recording.get() is not None


def unit(name: str, compute: Callable[[str], Verdict]) -> Verdict:
    """Whether `name` is valid UCUM: remembered, or `compute`d (and recorded, during a load)."""
    return _recall(name, compute, lambda answers: answers.units)


def conversion(key: ConversionKey, compute: Callable[[ConversionKey], Conversion]) -> Conversion:
    """The conversion `key` names: remembered, or `compute`d (and recorded, during a load)."""
    return _recall(key, compute, lambda answers: answers.conversions)


def _recall(key: K, compute: Callable[[K], A], table: Callable[[_Answers], dict[K, A]]) -> A:
    recording = _recording.get()
    known = table(_answers())
    if key in known:
        answer = known[key]
    else:
        answer = compute(key)
        if recording is not None:
            recording.new = True
            with _lock:
                known[key] = answer
    if recording is not None:
        table(recording.used)[key] = answer
    return answer


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Record what is asked inside; write it to the file if any of it was not there."""
    if _recording.get() is not None:  # nested: the outer recording writes
        yield
        return
    current = _Recording()
    token = _recording.set(current)
    try:
        yield
    finally:
        _recording.reset(token)
        if current.new:
            _save(current.used)


def _current() -> _Memo:
    global _memo  # noqa: PLW0603 - see use()
    memo = _memo  # without the lock: every conversion of every request comes by here
    if memo is None:
        with _lock:
            if _memo is None:
                _memo = _Memo(default_path())
            memo = _memo
    return memo


def _answers() -> _Answers:
    memo = _current()
    if memo.answers is None:
        with _lock:
            if memo.answers is None:
                memo.answers = _read(memo) or _Answers()
    return memo.answers


def _key(memo: _Memo) -> dict[str, str] | None:
    """The versions and code the answers come from; None if they cannot be known."""
    if memo.key is None:
        here = Path(__file__).parent
        try:
            key = {name: metadata.version(name) for name in PACKAGES}
            for source in SOURCES:
                key[source] = hashlib.sha256((here / source).read_bytes()).hexdigest()
        except (metadata.PackageNotFoundError, OSError):
            return None
        memo.key = {"format": str(FORMAT), **key}
    return memo.key


def _read(memo: _Memo) -> _Answers | None:
    key = _key(memo)
    if memo.path is None or key is None:
        return None
    try:
        data = json.loads(memo.path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON: computed instead
        log.debug("ignoring the UCUM answers in %s: %s", memo.path, exc)
        return None
    answers = _decode(data, key)
    if answers is None:
        log.debug("ignoring the UCUM answers in %s: other versions, or damaged", memo.path)
    return answers


def _decode(data: Any, key: dict[str, str]) -> _Answers | None:
    """The answers in `data`, or None if it is not exactly what `_encode` writes for `key`."""
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    units, conversions = data.get("units"), data.get("conversions")
    if not isinstance(units, dict) or not isinstance(conversions, list):
        return None
    answers = _Answers()
    for name, verdict in units.items():
        if not isinstance(verdict, str | None):
            return None
        answers.units[name] = verdict
    for entry in conversions:
        decoded = _decode_conversion(entry)
        if decoded is None:
            return None
        answers.conversions[decoded[0]] = decoded[1]
    return answers


def _decode_conversion(entry: Any) -> tuple[ConversionKey, Conversion] | None:
    if not (isinstance(entry, list) and len(entry) == 4):
        return None
    source, target, molar_mass, answer = entry
    if not (isinstance(source, str) and isinstance(target, str)):
        return None
    if molar_mass is not None and not _number(molar_mass):
        return None
    if isinstance(answer, str):
        return (source, target, molar_mass), answer
    if isinstance(answer, list) and len(answer) == 2 and all(_number(x) for x in answer):
        return (source, target, molar_mass), (float(answer[0]), float(answer[1]))
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _encode(answers: _Answers, key: dict[str, str]) -> str:
    conversions = [
        [*k, list(a) if isinstance(a, tuple) else a] for k, a in answers.conversions.items()
    ]
    document = {"key": key, "units": answers.units, "conversions": conversions}
    # ASCII: a unit string with a lone surrogate (YAML allows "\udc80") is escaped, not fatal.
    return json.dumps(document, indent=0)


def _save(used: _Answers) -> None:
    """Write the file: what it held merged with `used`, or only `used` if that grew too large.

    Written to a temporary file and renamed over the old one, so a reader (another worker
    starting) sees the old file or the new one, never half of one; a crash that damages it
    costs one recomputation. Any failure (a read-only home in a container) is silent.
    """
    memo = _current()
    key = _key(memo)
    if memo.path is None or key is None:
        return
    with _lock:
        merged = _answers()
        if len(merged) > MAX_ANSWERS:
            merged.units, merged.conversions = dict(used.units), dict(used.conversions)
        text = _encode(merged, key)
    try:
        write_whole(memo.path, text)
    except OSError as exc:
        log.debug("UCUM answers not saved to %s: %s", memo.path, exc)
