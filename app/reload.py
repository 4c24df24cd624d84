"""Hot reload of the rules directory, on file change (polling) or on SIGHUP.

A reload loads the whole directory into a new RuleBase off the event loop, and only if it is
valid swaps `app.state.rules`: one reference assignment, so a request that already read the
old rule base finishes on it and the next one gets the new one; nothing is dropped or mixed.
An invalid directory is refused: the old rules keep serving, the diagnostics go to the log
and to `GET /v1/rulesets` until a later reload succeeds.

Polling, not inotify: the directory holds a few dozen small files, a stat of each every couple
of seconds costs microseconds, it works on every filesystem (bind mounts, NFS, Kubernetes
ConfigMaps, whose atomic symlink swap inotify watchers often miss) and needs no dependency.

With several worker processes each has a reloader of its own; app/serving.py passes SIGHUP and
requested reloads on to every one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from starlette.datastructures import State

from app.engine import present
from app.engine.diagnostics import Diagnostic
from app.engine.load import check_rules
from app.engine.model import RuleBase

log = logging.getLogger("eligo.rules")

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class ReloadError:
    """The last refused reload: when, and every diagnostic."""

    at: datetime
    diagnostics: tuple[Diagnostic, ...]

    def as_dict(self) -> dict[str, object]:
        count = len(self.diagnostics)
        return {
            "at": self.at,
            "message": f"a change to the rules was refused ({count} error"
            f"{'s' if count != 1 else ''}); the rules listed are still being served",
            "diagnostics": [d.as_dict() for d in self.diagnostics],
        }


def fingerprint(rules_dir: Path) -> Fingerprint:
    """(path, mtime, size) of every rule file; any edit, addition or removal changes it."""
    entries = []
    for path in sorted(rules_dir.rglob("*.yaml")):
        if "tests" in path.relative_to(rules_dir).parts:
            continue  # vignettes do not change what is served
        with contextlib.suppress(OSError):  # removed between the glob and the stat
            stat = path.stat()
            entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class RuleReloader:
    def __init__(self, state: State, rules_dir: Path, interval: float, seen: Fingerprint) -> None:
        """`seen`: the fingerprint taken just before `state.rules` was loaded."""
        self.state = state
        self.rules_dir = rules_dir
        self.interval = interval
        self.seen = seen
        self.lock = asyncio.Lock()
        # Set when this is one of several worker processes (app/serving.py): asks the others
        # to reload too, so a reload requested over HTTP, which reaches one worker, reaches all.
        self.others: Callable[[], None] | None = None
        state.rules_error = None
        state.rules_loaded_at = datetime.now(UTC)

    async def reload(self, reason: str) -> bool:
        """Load the directory again; swap it in if valid. True if the served rules changed."""
        async with self.lock:  # a SIGHUP during a poll-triggered reload waits, then re-reads
            self.seen = fingerprint(self.rules_dir)
            base, diagnostics = await asyncio.to_thread(check_rules, self.rules_dir)
            if base is None:
                self._refuse(reason, diagnostics)
                return False
            return self._swap(reason, base)

    async def reload_everywhere(self, reason: str) -> bool:
        """`reload` here, then have every worker process reload (this one finds nothing new).
        Each checks the directory itself, so all end on the same rules, or refuse the same
        change."""
        changed = await self.reload(reason)
        if self.others is not None:
            self.others()
        return changed

    def _refuse(self, reason: str, diagnostics: list[Diagnostic]) -> None:
        self.state.rules_error = ReloadError(datetime.now(UTC), tuple(diagnostics))
        current: RuleBase = self.state.rules
        log.error(
            "rules reload (%s) refused: %d error(s); still serving %s",
            reason,
            len(diagnostics),
            current.hash[:19],
        )
        for diagnostic in diagnostics:
            log.error("  %s", diagnostic)

    def _swap(self, reason: str, base: RuleBase) -> bool:
        current: RuleBase = self.state.rules
        self.state.rules_error = None
        if base.hash == current.hash:
            log.info("rules reload (%s): unchanged (%s)", reason, base.hash[:19])
            return False
        self.state.rules = base
        self.state.rules_loaded_at = datetime.now(UTC)
        # The caches are keyed by rule objects; drop the old ones rather than let them age out.
        present.clear_caches()
        log.info(
            "rules reloaded (%s): %d rule sets, %s -> %s",
            reason,
            len(base.rulesets),
            current.hash[:19],
            base.hash[:19],
        )
        return True

    async def watch(self) -> None:
        """Poll for changes; reload once the files have stopped changing for one interval, so
        an editor's save or a `cp -r` is not caught half-way."""
        while True:
            await asyncio.sleep(self.interval)
            now = await asyncio.to_thread(fingerprint, self.rules_dir)
            if now == self.seen:
                continue
            await asyncio.sleep(self.interval)
            if await asyncio.to_thread(fingerprint, self.rules_dir) == now:
                await self.reload("files changed")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Watch and listen for SIGHUP for the lifetime of the app."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[object]] = set()

        def on_sighup() -> None:
            task = loop.create_task(self.reload("SIGHUP"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        hup = _listen(loop, on_sighup)
        watcher = loop.create_task(self.watch()) if self.interval > 0 else None
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            if watcher:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


def _listen(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> bool:
    """Install the SIGHUP handler where signals can be handled (the main thread of a server
    process; not an in-process test client's thread, nor Windows)."""
    try:
        loop.add_signal_handler(signal.SIGHUP, callback)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        log.debug("SIGHUP reload unavailable in this thread")
        return False
    return True
