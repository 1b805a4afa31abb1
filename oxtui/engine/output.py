"""One process's output, as its worker captures it: the stdout and stderr pipes read on the engine's
loop, cut into lines, handed to the group's log; and its last lines kept for the exit record.

The last lines are kept as the log batches themselves (by reference: no copy, no decoding until the
process dies). Values read from env_file are secrets: the lines an exit record carries (to status,
events and webhooks) have them replaced by ***; the log files keep what the app printed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .logs import LineSplitter
from .pipes import PipeReader

if TYPE_CHECKING:
    from .logs import LogBatch
    from .spawn import Child

TAIL_LINES = 20
DRAIN_TIMEOUT = 0.5     # a pipe that a daemonised grandchild keeps open is not waited on longer


class Output:
    def __init__(self, emit: Callable[[str, bytes], LogBatch], on_lines: Callable[[LogBatch], None]):
        """`emit(stream, blob)` logs complete lines and returns their batch; `on_lines(batch)` sees each."""
        self.emit, self.on_lines = emit, on_lines
        self.readers: dict[str, PipeReader] = {}
        self._tail: deque[LogBatch] = deque()
        self._tail_count = 0
        self.secrets: list[str] = []

    def follow(self, loop: asyncio.AbstractEventLoop, child: Child) -> None:
        """Read the new process's pipes (a fd of -1: adopted after the process had closed that pipe)."""
        self._tail.clear()
        self._tail_count = 0
        self.readers = {}
        for fd, stream in ((child.stdout, "out"), (child.stderr, "err")):
            if fd < 0:
                continue
            splitter = LineSplitter()

            def on_data(data: bytes, splitter: LineSplitter = splitter, stream: str = stream) -> None:
                blob = splitter.feed(data)
                if blob is not None:
                    self._lines(stream, blob)

            def on_eof(splitter: LineSplitter = splitter, stream: str = stream) -> None:
                tail = splitter.flush()
                if tail:
                    self._lines(stream, tail)

            self.readers[stream] = PipeReader(loop, fd, on_data, on_eof)

    def fds(self) -> dict[str, int]:
        """The read ends still open, by stream (-1 when closed): what a hand-over passes on."""
        return {stream: self.readers[stream].fd if stream in self.readers else -1 for stream in ("out", "err")}

    async def drained(self) -> None:
        """Until every pipe is at its end (the process died: what it wrote last is read), at most DRAIN_TIMEOUT."""
        for r in self.readers.values():
            r.read_now()
        if all(r.closed.is_set() for r in self.readers.values()):
            return
        waits = [asyncio.ensure_future(r.closed.wait()) for r in self.readers.values()]
        await asyncio.wait(waits, timeout=DRAIN_TIMEOUT)
        for t in waits:
            t.cancel()

    def _lines(self, stream: str, blob: bytes) -> None:
        batch = self.emit(stream, blob)
        self._tail.append(batch)
        self._tail_count += batch.count
        while self._tail_count - self._tail[0].count >= TAIL_LINES:
            self._tail_count -= self._tail.popleft().count
        self.on_lines(batch)

    def tail_lines(self) -> list[str]:
        lines = [line for b in self._tail for line in b.lines][-TAIL_LINES:]
        for secret in self.secrets:
            lines = [line.replace(secret, "***") for line in lines]
        return lines
