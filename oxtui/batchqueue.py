"""The one bounded queue of log batches between a producer and a slower consumer.

Used wherever log lines cross to someone who may not keep up: the UI thread (link.py), the printer
thread of `oxtui run` (printer.py) and each connection following logs over the control socket
(engine/control.py). A consumer that falls behind loses lines for its screen, counted and then
reported; never in the log files, and never by growing the engine's memory.

One writer and one reader, so no lock: each counter has a single writer thread and
queued = added - taken.
"""

from __future__ import annotations

from collections import deque

from .protocol import LogBatch


class BatchQueue:
    def __init__(self, limit: int):
        self.limit = limit
        self._batches: deque[LogBatch] = deque()
        self._added = 0
        self._taken = 0
        self._dropped = 0

    def add(self, batch: LogBatch) -> bool:
        """Queue the batch, or count its lines as dropped when the bound is reached."""
        if self._added - self._taken < self.limit:
            self._added += len(batch.data)
            self._batches.append(batch)
            return True
        self._dropped += batch.count
        return False

    def drop(self, count: int) -> None:
        """Lines lost before they reached this queue (the engine's own feed dropped them)."""
        self._dropped += count

    def take(self) -> tuple[list[LogBatch], int]:
        """Everything queued, and how many lines were dropped since the last take."""
        out = []
        while self._batches:
            b = self._batches.popleft()
            self._taken += len(b.data)
            out.append(b)
        dropped, self._dropped = self._dropped, 0
        return out, dropped

    def __bool__(self) -> bool:
        return bool(self._batches) or self._dropped > 0
