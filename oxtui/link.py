"""What a UI needs from an engine, whether embedded in the same process or attached over the
control socket, and the bounded log buffer both kinds hand over to the UI thread."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Protocol

from .engine.logs import LogBatch

LOG_BUFFER_BYTES = 8 * 1024 * 1024

Reply = dict[str, Any]   # {"ok": True, "result": ...} or {"ok": False, "error": "..."}


class EngineClient(Protocol):
    attached: bool                    # True when the engine runs in another process
    finished: threading.Event         # set once the engine has stopped (or the connection is gone)

    def snapshot(self) -> dict[str, Any] | None: ...
    def take_logs(self) -> tuple[list[LogBatch], int]: ...
    def command(self, req: dict[str, Any], done: Callable[[Reply], None] | None = None,
                progress: Callable[[str], None] | None = None) -> None: ...
    def shutdown(self, done: Callable[[], None]) -> None: ...


class LogBuffer:
    """Batches from one producer thread to the UI thread, bounded in bytes.

    One writer and one reader, so no lock: queued = added - taken. Past the bound, lines are
    dropped for the screen and counted; the log files have them all.
    """

    def __init__(self, limit: int = LOG_BUFFER_BYTES):
        self.limit = limit
        self._logs: deque[LogBatch] = deque()
        self._added = 0
        self._taken = 0
        self._dropped = 0

    def add(self, batch: LogBatch) -> None:
        if self._added - self._taken < self.limit:
            self._added += len(batch.data)
            self._logs.append(batch)
        else:
            self._dropped += batch.count

    def drop(self, count: int) -> None:
        self._dropped += count

    def take(self) -> tuple[list[LogBatch], int]:
        out = []
        while self._logs:
            b = self._logs.popleft()
            self._taken += len(b.data)
            out.append(b)
        dropped, self._dropped = self._dropped, 0
        return out, dropped
