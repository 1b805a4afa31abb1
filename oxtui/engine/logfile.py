"""One process's log file on disk: appended by writev, rotated by size or age (gzip optional), and
never a reason for a worker to block or a line to vanish unannounced.

What the disk may do to it, and what this does back:
- a write fails (ENOSPC, EROFS, EACCES, EIO, the folder gone): the lines are counted, not written,
  and the trouble is reported (LogTrouble: when it starts, at most once a minute while it lasts,
  when it ends). Writing is tried again at most once a second; once it works, the file itself says
  `[oxtui] N lines not written (No space left on device) from 10:06:20 to 10:06:28`.
- the file is moved away or deleted (logrotate's `create`, an `rm -rf logs/`): noticed within a
  second of the next line (the path no longer names the file written to), and a new file is opened
  at the path, the folder made again if need be. Nothing goes into the moved file after that; what
  went into a deleted one since the last look (kept in memory for that second, up to RECENT_MAX
  bytes) is written again into the new file, so an `rm` loses nothing either.
- the file is truncated in place (logrotate's `copytruncate`): O_APPEND puts the next line at the
  new end, and the size kept for rotation is taken again from the file.
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..protocol import format_ts

RECENT_MAX = 8 * 1024 * 1024   # bytes written since the last look, kept to be written again after an `rm`
RECHECK = 1.0           # seconds between looks at the path (moved, deleted, truncated) and retries of a failed write
REPORT_EVERY = 60.0     # a trouble that lasts is reported again at most this often


@dataclass
class LogTrouble:
    """Lines that could not be written to one file, since `since`."""
    path: Path
    since: float                     # epoch seconds of the first failure
    error: str                       # "ENOSPC"
    text: str                        # "No space left on device"
    lines: int = 0                   # lines not written so far
    first_ts: float = 0.0            # capture time of the first line lost
    last_ts: float = 0.0             # ... and of the last
    reported: float = 0.0            # monotonic time it was last reported

    def status(self) -> dict:
        """`status --json`'s `log_error`."""
        return {"since": self.since, "error": self.error, "text": self.text, "lines_not_written": self.lines,
                "file": str(self.path)}

    def describe(self, kind: str) -> str:
        """The event's words for a trouble that starts, goes on ("ongoing") or ends."""
        if kind == "start":
            return (f"cannot write {self.path} ({self.error}: {self.text}); its lines are counted, not written, "
                    "until it works again")
        if kind == "ongoing":
            return f"still cannot write {self.path} ({self.error}: {self.text}): {self.lines} lines not written so far"
        return (f"{self.path} is written again: {self.lines} lines were not written ({self.text}) from "
                f"{format_ts(self.first_ts)[11:19]} to {format_ts(self.last_ts)[11:19]}")

    def marker(self) -> bytes:
        return (f"{format_ts(time.time())} oxtui ~ [oxtui] {self.lines} lines not written ({self.text}) from "
                f"{format_ts(self.first_ts)[11:19]} to {format_ts(self.last_ts)[11:19]}\n").encode()


# What a LogFile tells its owner: ("start" | "ongoing" | "end", the trouble).
TroubleReport = Callable[[str, LogTrouble], None]


