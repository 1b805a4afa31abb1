"""Non-blocking pipe readers on the engine's loop: a child's output is read as soon as it arrives,
in large chunks, whoever is (or is not) looking at it."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable

CHUNK = 1024 * 1024
# A pipe starts at 256 KiB (spawn.py). One that a read finds full belongs to a child printing flat out:
# it grows to 1 MiB, so one read takes 4x as much and the per-chunk costs fall 4x (about 1.5x the
# lines per second). Only chatty children get the big pipe: 1000 quiet workers never pin 2 GB of it.
FULL = 256 * 1024
BIG_PIPE = 1024 * 1024


class PipeReader:
    """Reads a non-blocking pipe in large chunks as soon as data arrives; closes it at EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, on_data: Callable[[bytes], None],
                 on_eof: Callable[[], None]):
        self.loop, self.fd, self.on_data, self.on_eof = loop, fd, on_data, on_eof
        self.closed = asyncio.Event()
        self._grown = False
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            if len(data) >= FULL and not self._grown:
                self._grown = True
                try:
                    fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, BIG_PIPE)
                except OSError:
                    pass           # over this user's pipe limits: keep 256 KiB
            self.on_data(data)
        else:
            self.close()
            self.on_eof()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
            self.closed.set()
