"""Event-loop plumbing for a child: non-blocking pipe readers and a pidfd exit watcher.

No threads and no SIGCHLD handler: both work on whatever thread runs the engine's loop
(signal handlers only work on the main thread, and the TUI runs the engine on another one).
"""

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


def watch_exit(loop: asyncio.AbstractEventLoop, pid: int) -> asyncio.Future[int]:
    """A future for the wait status of our child `pid`, reaped as soon as it exits."""
    fut: asyncio.Future[int] = loop.create_future()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        fut.set_result(_reap_blocking(pid))
        return fut

    def on_exit() -> None:
        try:
            wpid, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            wpid, status = pid, 255 << 8
        if wpid == 0:
            return
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not fut.done():
            fut.set_result(status)

    loop.add_reader(pidfd, on_exit)
    return fut


def _reap_blocking(pid: int) -> int:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 255 << 8