class LogFile:
    """Append-only log file rotated by size or age: api.log, api.log.1 ... api.log.{keep} (.gz with
    compress). Takes a chunk as a few pieces (prefix, body, newline) and hands them to the kernel with
    one writev: no concatenation copies of a 256 KiB chunk. Small chunks wait in a short list for the
    next large one or the engine's flush."""

    SMALL = 64 * 1024

    def __init__(self, path: Path, max_size: int, keep: int, max_age: float | None = None, compress: bool = False,
                 on_trouble: TroubleReport | None = None):
        self.path, self.max_size, self.keep, self.max_age, self.compress = path, max_size, keep, max_age, compress
        self.on_trouble = on_trouble
        self.trouble: LogTrouble | None = None
        self._fd = -1
        self._ino: tuple[int, int] | None = None
        self._size = 0
        self._born = time.time()          # capture time of the file's first line (max_age)
        self._pending: list[bytes] = []
        self._pending_size = self._pending_lines = 0
        self._pending_ts = (0.0, 0.0)
        self._checked = time.monotonic()
        self._gzip: threading.Thread | None = None
        self._mid_line = False            # a failed write may have left half a line at the end
        self._recent: list[bytes] = []    # written since the last look: lost with a deleted file
        self._recent_size = 0
        try:
            self._open()
        except OSError as e:
            self._failed(e, 0, time.time())

    # ---- writing ---------------------------------------------------------------------------

    def write(self, parts: list[bytes], lines: int = 1, ts: float | None = None) -> None:
        ts = time.time() if ts is None else ts
        now = time.monotonic()
        if now - self._checked >= RECHECK:
            self._checked = now
            self._look(ts)
        if self.trouble is not None:
            self._count_lost(lines, ts, ts)
            return
        n = sum(map(len, parts))
        queued = False
        try:
            if self._size + self._pending_size and (self._size + self._pending_size + n > self.max_size or self._old(ts)):
                self._flush()
                self._rotate(ts)
            self._pending.extend(parts)
            self._pending_size += n
            self._pending_lines += lines
            self._pending_ts = (self._pending_ts[0] or ts, ts)
            queued = True
            if self._pending_size >= self.SMALL or len(self._pending) > 500:
                self._flush()
        except OSError as e:
            self._failed(e, 0 if queued else lines, ts)      # queued lines are counted with the rest of the queue

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        if self._pending and self.trouble is None:
            try:
                self._flush()
            except OSError as e:
                self._failed(e, 0, time.time())

    def _flush(self) -> None:
        parts, size = self._pending, self._pending_size
        self._pending, self._pending_size = [], 0       # the lines' count and times stay for _failed
        if self._recent_size < RECENT_MAX:             # references, not copies
            self._recent.extend(parts)
            self._recent_size += size
        while parts:
            try:
                written = os.writev(self._fd, parts)
            except OSError:
                # What is left is lost: given back to be counted by _failed, a line for each newline
                # not written (a line half written counts as not written).
                self._pending = parts
                self._pending_lines = sum(p.count(b"\n") for p in parts)
                raise
            self._size += written
            # A short write (a disk filling up, rare otherwise): keep what is left, in order.
            while parts and written >= len(parts[0]):
                written -= len(parts[0])
                parts.pop(0)
            if parts and written:
                parts[0] = parts[0][written:]
                self._mid_line = True
            elif not parts:
                self._mid_line = False
        self._pending_lines, self._pending_ts = 0, (0.0, 0.0)

    # ---- trouble ---------------------------------------------------------------------------

    def _failed(self, e: OSError, lines: int, ts: float) -> None:
        """A write or an open failed: count what is lost, report a new trouble, try again later."""
        lost = lines + self._pending_lines
        first = self._pending_ts[0] or ts
        self._pending, self._pending_size, self._pending_lines, self._pending_ts = [], 0, 0, (0.0, 0.0)
        if self.trouble is None:
            self.trouble = LogTrouble(self.path, time.time(), errno.errorcode.get(e.errno or 0, "EIO"),
                                      e.strerror or str(e), lines=lost, first_ts=first, last_ts=ts)
            self._report("start")
        else:
            self._count_lost(lost, first, ts)

    def _count_lost(self, lines: int, first: float, last: float) -> None:
        t = self.trouble
        assert t is not None
        if not t.lines and lines:
            t.first_ts = first
        t.lines += lines
        t.last_ts = max(t.last_ts, last)
        if time.monotonic() - t.reported >= REPORT_EVERY:
            self._report("ongoing")

    def _report(self, kind: str) -> None:
        assert self.trouble is not None
        self.trouble.reported = time.monotonic()
        if self.on_trouble is not None:
            self.on_trouble(kind, self.trouble)

    def _look(self, ts: float) -> None:
        """Once a second while lines come: the path still names our file, at the size we think; or,
        in trouble, whether writing works again."""
        if self.trouble is not None:
            self._recover()
            return
        moved = not self._same_file()       # moved, deleted, or its folder deleted
        recent, self._recent, self._recent_size = self._recent, [], 0
        try:
            if moved:
                self.flush()      # what was captured before the move goes where it was headed
                deleted = os.fstat(self._fd).st_nlink == 0
                if deleted:
                    recent = recent + self._recent      # with what flush() just wrote there
                os.close(self._fd)
                self._fd = -1
                self._open()
                self._born = ts
                if deleted and recent:
                    # No name reaches that file any more: what it got since the last look goes again
                    # into the new one (a moved file keeps its lines: they are not written twice).
                    self._recent, self._recent_size = [], 0
                    self._write_all(b"".join(recent))
            else:
                # truncated in place (copytruncate, `: > api.log`): the size counted for rotation restarts
                self._size = min(self._size, os.fstat(self._fd).st_size)
        except OSError as e:
            self._failed(e, 0, ts)

    def retry(self) -> None:
        """In trouble: try writing again now if the last try was a second ago or more."""
        now = time.monotonic()
        if self.trouble is not None and now - self._checked >= RECHECK:
            self._checked = now
            self._recover()

    def _recover(self) -> None:
        """Write the marker of what was lost; on success the trouble is over."""
        t = self.trouble
        assert t is not None
        try:
            if self._fd < 0 or not self._same_file():
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                self._open()
            marker = (b" [cut]\n" if self._mid_line else b"") + t.marker()     # a line cut by the failure says so
            self._write_all(marker)
        except OSError:
            return
        self._mid_line = False
        self.trouble = None
        if self.on_trouble is not None:
            self.on_trouble("end", t)

    def _same_file(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._ino

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self._size += n
            view = view[n:]

    # ---- the file --------------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(self._fd)
        self._ino, self._size = (st.st_dev, st.st_ino), st.st_size
        if self.max_age is not None and st.st_size:
            self._born = _first_line_time(self.path) or time.time()

    def _old(self, ts: float) -> bool:
        return self.max_age is not None and ts - self._born >= self.max_age

    def _rotated(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def _rotate(self, ts: float) -> None:
        if self._gzip is not None:
            # the last rotation's file is still being compressed under its name .1: renaming the chain
            # under it would compress the wrong file. Only a file rotated again within a gzip's time waits.
            self._gzip.join()
            self._gzip = None
        os.close(self._fd)
        self._fd = -1
        for i in range(self.keep, 0, -1):
            for suffix in ("", ".gz"):
                src = self._rotated(i).with_name(self._rotated(i).name + suffix)
                if not src.exists():
                    continue
                if i == self.keep:
                    src.unlink()
                else:
                    os.replace(src, self._rotated(i + 1).with_name(self._rotated(i + 1).name + suffix))
        os.replace(self.path, self._rotated(1))
        self._open()
        self._born = ts
        if self.compress:
            self._gzip = threading.Thread(target=_gzip, args=(self._rotated(1),), name=f"gzip {self.path.name}",
                                          daemon=True)
            self._gzip.start()

    def empty(self) -> int:
        """Empty the file and remove its rotated ones (`oxtui logs --flush`); returns the bytes freed."""
        freed = 0
        if self._fd >= 0:
            self._pending, self._pending_size, self._pending_lines = [], 0, 0
            freed = os.fstat(self._fd).st_size
            os.ftruncate(self._fd, 0)       # O_APPEND: the next write lands at the new end, the start
            self._size = 0
        if self._gzip is not None:
            self._gzip.join()
        for i in range(1, self.keep + 1):
            for rotated in (self._rotated(i), self._rotated(i).with_name(self._rotated(i).name + ".gz")):
                try:
                    freed += rotated.stat().st_size
                    rotated.unlink()
                except OSError:
                    pass
        return freed

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1
        if self._gzip is not None:
            self._gzip.join()


def _gzip(path: Path) -> None:
    """path -> path.gz, then path removed; in a thread, so the engine's loop never waits on it. A
    failure (the disk full) leaves the plain file, which is as good a rotated file."""
    tmp = path.with_name(path.name + ".gz.tmp")
    try:
        with open(path, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        os.replace(tmp, path.with_name(path.name + ".gz"))
        path.unlink()
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass


def _first_line_time(path: Path) -> float | None:
    """The capture time of a log file's first line ("2026-12-07 10:06:20.123 ..."), local time."""
    try:
        with open(path, "rb") as f:
            head = f.read(23).decode("ascii")
        return time.mktime(time.strptime(head[:19], "%Y-%m-%d %H:%M:%S")) + int(head[20:23]) / 1000
    except (OSError, ValueError, UnicodeDecodeError):
        return None
