"""Log capture: split pipe chunks into lines, timestamp at capture, write rotating files, and keep
a bounded ring of recent lines per process for `oxtui logs` and the UI.

Work is per chunk, not per line: a chunk read from a pipe becomes one LogBatch whose lines share
the capture time, and the file write is one bytes.replace. That keeps up with a child printing flat out.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable

from ..protocol import MAX_LINE, STREAM_MARK, LogBatch, format_ts, split_blob  # noqa: F401 (re-exported)

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


class RotatingFile:
    """Append-only log file rotated by size: api.log, api.log.1 ... api.log.{keep}.

    Takes a chunk as a few pieces (prefix, body, newline) and hands them to the kernel with one
    writev: no concatenation copies of a 256 KiB chunk. Small chunks wait in a short list for the
    next large one or the engine's flush tick.
    """

    SMALL = 64 * 1024

    def __init__(self, path: Path, max_size: int, keep: int):
        self.path, self.max_size, self.keep = path, max_size, keep
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.error: str | None = None

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, parts: list[bytes]) -> None:
        if self._fd < 0:
            return
        n = sum(map(len, parts))
        try:
            if self._size + self._pending_size + n > self.max_size and self._size + self._pending_size:
                self._flush()
                self._rotate()
            self._pending.extend(parts)
            self._pending_size += n
            if self._pending_size >= self.SMALL or len(self._pending) > 500:
                self._flush()
        except OSError as e:
            # A full disk must not take supervision down; the ring buffer still has the lines.
            self.error = f"{self.path}: {e.strerror}"
            self._pending, self._pending_size = [], 0

    def _flush(self) -> None:
        parts, self._pending, self._pending_size = self._pending, [], 0
        while parts:
            written = os.writev(self._fd, parts)
            self._size += written
            # A short write (rare on regular files): keep what is left, in order.
            while parts and written >= len(parts[0]):
                written -= len(parts[0])
                parts.pop(0)
            if parts and written:
                parts[0] = parts[0][written:]

    def _rotate(self) -> None:
        os.close(self._fd)
        for i in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._fd = self._open()
        self._size = 0

    def empty(self) -> int:
        """Empty the file and remove its rotated ones (`oxtui logs --flush`); returns the bytes freed."""
        freed = 0
        if self._fd >= 0:
            self._pending, self._pending_size = [], 0
            freed = os.fstat(self._fd).st_size
            os.ftruncate(self._fd, 0)       # O_APPEND: the next write lands at the new end, the start
            self._size = 0
        for i in range(1, self.keep + 1):
            rotated = self.path.with_name(f"{self.path.name}.{i}")
            try:
                freed += rotated.stat().st_size
                rotated.unlink()
            except OSError:
                pass
        return freed

    def flush(self) -> None:
        if self._fd >= 0 and self._pending:
            try:
                self._flush()
            except OSError as e:
                self.error = f"{self.path}: {e.strerror}"
                self._pending, self._pending_size = [], 0

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1


class ProcessLog:
    """One process's log file and ring of recent batches."""

    def __init__(self, name: str, path: Path, max_size: int, keep: int, max_lines: int):
        self.name = name
        self.file = RotatingFile(path, max_size, keep)
        self.ring: deque[LogBatch] = deque()
        self.max_lines = max_lines
        self._lines = 0
        self._bytes = 0
        self.lines_total = 0        # every line the instances printed (Prometheus' oxtui_log_lines_total)

    def add(self, batch: LogBatch) -> None:
        prefix = f"{format_ts(batch.ts)} {batch.source} {STREAM_MARK[batch.stream]} ".encode()
        # Raw bytes to the file: one C-level replace per chunk, the child's bytes kept as they were.
        self.file.write([prefix, batch.data.replace(b"\n", b"\n" + prefix), b"\n"])
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

    def __init__(self, log_dir: Path, max_size: int, keep: int, max_lines: int):
        self.dir = log_dir
        self.max_size, self.keep, self.max_lines = max_size, keep, max_lines
        self.logs: dict[str, ProcessLog] = {}
        self.seq = 0
        self.subscribers: list[Callable[[LogBatch], None]] = []
        # Called when a file keeps small writes back: the engine flushes them shortly after, so an
        # idle engine has no flush timer ticking.
        self.on_pending: Callable[[], None] | None = None

    def path_for(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def open(self, name: str) -> ProcessLog:
        log = self.logs.get(name)
        if log is None:
            log = self.logs[name] = ProcessLog(name, self.path_for(name), self.max_size, self.keep, self.max_lines)
        return log

    def emit(self, process: str, instance: int | None, stream: str, lines: list[str] | tuple[str, ...],
             ts: float | None = None) -> LogBatch:
        """Engine events and other text lines."""
        lines = tuple(lines)
        return self._add(LogBatch(0, time.time() if ts is None else ts, process, instance, stream,
                                  "\n".join(lines).encode("utf-8", "replace"), len(lines), lines))

    def emit_bytes(self, process: str, instance: int | None, stream: str, blob: bytes) -> LogBatch:
        """Output of an instance: complete lines as read from its pipe."""
        return self._add(LogBatch(0, time.time(), process, instance, stream, blob, blob.count(b"\n") + 1))

    def _add(self, batch: LogBatch) -> LogBatch:
        self.seq += 1
        batch.seq = self.seq
        log = self.open(batch.process)
        log.add(batch)
        if batch.stream != "event":
            log.lines_total += batch.count
        if log.file.pending and self.on_pending is not None:
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
            log.file.flush()

    def flush_logs(self, names: list[str]) -> int:
        """Empty these processes' log files and recent lines; returns the bytes freed on disk."""
        freed = 0
        for name in names:
            log = self.logs.get(name)
            if log is not None:
                freed += log.file.empty()
                log.forget()
        return freed

    def close(self) -> None:
        for log in self.logs.values():
            log.file.close()
