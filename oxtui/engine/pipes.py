"""Non-blocking pipe readers on the engine's loop: a child's output is read in large chunks whoever is
(or is not) looking at it, at once after a quiet moment and then at most every PACE s (ReadGate)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import weakref
from collections.abc import Callable
from typing import ClassVar

CHUNK = 1024 * 1024
# A pipe starts at 256 KiB (spawn.py). One that a read finds full belongs to a child printing flat out:
# it grows to 1 MiB, so one read takes 4x as much and the per-chunk costs fall 4x (about 1.5x the
# lines per second). Only chatty children get the big pipe: 1000 quiet workers never pin 2 GB of it.
FULL = 256 * 1024
BIG_PIPE = 1024 * 1024
# Apps print a line at a time (an access log: a write per request), and each read was a wake-up of the
# engine, a batch, a file write and a message to every viewer: about 0.3 ms of a core for a process that
# was asleep, so 2,000 lines a second cost the engine 14 % of a core. Pipes are read at once after a quiet
# moment, then at most every PACE s, every pipe with something in it in the same wake-up: one logger or
# sixteen instances each logging, the engine wakes at most 1/PACE times a second for them. A line is at
# most PACE late (its capture time too), which no person reading logs sees.
PACE = 0.05
# A read of BUSY bytes or more belongs to a child printing more than a pipe holds in a few PACEs: its pipe
# is read back to back for a second, so a flat-out child's throughput is what it was.
BUSY = 64 * 1024


class ReadGate:
    """When the pipes of one loop are read: at once when nothing was read for PACE s, else together at the
    next tick."""

    _of: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadGate]] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ReadGate:
        gate = cls._of.get(loop)
        if gate is None:
            gate = cls._of[loop] = cls(loop)
        return gate

    def __init__(self, loop: asyncio.AbstractEventLoop, pace: float = PACE):
        self.loop, self.pace = loop, pace
        self.last = float("-inf")             # when pipes were last let through (loop time)
        self.waiting: list[PipeReader] = []
        self._tick: asyncio.TimerHandle | None = None

    def let_through(self, reader: PipeReader) -> bool:
        """True: read now. False: the reader is off the loop and waits for the next tick."""
        now = self.loop.time()
        if now - self.last >= self.pace:
            self.last = now
            return True
        self.loop.remove_reader(reader.fd)
        self.waiting.append(reader)
        if self._tick is None:
            self._tick = self.loop.call_at(self.last + self.pace, self.tick)
        return False

    def tick(self) -> None:
        self._tick = None
        self.last = self.loop.time()
        waiting, self.waiting = self.waiting, []
        for reader in waiting:
            reader.resume()


class PipeReader:
    """Reads a non-blocking pipe in large chunks when its gate lets it; closes it at EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, on_data: Callable[[bytes], None],
                 on_eof: Callable[[], None], gate: ReadGate | None = None):
        self.loop, self.fd, self.on_data, self.on_eof = loop, fd, on_data, on_eof
        self.gate = gate or ReadGate.of(loop)
        self.closed = asyncio.Event()
        self._grown = False
        self._busy_until = float("-inf")
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        if self.loop.time() < self._busy_until or self.gate.let_through(self):
            self._read()

    def resume(self) -> None:
        """The gate's tick: read what came meanwhile, and watch the pipe again."""
        if self.fd >= 0:
            self.loop.add_reader(self.fd, self._readable)
            self._read()

    def read_now(self) -> None:
        """Everything the pipe holds, and its end if it has come, whatever the gate says: the process has
        exited, and what it wrote last (its traceback) belongs in its exit record, which is written now."""
        while self.fd >= 0 and self._read():
            pass

    def _read(self) -> bool:
        """One read; False when the pipe was empty."""
        try:
            data = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            if len(data) >= FULL and not self._grown:
                self._grown = True
                try:
                    fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, BIG_PIPE)
                except OSError:
                    pass           # over this user's pipe limits: keep 256 KiB
            if len(data) >= BUSY:
                self._busy_until = self.loop.time() + 1.0
            self.on_data(data)
        else:
            self.close()
            self.on_eof()
        return True

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
            self.closed.set()
