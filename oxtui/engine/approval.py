"""Crash restarts approved in advance: the spawner helper restarts an instance the moment it ends and
tells the engine after, instead of the exit going up to the engine and the restart coming back down.

Each of those two hops wakes a sleeping process (0.5-3.5 ms each on a small virtual machine), so
they were most of a crash restart. Only what the engine would do at once anyway is approved: a
service's (not a task's, a canary's or a surge instance's) next restart while its backoff says
"immediate" and it is not about to be called a crash loop; a task (`restart = "on-failure"` or
"never") runs to an end and is never approved. The approval says how long the process must have run
first (the backoff starts over after STABLE_UPTIME). A process with env_file is never approved: its
files are read at every start. The engine revokes the approval before it signals the process itself (a stop, a restart it
asks for, a reload's drain); the helper acts on queued messages before it looks at exits, so a
revoke sent before the signal always arrives first. A restart the engine no longer wants when it
hears of it (a stop crossed it) is ended at once (Approval.discard).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..protocol import WorkerState
from .backoff import STABLE_UPTIME

if TYPE_CHECKING:
    from .spawn import Child

ARM_AFTER = 1.0     # s after a start: a burst of starts (a scale to 1000) pays nothing for approvals


class Approval:
    """One worker's standing leave for the helper to restart its current process."""

    def __init__(self, worker: Any):      # a Worker (worker.py imports this module)
        self.worker = worker
        self.pid: int | None = None           # the process the helper holds an approval for
        self._timer: asyncio.TimerHandle | None = None

    def arm_later(self, child: Child, env: dict[str, str], listen_fd: int | None) -> None:
        self.ended()
        cfg = self.worker.cfg
        if cfg.is_task or cfg.env_files:
            return
        self._timer = asyncio.get_running_loop().call_later(ARM_AFTER, self._arm, child, env, listen_fd)

    def _arm(self, child: Child, env: dict[str, str], listen_fd: int | None) -> None:
        self._timer = None
        w = self.worker
        if w.current() is not child or w.state not in (WorkerState.STARTING, WorkerState.RUNNING):
            return
        if w.role is not None:                # a reload's instance: approved once it is the release's
            self._timer = asyncio.get_running_loop().call_later(ARM_AFTER, self._arm, child, env, listen_fd)
            return
        policy = w.policy
        if len(policy.crashes) + 1 >= policy.max_restarts:
            return                            # the next exit may be the crash loop's: the engine decides
        min_uptime = 0.0 if policy.delay_for(policy.streak) == 0 else STABLE_UPTIME
        cfg = w.cfg
        if w.group.spawner.approve(child.pid, cfg.command, str(cfg.cwd), env, listen_fd, cfg.run_as, min_uptime):
            self.pid = child.pid

    def revoke(self) -> None:
        """Before the engine signals the process itself."""
        pid = self.pid
        self.ended()
        if pid is not None:
            self.worker.group.spawner.revoke(pid)

    def ended(self) -> None:
        """The process is gone (its approval used or not), or a new one starts."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.pid = None

    def discard(self, child: Child) -> None:
        """End a restart the helper made as approved that the engine does not want now."""
        cfg = self.worker.cfg
        self.worker.group.spawner.end_unwanted(child, cfg.stop_signal, cfg.stop_timeout)
        self.worker.group.event(self.worker, f"pid {child.pid}, restarted by the spawner helper as approved, "
                                             "ended: not wanted any more")
