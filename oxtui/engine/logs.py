"""Log capture: split pipe chunks into lines, timestamp at capture, write each process's file
(logfile.py) and the journal (journald.py), and keep a bounded ring of recent lines per process for
`oxtui logs` and the UI.

Work is per chunk, not per line: a chunk read from a pipe becomes one LogBatch whose lines share
the capture time, and the file write is one bytes.replace. That keeps up with a child printing flat out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..oxfile.model import LogsConfig
from ..protocol import MAX_LINE, STREAM_MARK, LogBatch, format_ts, split_blob  # noqa: F401 (re-exported)
from .logfile import LogFile, LogTrouble

if TYPE_CHECKING:
    from .journald import Journald

RING_MAX_BYTES = 8 * 1024 * 1024


class LineSplitter:
    """Turns arbitrary chunks into complete lines; keeps the unfinished tail, bounded by MAX_LINE."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> bytes | None:
        """Returns the complete lines in data (joined by \\n, without the last newline), or None."""
        cut = data.rfind(b"\n")
        if cut < 0:
            if self._tail:
                data = self._tail + data
            if len(data) < MAX_LINE:
                self._tail = data
                return None
            self._tail = b""
            return data
        # One copy of a 1 MiB chunk, not two: the previous chunk's unfinished line is joined to this
        # chunk's complete lines in a single join (the tail never holds a newline).
        head, self._tail = self._tail, data[cut + 1:]
        if len(self._tail) >= MAX_LINE:
            self._tail = b""
            return head + data if head else data
        if head:
            return b"".join((head, memoryview(data)[:cut]))
        return data[:cut]

    def flush(self) -> bytes | None:
        tail, self._tail = self._tail, b""
        return tail or None


class ProcessLog:
    """One process's log file and ring of recent batches."""

    def __init__(self, name: str, file: LogFile | None, max_lines: int):
        self.name = name
        self.file = file            # None with [logs] files = false
        self.ring: deque[LogBatch] = deque()
        self.max_lines = max_lines
        self._lines = 0
        self._bytes = 0
        self.lines_total = 0        # every line the instances printed (Prometheus' oxtui_log_lines_total)

    def add(self, batch: LogBatch) -> None:
        if self.file is not None:
            prefix = f"{format_ts(batch.ts)} {batch.source} {STREAM_MARK[batch.stream]} ".encode()
            # Raw bytes to the file: one C-level replace per chunk, the child's bytes kept as they were.
            self.file.write([prefix, batch.data.replace(b"\n", b"\n" + prefix), b"\n"], batch.count, batch.ts)
        self.keep(batch)

    def forget(self) -> None:
        """Drop the recent lines (the file was emptied)."""
        self.ring.clear()
        self._lines = self._bytes = 0

    def keep(self, batch: LogBatch) -> None:
        """Into the ring only (a batch the file has already: carried over a hand-over)."""
        self.ring.append(batch)
        self._lines += batch.count
        self._bytes += len(batch.data)
        while self.ring and (self._lines > self.max_lines or self._bytes > RING_MAX_BYTES):
            old = self.ring.popleft()
            self._lines -= old.count
            self._bytes -= len(old.data)


