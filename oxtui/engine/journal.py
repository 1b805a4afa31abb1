"""The engine's history on disk, kept as it happens, so that a new engine started by the keeper after
this one died (forkserver.py, recovery.py) carries on with it instead of starting from nothing.

Two files in the runtime folder, beside the lock (tmpfs under /run/user, or a private folder in /tmp):

    KEY.events  one JSON event a line, appended as each is published (os.write, no buffer: an event
                is on disk before the next line of Python runs); rewritten with the newest HISTORY
                once it holds twice that many, so it stays bounded
    KEY.state   everything else a person would miss: each process's target, exit records and
                counters, how its reload stands, its schedule's anchor and last run; each worker's
                slot, pid, state, restarts, last exit and crash-loop window. Rewritten whole (write,
                then rename) at the end of the loop's pass in which something changed (a burst of
                changes is one write), and only when it differs.

What can be lost when the engine dies: the changes of the loop pass it died in (the keeper's own
inventory fills in the workers it started meanwhile), and each worker's CPU seconds (not journaled:
they change at every sample and would rewrite the file 10 times a second for nothing a person reads).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..runtime import journal_path
from .events import HISTORY


class Journal:
    def __init__(self, oxfile: Path, build: Callable[[], dict[str, Any] | None]):
        self.state_path = journal_path(oxfile, "state")
        self.events_path = journal_path(oxfile, "events")
        self._build = build
        self._events_fd: int | None = None
        self._event_lines = 0
        self._last: bytes | None = None
        self._handle: asyncio.Handle | None = None
        self.writes = 0                 # what it cost (bench/keeper.py): files written, bytes
        self.bytes = 0

    def open(self, history: list[dict[str, Any]]) -> None:
        """Start a new events file holding `history` (what this engine knows already)."""
        self._rewrite_events(history)

    def record(self, ev: dict[str, Any], history: Iterable[dict[str, Any]]) -> None:
        """An event as it is published (`history`: the hub's, for when the file is rewritten)."""
        self.event(ev)
        if self._event_lines >= 2 * HISTORY:
            self._rewrite_events(list(history))
        self.changed()

    def event(self, ev: dict[str, Any]) -> None:
        if self._events_fd is None:
            return
        line = json.dumps(ev, separators=(",", ":")).encode() + b"\n"
        try:
            os.write(self._events_fd, line)
        except OSError:
            return
        self.bytes += len(line)
        self._event_lines += 1

    def _rewrite_events(self, history: list[dict[str, Any]]) -> None:
        tmp = self.events_path.with_suffix(".events-new")
        data = b"".join(json.dumps(ev, separators=(",", ":")).encode() + b"\n" for ev in history)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            os.write(fd, data)
            os.close(fd)
            os.replace(tmp, self.events_path)
            fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError:
            return
        if self._events_fd is not None:
            os.close(self._events_fd)
        self._events_fd, self._event_lines = fd, len(history)
        self.bytes += len(data)

    def changed(self) -> None:
        """Something a new engine would need changed: write the state soon (once per burst)."""
        if self._handle is None:
            try:
                self._handle = asyncio.get_running_loop().call_soon(self.write)
            except RuntimeError:
                pass

    def write(self) -> None:
        self._handle = None
        state = self._build()
        if state is None:               # a worker between its exit and its record: look again soon
            self._handle = asyncio.get_running_loop().call_later(0.05, self.write)
            return
        data = json.dumps(state, separators=(",", ":")).encode()
        if data == self._last:
            return
        tmp = self.state_path.with_suffix(".state-new")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self.state_path)
        except OSError:
            return
        self._last = data
        self.writes += 1
        self.bytes += len(data)

    def close(self, remove: bool) -> None:
        """At a stop (remove: nothing to carry on) or a hand-over (the new engine goes on with them)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._events_fd is not None:
            os.close(self._events_fd)
            self._events_fd = None
        if remove:
            for path in (self.state_path, self.events_path):
                try:
                    path.unlink()
                except OSError:
                    pass


def read(oxfile: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """What a dead engine left: its state (None when there is none) and its events, oldest first."""
    state = None
    try:
        state = json.loads(journal_path(oxfile, "state").read_bytes())
    except (OSError, ValueError):
        pass
    events: list[dict[str, Any]] = []
    try:
        with open(journal_path(oxfile, "events"), "rb") as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass        # a line cut by the death: the ones before it count
    except OSError:
        pass
    return state, events[-HISTORY:]
