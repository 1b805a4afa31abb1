"""Every worker line into the journal, as an entry of its own, over journald's native protocol.

Under systemd (or with `[logs] journald = true`) a VPS user's first command is `journalctl -u UNIT
-f`: each stdout/stderr line becomes one datagram to /run/systemd/journal/socket with MESSAGE,
PRIORITY (6 stdout, 3 stderr, or the level of a JSON line), SYSLOG_IDENTIFIER (the process name),
SYSLOG_PID and OXTUI_PID (the worker's pid), OXTUI_PROCESS, OXTUI_INSTANCE, OXTUI_STREAM and OXTUI_OXFILE
(which engine: `oxtui logs` reads them back by it when `[logs] files = false`). journald
adds the engine's own fields (_PID, _SYSTEMD_UNIT from its cgroup), so `journalctl -u UNIT
OXTUI_PROCESS=web` and `-p err` select as expected.

The protocol ("Native Journal Protocol", systemd.io): FIELD=value lines; a value holding a newline is
FIELD, a newline, its length as 64-bit little endian, the bytes, a newline; an entry too big for one
datagram goes in a sealed memfd whose descriptor is the datagram's only content. No library: the
`systemd` Python binding needs libsystemd's headers to build, for what is forty lines here.

Never blocking: the socket is non-blocking. An entry journald cannot take at once (its socket's queue
of 512 datagrams is full during a burst) waits in a backlog sent as soon as the socket is writable
again; only past BACKLOG_MAX bytes (journald gone, or far behind) are entries dropped, and counted
(status `engine.journald`). Never waited for.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..protocol import LogBatch, json_object

if TYPE_CHECKING:
    from ..oxfile.model import LogsConfig

SOCKET = "/run/systemd/journal/socket"
BACKLOG_MAX = 16 * 1024 * 1024
STREAMS = {"out": (b"stdout", b"6"), "err": (b"stderr", b"3")}
# A JSON line's own level: syslog names, the usual aliases, and pino's/bunyan's numbers.
LEVELS = {"emerg": 0, "emergency": 0, "panic": 0, "alert": 1, "crit": 2, "critical": 2, "fatal": 2, "err": 3,
          "error": 3, "warn": 4, "warning": 4, "notice": 5, "info": 6, "information": 6, "debug": 7, "trace": 7,
          "verbose": 7}
PINO = {10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2}


def level_of(line: bytes) -> int | None:
    """The syslog priority a JSON line gives itself in `level` or `severity`, else None."""
    fields = json_object(line)
    if fields is None:
        return None
    value = fields.get("level", fields.get("severity"))
    if isinstance(value, str):
        return LEVELS.get(value.strip().lower())
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value <= 7 else PINO.get(value)
    return None


def field(name: bytes, value: bytes) -> bytes:
    if b"\n" in value:
        return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return name + b"=" + value + b"\n"


class Journald:
    """Sends log batches to the journal (a LogHub's `journal`)."""

    def __init__(self, oxfile: str, path: str = SOCKET):
        self.oxfile = oxfile.encode()
        self.sent = self.dropped = 0
        self._backlog: deque[bytes] = deque()
        self._backlog_size = 0
        self._waiting = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise

    def status(self) -> dict[str, int]:
        return {"sent": self.sent, "dropped": self.dropped, "waiting": len(self._backlog)}

    def __call__(self, batch: LogBatch) -> None:
        kind = STREAMS.get(batch.stream)
        if kind is None:
            return
        stream, priority = kind
        pid = batch.pid
        name = batch.process.encode()
        instance = b"canary" if batch.instance is not None and batch.instance < 0 else str(batch.instance).encode()
        common = (field(b"SYSLOG_IDENTIFIER", name) + field(b"OXTUI_PROCESS", name)
                  + field(b"OXTUI_OXFILE", self.oxfile)
                  + field(b"OXTUI_INSTANCE", instance) + field(b"OXTUI_STREAM", stream))
        if pid is not None:
            common += field(b"SYSLOG_PID", str(pid).encode()) + field(b"OXTUI_PID", str(pid).encode())
        for line in batch.data.split(b"\n"):
            level = level_of(line) if line[:1] == b"{" else None
            entry = (field(b"MESSAGE", line) + field(b"PRIORITY", priority if level is None else str(level).encode())
                     + common)
            self._send(entry)

    def _send(self, entry: bytes) -> None:
        if self._backlog:                 # in order: behind what waits already
            self._queue(entry)
            return
        try:
            self.sock.send(entry)
            self.sent += 1
        except BlockingIOError:
            self._queue(entry)
        except OSError as e:
            if e.errno == errno.EMSGSIZE:
                self._send_large(entry)
            else:                         # journald gone (ECONNREFUSED): counted, never retried
                self.dropped += 1

    def _queue(self, entry: bytes) -> None:
        if self._backlog_size + len(entry) > BACKLOG_MAX:
            self.dropped += 1
            return
        self._backlog.append(entry)
        self._backlog_size += len(entry)
        if not self._waiting:
            try:
                asyncio.get_running_loop().add_writer(self.sock.fileno(), self._drain)
                self._waiting = True
            except RuntimeError:          # no loop (a test's direct call): the next entry tries again
                pass

    def _drain(self) -> None:
        """The socket is writable: send what waits, until it is empty or the socket is full again."""
        while self._backlog:
            entry = self._backlog[0]
            try:
                self.sock.send(entry)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EMSGSIZE:
                    self._send_large(entry)
                    self.sent -= 1        # counted below
                else:
                    self.dropped += 1
                    self.sent -= 1
            self._backlog.popleft()
            self._backlog_size -= len(entry)
            self.sent += 1
        asyncio.get_running_loop().remove_writer(self.sock.fileno())
        self._waiting = False

    def _send_large(self, entry: bytes) -> None:
        """An entry over the datagram limit: in a sealed memfd, passed as the datagram's only content."""
        fd = os.memfd_create("oxtui-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, entry)
            import fcntl
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
                        | fcntl.F_SEAL_SEAL)
            self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            self.sent += 1
        except OSError:
            self.dropped += 1
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._waiting:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_writer(self.sock.fileno())
        self.sock.close()


def journald_for(cfg: LogsConfig, oxfile: str, log: Callable[[str], None]) -> Journald | None:
    """The journal sink, under systemd unless `[logs] journald = false`, or when asked; None when off
    or out of reach (said in the engine's log)."""
    from ..observers.sdnotify import under_systemd
    want = cfg.journald
    if want is None:
        want = under_systemd(os.environ) and os.path.exists(SOCKET)
    if not want:
        return None
    try:
        return Journald(oxfile)
    except OSError as e:
        log(f"[logs] journald: cannot reach {SOCKET} ({e.strerror}); the workers' lines go to "
            + ("the log files only" if cfg.files else "nowhere but `oxtui logs` (files = false)"))
        return None