class LogHub:
    """All processes' logs: one sequence of batches, rings per process, subscribers for live views."""

    def __init__(self, cfg: LogsConfig):
        self.cfg = cfg
        self.dir = cfg.dir
        self.logs: dict[str, ProcessLog] = {}
        # A file that cannot be written, or can again: ("start" | "ongoing" | "end", process, trouble).
        # The engine makes it an event; the trouble itself is read from `trouble()` for status.
        self.on_trouble: Callable[[str, str, LogTrouble], None] | None = None
        self._retry: asyncio.Task[None] | None = None
        self.journal: Journald | None = None        # every worker line to the journal too, when on
        self.seq = 0
        self.subscribers: list[Callable[[LogBatch], object]] = []
        # Called when a file keeps small writes back: the engine flushes them shortly after, so an
        # idle engine has no flush timer ticking.
        self.on_pending: Callable[[], None] | None = None

    def path_for(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def open(self, name: str, check: bool = False) -> ProcessLog:
        """This process's log; with `check`, OSError when its file cannot be opened (the engine's start
        refuses a log folder it cannot write; later on, a file that fails is a trouble, not an error)."""
        log = self.logs.get(name)
        if log is None:
            cfg = self.cfg
            file = LogFile(self.path_for(name), cfg.max_size, cfg.keep, cfg.max_age, cfg.compress,
                           lambda kind, trouble: self._trouble(kind, name, trouble)) if cfg.files else None
            log = self.logs[name] = ProcessLog(name, file, cfg.buffer_lines)
        if check and log.file is not None and log.file.trouble is not None:
            raise OSError(0, log.file.trouble.text)
        return log

    def _trouble(self, kind: str, name: str, trouble: LogTrouble) -> None:
        if kind != "end" and (self._retry is None or self._retry.done()):
            with contextlib.suppress(RuntimeError):      # not on the loop yet: the next line tries again
                self._retry = asyncio.get_running_loop().create_task(self.retry(), name="log retry")
        if self.on_trouble is not None:
            self.on_trouble(kind, name, trouble)

    def trouble(self, name: str) -> LogTrouble | None:
        log = self.logs.get(name)
        return log.file.trouble if log is not None and log.file is not None else None

    def emit(self, process: str, instance: int | None, stream: str, lines: list[str] | tuple[str, ...],
             ts: float | None = None) -> LogBatch:
        """Engine events and other text lines."""
        lines = tuple(lines)
        return self._add(LogBatch(0, time.time() if ts is None else ts, process, instance, stream,
                                  "\n".join(lines).encode("utf-8", "replace"), len(lines), lines))

    def emit_bytes(self, process: str, instance: int | None, stream: str, blob: bytes,
                   pid: int | None = None) -> LogBatch:
        """Output of an instance: complete lines as read from its pipe."""
        return self._add(LogBatch(0, time.time(), process, instance, stream, blob, blob.count(b"\n") + 1, pid=pid))

    def _add(self, batch: LogBatch) -> LogBatch:
        self.seq += 1
        batch.seq = self.seq
        log = self.open(batch.process)
        log.add(batch)
        if batch.stream != "event":
            log.lines_total += batch.count
            if self.journal is not None:
                self.journal(batch)
        if log.file is not None and log.file.pending and self.on_pending is not None:
            self.on_pending()
        for fn in list(self.subscribers):
            fn(batch)
        return batch

    def recent(self, names: Iterable[str] | None = None, after_seq: int = 0) -> list[LogBatch]:
        """Batches from the rings, merged in capture order."""
        chosen = [self.logs[n] for n in (names if names is not None else self.logs) if n in self.logs]
        batches = [b for log in chosen for b in log.ring if b.seq > after_seq]
        batches.sort(key=lambda b: b.seq)
        return batches

    def flush(self) -> None:
        for log in self.logs.values():
            if log.file is not None:
                log.file.flush()

    async def retry(self) -> None:
        """Once a second while a file is in trouble, and only then (an idle engine has no timer): tried
        again even when no line comes, so a disk that has room again ends the trouble, and says so."""
        while any(self.trouble(name) for name in self.logs):
            await asyncio.sleep(1.0)
            for log in list(self.logs.values()):
                if log.file is not None and log.file.trouble is not None:
                    log.file.retry()

    def flush_logs(self, names: list[str]) -> int:
        """Empty these processes' log files and recent lines; returns the bytes freed on disk."""
        freed = 0
        for name in names:
            log = self.logs.get(name)
            if log is not None:
                freed += log.file.empty() if log.file is not None else 0
                log.forget()
        return freed

    def close(self) -> None:
        for log in self.logs.values():
            if log.file is not None:
                log.file.close()
        if self.journal is not None:
            self.journal.close()
