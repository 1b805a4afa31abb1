"""Non-blocking pipe readers on the engine's loop: a child's output is read as soon as it arrives,
in large chunks, whoever is (or is not) looking at it."""

from __future__ import annotations

import asyncio
import os
from typing import Callable

CHUNK = 256 * 1024


class PipeReader:
    """Reads a non-blocking pipe in large chunks as soon as data arrives; closes it at EOF."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, on_data: Callable[[bytes], None],
                 on_eof: Callable[[], None]):
        self.loop, self.fd, self.on_data, self.on_eof = loop, fd, on_data, on_eof
        self.closed = asyncio.Event()
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
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
