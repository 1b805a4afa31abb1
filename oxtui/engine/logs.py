"""Log capture: split pipe chunks into lines, timestamp at capture, write rotating files, and keep
a bounded ring of recent lines per process for `oxtui logs` and the UI.

Work is per chunk, not per line: a chunk read from a pipe becomes one LogBatch whose lines share
the capture time, and the file write is one bytes.join. That keeps up with a child printing flat out.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

# A line longer than this is cut into pieces of this size: memory stays bounded whatever a child prints.
MAX_LINE = 16 * 1024
RING_MAX_CHARS = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogBatch:
    seq: int
    ts: float                 # wall-clock time of capture
    process: str
    instance: int | None      # None: about the process as a whole; -1: the reload canary
    stream: str               # "out", "err" or "event"
    lines: tuple[str, ...]

    @property
    def source(self) -> str:
        if self.instance is None:
            return self.process
        return f"{self.process}.{'canary' if self.instance < 0 else self.instance}"


STREAM_MARK = {"out": "|", "err": "!", "event": "~"}


def format_ts(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


class LineSplitter:
    """Turns arbitrary chunks into complete lines; keeps the unfinished tail, bounded by MAX_LINE."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> bytes | None:
        """Returns the complete lines in data (joined by \\n, without the last newline), or None."""
        if self._tail:
            data = self._tail + data
            self._tail = b""
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) < MAX_LINE:
                self._tail = data
                return None
            return data
        self._tail = data[cut + 1:]
        if len(self._tail) >= MAX_LINE:
            blob = data
            self._tail = b""
            return blob
        return data[:cut]

    def flush(self) -> bytes | None:
        tail, self._tail = self._tail, b""
        return tail or None


def split_blob(blob: bytes) -> list[str]:
    text = blob.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if any(len(line) > MAX_LINE for line in lines):
        lines = [line[i:i + MAX_LINE] for line in lines for i in range(0, max(len(line), 1), MAX_LINE)]
    return lines


class RotatingFile:
    """Append-only log file rotated by size: api.log, api.log.1 ... api.log.{keep}."""

    def __init__(self, path: Path, max_size: int, keep: int):
        self.path, self.max_size, self.keep = path, max_size, keep
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._f = open(path, "ab", buffering=256 * 1024)
        self._size = self._f.tell()
        self.error: str | None = None

    def write(self, data: bytes) -> None:
        if self._f is None:
            return
        try:
            if self._size and self._size + len(data) > self.max_size:
                self._rotate()
            self._f.write(data)
            self._size += len(data)
        except OSError as e:
            # A full disk must not take supervision down; the ring buffer still has the lines.
            self.error = f"{self.path}: {e.strerror}"

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._f = open(self.path, "ab", buffering=256 * 1024)
        self._size = 0

    def flush(self) -> None:
        if self._f is not None:
            try:
                self._f.flush()
            except OSError as e:
                self.error = f"{self.path}: {e.strerror}"

    def close(self) -> None:
        if self._f is not None:
            self.flush()
            self._f.close()
            self._f = None


class ProcessLog:
    """One process's log file and ring of recent batches."""

    def __init__(self, name: str, path: Path, max_size: int, keep: int, max_lines: int):
        self.name = name
        self.file = RotatingFile(path, max_size, keep)
        self.ring: deque[LogBatch] = deque()
        self.max_lines = max_lines
        self._lines = 0
        self._chars = 0

    def add(self, batch: LogBatch) -> None:
        prefix = f"{format_ts(batch.ts)} {batch.source} {STREAM_MARK[batch.stream]} "
        self.file.write((prefix + ("\n" + prefix).join(batch.lines) + "\n").encode("utf-8", "replace"))
        self.ring.append(batch)
        self._lines += len(batch.lines)
        self._chars += sum(map(len, batch.lines))
        while self.ring and (self._lines > self.max_lines or self._chars > RING_MAX_CHARS):
            old = self.ring.popleft()
            self._lines -= len(old.lines)
            self._chars -= sum(map(len, old.lines))


class LogHub:
    """All processes' logs: one sequence of batches, rings per process, subscribers for live views."""

    def __init__(self, log_dir: Path, max_size: int, keep: int, max_lines: int):
        self.dir = log_dir
        self.max_size, self.keep, self.max_lines = max_size, keep, max_lines
        self.logs: dict[str, ProcessLog] = {}
        self.seq = 0
        self.subscribers: list[Callable[[LogBatch], None]] = []

    def path_for(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def open(self, name: str) -> ProcessLog:
        log = self.logs.get(name)
        if log is None:
            log = self.logs[name] = ProcessLog(name, self.path_for(name), self.max_size, self.keep, self.max_lines)
        return log

    def emit(self, process: str, instance: int | None, stream: str, lines: list[str] | tuple[str, ...],
             ts: float | None = None) -> LogBatch:
        self.seq += 1
        batch = LogBatch(self.seq, time.time() if ts is None else ts, process, instance, stream, tuple(lines))
        self.open(process).add(batch)
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

    def close(self) -> None:
        for log in self.logs.values():
            log.file.close()
