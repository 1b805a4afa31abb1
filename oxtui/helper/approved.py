"""The helper's side of approved restarts (engine/approval.py is the engine's): the engine's leave to
restart an instance here, at once, when it ends, so that a crash restart costs a reap and a fork
instead of two hops between processes. Runs inside the helper (`python -I -S`): standard library only.

    engine: approve(pid, spawn request, socket, min_uptime) ... revoke(pid) before it signals it
    helper: the instance ends after min_uptime -> the rest of its group SIGKILLed, the request started
            at once, both told to the engine in one message (forkserver._reap)
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable


class Approved:
    def __init__(self) -> None:
        # instance -> (its spawn request, its listening socket, min uptime s)
        self.approved: dict[int, tuple[dict, int | None, float]] = {}
        self.sockets: dict[tuple[int, int], list[int]] = {}    # (st_dev, st_ino) -> [fd, approvals holding it]

    def approve(self, req: dict, fds: list[int], live: set[int]) -> None:
        self.revoke(req["pid"])
        listen = self._hold_socket(fds[0]) if fds else None
        if req["pid"] not in live:              # it has ended already: its exit went the usual way
            self._let_go_socket(listen)
            return
        self.approved[req["pid"]] = (req["spawn"], listen, req["min_uptime"])

    def revoke(self, pid: int) -> None:
        approval = self.approved.pop(pid, None)
        if approval is not None:
            self._let_go_socket(approval[1])

    def revoke_all(self) -> None:
        """A new program (an upgrade) or a new engine (the keeper's) starts with none: it arms its own."""
        for pid in list(self.approved):
            self.revoke(pid)

    def restart(self, pid: int, born: int | None,
                start: Callable[[dict, list[int]], int]) -> tuple[int, int, int] | None:
        """The approved restart of instance `pid`, which has just ended: (the new pid, its stdout and
        stderr read ends), or None when the approval does not cover this end (it ended too soon)."""
        req, listen, min_uptime = self.approved.pop(pid)
        try:
            uptime = (time.monotonic_ns() - born) / 1e9 if born is not None else 0.0
            if uptime < min_uptime:
                return None
            try:
                os.killpg(pid, signal.SIGKILL)  # what is left of its group, as the engine ends it after a crash
            except OSError:
                pass
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            try:
                fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, 256 * 1024)    # as the engine's spawn does (spawn.py)
            except OSError:
                pass
            try:
                new = start(req, [out_w, err_w] + ([listen] if listen is not None else []))
            except OSError:
                os.close(out_r)
                os.close(err_r)
                return None
            finally:
                os.close(out_w)
                os.close(err_w)
            return new, out_r, err_r
        finally:
            self._let_go_socket(listen)

    def _hold_socket(self, fd: int) -> int:
        """One fd per listening socket however many approvals hold it (1000 instances share one)."""
        st = os.fstat(fd)
        held = self.sockets.setdefault((st.st_dev, st.st_ino), [fd, 0])
        if held[0] != fd:
            os.close(fd)
        held[1] += 1
        return held[0]

    def _let_go_socket(self, fd: int | None) -> None:
        for key, held in list(self.sockets.items()):
            if held[0] == fd:
                held[1] -= 1
                if held[1] == 0:
                    os.close(fd)
                    del self.sockets[key]
