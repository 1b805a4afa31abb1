"""The spare: one child the helper (forkserver.py) forks while idle, waiting on a socket of its own to
become the next instance, so that a restart's path holds no fork: a request is handed to the spare
(one message) and it only does the set-up and exec. A new spare is forked once the helper has had
SPARE_IDLE_MS without a request, so a burst (a scale to 1000) forks directly and a lone crash restart
finds a spare ready. Runs inside the helper (`python -I -S`): standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket

if __package__:
    from .forkchild import CANNOT_START_EXIT, ORPHANED_EXIT, PR_SET_NAME, PR_SET_PDEATHSIG, become_instance, fork, prctl
else:
    from forkchild import CANNOT_START_EXIT, ORPHANED_EXIT, PR_SET_NAME, PR_SET_PDEATHSIG, become_instance, fork, prctl  # type: ignore[no-redef]

SPARE_IDLE_MS = 5          # quiet time before a new spare is forked: never during a burst of spawns
MAX_MSG = 1 << 20


class Spare:
    def __init__(self) -> None:
        self.child: tuple[int, socket.socket] | None = None     # (pid, our end of its socket)
        self.wait_ms = SPARE_IDLE_MS

    def fork(self, helper_pid: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = fork()
        except OSError:
            ours.close()
            theirs.close()
            self.wait_ms = 1000                 # out of processes: try again later, not 200 times a second
            return
        if pid == 0:
            _be_spare(theirs, helper_pid)
        theirs.close()
        self.child, self.wait_ms = (pid, ours), SPARE_IDLE_MS

    def take(self) -> tuple[int, socket.socket] | None:
        child, self.child = self.child, None
        return child

    def drop(self) -> None:
        child = self.take()
        if child is not None:
            child[1].close()                    # EOF: it exits by itself
            try:
                os.kill(child[0], signal.SIGKILL)
                os.waitpid(child[0], 0)
            except (ProcessLookupError, ChildProcessError):
                pass

    def hand(self, req: dict, fds: list[int]) -> int | None:
        """The spare's pid once it holds the request, or None (no spare, or it has died)."""
        child = self.take()
        if child is None:
            return None
        pid, conn = child
        try:
            socket.send_fds(conn, [json.dumps(req).encode()], fds)
        except OSError:
            return None                         # it died: the helper's reap collects it as an orphan
        finally:
            conn.close()
        return pid

    def died(self, pid: int) -> bool:
        """`pid` was the spare (it died unused: the next request forks)."""
        if self.child is not None and pid == self.child[0]:
            self.take()[1].close()              # type: ignore[index]
            return True
        return False


def _be_spare(conn: socket.socket, helper_pid: int) -> None:
    """In a spare child: wait for one request, then become that instance. Never returns."""
    try:
        signal.set_wakeup_fd(-1)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != helper_pid:
            os._exit(ORPHANED_EXIT)
        prctl(PR_SET_NAME, b"oxtui-spare")     # so `ps` tells it from the helper
        # The engine's socket and the wake-up pipe are the helper's: holding them would keep the
        # engine from seeing the helper's end close.
        keep = conn.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 20)
        msg, fds, _flags, _addr = socket.recv_fds(conn, MAX_MSG, 3)
        if not msg:
            os._exit(0)                         # the helper dropped us (shutting down)
        become_instance(json.loads(msg), fds, helper_pid)
    except BaseException:  # in the forked child: whatever happens, never return to the helper's code
        os._exit(CANNOT_START_EXIT)
