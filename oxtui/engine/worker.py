"""One instance of a process: its lifecycle as an explicit state machine.

    stopped -> starting -> running -> stopping -> stopped
                  |           |
                  +-- exit ---+--> backoff -> starting ...   (restart = "always", or a failure with "on-failure")
                              +--> completed | failed         (a task: restart = "never", or exit 0 with "on-failure")
                              +--> exited                     (a reload's surge instance or canary)
                              +--> errored                    (crash loop: waits for start/restart)

A Worker owns one supervising task. Everything it waits on (exit, readiness, health, stop request)
is a future or a task of its own, so a slow probe elsewhere never delays it. A worker has a pid
exactly while it is starting, running or stopping: from the moment its process is gone it shows the
state it goes to next, while the last output drains and the exit is recorded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from ..oxfile.config import ProcessConfig
from ..oxfile.values import program_of
from ..protocol import LIVE_STATES, ExitCause, ExitRecord, Health, WorkerState
from .approval import Approval
from .backoff import RestartPolicy
from .commandline import instance_env
from .envfiles import read_env_files
from .exits import account, oom_counters, restarts_after, state_after_exit
from .liveness import become_ready, health_loop
from .output import Output
from .procgroup import end_group, kill_group, signal_process, still_child_of
from .spawn import Child, SpawnError, describe_status

if TYPE_CHECKING:
    from .logs import LogBatch
    from .metrics import Member
    from .spawn import Spawner


class WorkerHost(Protocol):
    """All a worker may use of its process group; it never reaches further up (to the engine)."""

    @property
    def base_env(self) -> dict[str, str]: ...
    @property
    def listen_fd(self) -> int | None: ...
    @property
    def spawner(self) -> Spawner: ...

    def event(self, who: Worker | None, text: str) -> None: ...
    def output(self, who: Worker, stream: str, blob: bytes) -> LogBatch: ...
    def changed(self) -> None: ...
    def publish(self, who: Worker, event: str, text: str, **fields: Any) -> None: ...
    def record_exit(self, who: Worker, record: ExitRecord) -> None: ...


LOST_EXIT_CHECK = 5.0  # s after a stop's SIGKILL between looks at whether the process is gone unreported
KILLED_STATUS = 0x09   # the wait status of a SIGKILLed process
HISTORY = 20           # readiness and health changes kept per worker (the details screen)


class Worker:
    def __init__(self, group: WorkerHost, slot: int, cfg: ProcessConfig, release: int, role: str | None = None,
                 listen_fd: int | None = None):
        self.group, self.slot, self.cfg, self.release = group, slot, cfg, release
        self.role = role                         # None, "surge" (reload replacement) or "canary"
        self._listen_fd = listen_fd              # the canary's private socket instead of the shared one
        self.state: WorkerState = WorkerState.STOPPED
        self.pid: int | None = None              # the live process, None between processes
        self.last_pid: int | None = None         # the most recent process, alive or not
        self.restarts = 0
        self.started_at: float | None = None     # monotonic start of the current process
        self.exit_code: int | None = None
        self.exit_signal: str | None = None
        self.reason: str | None = None           # why it last restarted or gave up
        self.health: Health | None = None        # None while unchecked
        self.health_passed = False               # a probe has passed since this process started
        self.cpu_percent: float | None = None
        self.rss_bytes: int | None = None
        self.tree: tuple[Member, ...] = ()       # its processes, when its tree has more than one (metrics.py)
        self.cpu_seconds = 0.0                   # over every process this slot has had (a counter)
        self.last_exit: ExitRecord | None = None  # survives restarts
        self.out = Output(lambda stream, blob: group.output(self, stream, blob), self._on_lines)
        self._stop_cause: ExitCause | None = None       # what kind of stop or restart oxtui asked for
        self._oom_before: tuple[int | None, int | None] = (None, None)
        self._exit_heard: tuple[int, int] | None = None
        # readiness and health changes, as [at, text] lists: the JSON form, so that a snapshot (1000
        # workers, every second with a viewer) copies references instead of converting each entry
        self.checks: deque[list] = deque(maxlen=HISTORY)
        self.policy = RestartPolicy.of(cfg)
        self.ready = asyncio.Event()             # set while the current process is ready
        self.ended = asyncio.Event()             # set when the current process has exited
        self._want = False
        self._stop = asyncio.Event()
        self._restart_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._child: Child | None = None
        self._spawning: asyncio.Task[Child] | None = None     # a spawn asked of the helper, not answered yet
        self.cwd: str | None = None       # where its process was started (None: adopted, read from /proc)
        self._exited: asyncio.Future[int] | None = None
        self.approval = Approval(self)

    # ---- commands -------------------------------------------------------------------------

    def start(self) -> None:
        """Run (again) and keep running; also takes an errored or exited worker out of its park."""
        self._want = True
        if self._task is None or self._task.done():
            self._stop_cause = None
            self.policy.reset()
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"worker {self.label}")

    def use(self, cfg: ProcessConfig) -> None:
        """Run with these settings from the next start on (only between processes)."""
        if self.idle and cfg != self.cfg:
            self.cfg, self.policy = cfg, RestartPolicy.of(cfg)

    def wait(self, reason: str) -> None:
        """Park a worker that is not running as waiting (for its dependencies, or its schedule)."""
        if self._task is None or self._task.done():
            self.reason = reason
            self._set(WorkerState.WAITING)

    async def finished(self) -> None:
        """Wait until the supervising task ends (a task's run is over, or the worker was stopped)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def idle(self) -> bool:
        """No process and no supervising task: start() would launch one."""
        return self._task is None or self._task.done()

    async def stop(self, cause: ExitCause = "stopped") -> None:
        """Stop gracefully (stop_signal, stop_timeout, then SIGKILL of the group) and wait. `cause` goes
        into the exit record: "stopped" on request, "reload" when a reload drains it."""
        if self.state == WorkerState.WAITING:
            self._set(WorkerState.STOPPED)
        if self._stop_cause is None:
            self._stop_cause = cause
        self._want = False
        self._stop.set()
        if self._spawning is not None:
            # Not forked yet (it waits for the spawn window, or the helper has not answered): a scale
            # from 5,000 back to 2 is obeyed at once, not after 4,998 forks and kills. A fork the helper
            # makes meanwhile is ended when its answer comes (Spawner._end_abandoned).
            self._spawning.cancel()
        if self._task is not None:
            await asyncio.shield(self._task)

    def restart(self, reason: str, cause: ExitCause = "health") -> None:
        """Replace the running process (gracefully), as after a crash; `cause` ("health", "max_memory")
        goes into the exit record."""
        if self._child is not None and self.state in (WorkerState.STARTING, WorkerState.RUNNING):
            self._restart_reason = reason
            self._stop_cause = cause
            self._stop.set()

    def kill(self, sig: signal.Signals) -> bool:
        child = self._child
        if self.pid is None or child is None or self.state not in LIVE_STATES:
            return False
        if not signal_process(child.pid, sig, child.parent):
            return False
        self.group.event(self, f"sent {sig.name} to pid {self.pid}")
        return True

    def kill_group(self, sig: signal.Signals) -> None:
        if self._child is not None:
            self.approval.revoke()
            kill_group(self._child.pid, sig, self._child.parent)

    @property
    def log_instance(self) -> int:
        """The instance number in log lines: -1 marks the reload canary."""
        return -1 if self.role == "canary" else self.slot

    @property
    def label(self) -> str:
        return f"{self.cfg.name}.{self.role if self.role == 'canary' else self.slot}"

    @property
    def exit_text(self) -> str:
        return f"signal {self.exit_signal}" if self.exit_signal else f"code {self.exit_code}"

    def tail_lines(self) -> list[str]:
        """The last lines the current (or last) process printed, secrets hidden."""
        return self.out.tail_lines()

    def uptime(self) -> float | None:
        if self.started_at is None or self.state not in LIVE_STATES:
            return None
        return time.monotonic() - self.started_at

    def _env(self) -> dict[str, str]:
        # .env files are read at every start, so editing one and reloading is how a secret rotates.
        from_files = read_env_files(self.cfg.env_files)
        # Their values are secrets: an exit record's last lines (status, events, webhooks) never carry them.
        self.out.secrets = sorted({v for _, v in from_files if len(v) >= 6}, key=len, reverse=True)
        run_as = self.cfg.run_as
        return instance_env(self.group.base_env, self.cfg.name, self.slot, from_files + self.cfg.env, self.cfg.listen,
                            (run_as.user, run_as.home) if run_as else None, self.role == "canary")

    # ---- what liveness.py uses ------------------------------------------------------------

    def current(self) -> Child | None:
        return self._child

    def changed(self) -> None:
        self.group.changed()

    def probe_env(self) -> dict[str, str]:
        return self._env()

    def note(self, text: str) -> None:
        self.checks.append([round(time.time(), 3), text])

    def mark_ready(self) -> None:
        if self.state == WorkerState.STARTING:
            self._now_ready()

    def _now_ready(self) -> None:
        if self.started_at is not None:
            self.note(f"pid {self.pid} ready after {time.monotonic() - self.started_at:.1f}s")
        self.ready.set()
        self._set(WorkerState.RUNNING)
        if self.cfg.health is not None and self._child is not None:
            asyncio.get_running_loop().create_task(health_loop(self, self._child))

    def _on_lines(self, batch: LogBatch) -> None:
        log = self.cfg.ready.log if self.cfg.ready is not None else None
        if log is not None and self.state == WorkerState.STARTING and not self.ready.is_set() \
                and any(log.search(line) for line in batch.lines):
            self.mark_ready()

    # ---- supervision ----------------------------------------------------------------------

    def _set(self, state: WorkerState) -> None:
        self.state = state
        self.group.changed()

    def adopt(self, info: dict, child: Child | None) -> None:
        """Carry on from the engine we took over from: the same process, counters and state."""
        self.restarts, self.reason = info["restarts"], info["reason"]
        self.exit_code, self.exit_signal = info["exit_code"], info["exit_signal"]
        self.last_pid = info["pid"]
        if child is not None:
            self._want = True
            self._stop = asyncio.Event()
            ready = info["state"] == WorkerState.RUNNING
            self._task = asyncio.get_running_loop().create_task(self._supervise(child, ready),
                                                                name=f"worker {self.label}")
        elif info["state"] == WorkerState.BACKOFF:
            self.start()
        else:
            self.state = WorkerState(info["state"])     # stopped, exited or errored: left as they were

    def keeper_tag(self) -> dict:
        """What the keeper knows of this worker's process: whose it is, and how a stop ends it."""
        return {"group": self.cfg.name, "slot": self.slot, "role": self.role,
                "stop_signal": int(self.cfg.stop_signal), "stop_timeout": self.cfg.stop_timeout}

    def handover_info(self) -> dict | None:
        """What a new engine needs to carry on with this worker; None when its process has just
        ended and this engine has not caught up yet (the hand-over must wait)."""
        if self._child is not None and (self._exited is None or self._exited.done()):
            return None       # its process is gone and its exit not yet recorded
        fds = self.out.fds() if self._child is not None else {"out": -1, "err": -1}
        return {"slot": self.slot, "state": self.state, "pid": self.pid, "started": self.started_at,
                "stdout": fds["out"], "stderr": fds["err"], "restarts": self.restarts, "reason": self.reason,
                "exit_code": self.exit_code, "exit_signal": self.exit_signal}

    async def _supervise(self, adopted: Child | None = None, adopted_ready: bool = True) -> None:
        restarted = False
        try:
            while self._want:
                uptime, why = await self._run_once(adopted, adopted_ready, restarted)
                # the helper may have restarted it already, as approved (approval.py)
                adopted = self.group.spawner.replacements.pop(self.last_pid, None)  # type: ignore[arg-type]
                adopted_ready, restarted = False, adopted is not None
                if why == "stop" or not self._want:
                    break
                # A reload's replacement or canary that dies is a failed release: never retried.
                if why is None and self.role is not None:
                    self._want = False
                    self._set(WorkerState.EXITED)
                    return
                if why is None and not self._restarts_after_exit():
                    self._want = False
                    done = self.exit_code == 0 and self.exit_signal is None
                    self._set(WorkerState.COMPLETED if done else WorkerState.FAILED)
                    self.group.event(self, "completed" if done else f"failed ({self.exit_text})")
                    return
                delay = self.policy.on_exit(uptime)
                if delay is None:
                    self._want = False
                    self.reason = (f"crash loop: exited {self.policy.max_restarts} times within "
                                   f"{self.policy.window:g}s; fix it, then start or restart")
                    self.group.event(self, f"errored: {self.reason}")
                    self.group.publish(self, "errored", f"errored: {self.reason}", reason=self.reason)
                    self._set(WorkerState.ERRORED)
                    return
                if delay > 0 and not restarted:
                    self._set(WorkerState.BACKOFF)
                    self.group.event(self, f"restarting in {delay:.2f}s")
                    try:
                        await asyncio.wait_for(self._stop.wait(), delay)
                    except TimeoutError:
                        pass
                    if not self._want:
                        break
                    self._stop.clear()
                self.restarts += 1
            self._set(WorkerState.STOPPED)
        except asyncio.CancelledError:
            await self._kill_now()
            self._set(WorkerState.STOPPED)
            raise
        finally:
            if adopted is not None and adopted.pid != self.last_pid:
                self.approval.discard(adopted)      # an approved restart that was not run: a stop crossed it

    def _restarts_after_exit(self) -> bool:
        return restarts_after(self.cfg.restart, self.exit_code, self.exit_signal)

    async def _run_once(self, adopted: Child | None = None, adopted_ready: bool = True,
                        restarted: bool = False) -> tuple[float, str | None]:
        """Start one process (or carry on with an adopted one, ready or still starting, or with the one the
        helper has just `restarted` as approved) and wait for it to end.

        Returns (uptime, why): why is "stop" for a requested stop, a reason string for a restart the
        engine asked for (readiness timeout, memory, health), None for an exit on its own.
        """
        loop = asyncio.get_running_loop()
        self.ready.clear()
        self.ended.clear()
        self.health = None
        self.health_passed = False
        env = self._env()
        listen_fd = self._listen_fd if self._listen_fd is not None else self.group.listen_fd
        spawner = self.group.spawner
        if adopted is None:
            # starting from now, not once the helper has answered: a waiting spawn must never look
            # stopped (which counts as settled for READY=1, `oxtui up` and the reload's checks)
            self._set(WorkerState.STARTING)
            # resolved once, here: status tells which release it runs from (a switched `current` moves no process)
            self.cwd = os.path.realpath(self.cfg.cwd)
            self._spawning = loop.create_task(spawner.spawn(self.cfg.command, self.cwd, env, listen_fd,
                                                            self.cfg.run_as, tag=self.keeper_tag()))
            try:
                child = await self._spawning
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._want or (task is not None and task.cancelling()):
                    raise                   # this worker's own task is being cancelled, not only its spawn
                self.ended.set()            # stopped before it had a process: nothing ran, nothing to stop
                return 0.0, "stop"
            except (SpawnError, OSError) as e:
                self.exit_code, self.exit_signal, self.pid = 127, None, None
                self.group.event(self, f"cannot start: {e}")
                self.ended.set()
                return 0.0, None
            finally:
                self._spawning = None
        else:
            child = adopted
        self._child = child
        self._oom_before = oom_counters()
        self.pid = self.last_pid = child.pid
        self.started_at = child.started
        self.exit_code = self.exit_signal = None
        self.cpu_percent = self.rss_bytes = None
        self.tree = ()
        exited = self._exited = spawner.exited(child.pid)
        self.out.follow(loop, child)
        self.approval.arm_later(child, env, listen_fd)
        helpers = []
        if adopted is None or restarted:
            self._set(WorkerState.STARTING)
            text = f"started pid {child.pid}" + (f" (restart #{self.restarts})" if self.restarts else "")
            self.group.event(self, text)
            # a restart's timeline (bench/restart_timeline.py): the last exit's times, then this spawn's
            timeline = dict(zip(("exit_reaped_by_helper", "exit_heard_by_engine"), self._exit_heard or ()))
            self.group.publish(self, "start", text, restarts=self.restarts,
                               timeline={**timeline, **(child.timeline or {})})
            helpers.append(loop.create_task(become_ready(self, child)))
        elif adopted_ready:
            self._now_ready()       # it was ready under the engine we took over from
        else:
            self._set(WorkerState.STARTING)       # it was still starting: its readiness is watched from here
            helpers.append(loop.create_task(become_ready(self, child)))
        stop_wait: asyncio.Future[Any] = loop.create_task(self._stop.wait())
        try:
            await asyncio.wait([exited, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            why: str | None
            if exited.done():
                why = None
            else:
                why = self._restart_reason or "stop"
                self._restart_reason = None
                if why != "stop":
                    self._stop.clear()
                await self._terminate(child, exited)
        finally:
            self.approval.ended()
            for t in helpers + [stop_wait]:
                t.cancel()
            self.ready.clear()
        uptime = time.monotonic() - child.started
        self._exit_heard = spawner.exit_times.pop(child.pid, None)
        self.exit_code, self.exit_signal = describe_status(exited.result())
        self.pid = None
        self.cpu_percent = self.rss_bytes = None    # a process that is gone uses nothing: "-", not its last sample
        self.tree = ()
        self._set(state_after_exit(self.cfg.restart, self.role, self.exit_code, self.exit_signal, why))
        await end_group(child.pid, self.cfg.stop_timeout if why == "stop" else 0.0)
        self._child = None
        # What it wrote before it died (a traceback) belongs in the exit record and before the exit event.
        await self.out.drained()
        self.ended.set()
        self._report_exit(child.pid, uptime, why)
        return uptime, why

    def _report_exit(self, pid: int, uptime: float, why: str | None) -> None:
        """The exit record (status, the details screen), then the event line."""
        task_done = why is None and not self._restarts_after_exit()
        said = account(pid, uptime, self.exit_code, self.exit_signal, why, self._stop_cause, self._oom_before,
                       task_done, self.tail_lines(), program_of(self.cfg.command))
        self._stop_cause = None
        record: ExitRecord = {"at": round(time.time(), 3), "pid": pid, "code": self.exit_code,
                              "signal": self.exit_signal, "cause": said.cause, "note": said.note,
                              "uptime_s": round(uptime, 3), "instance": self.slot, "release": self.release,
                              "tail": self.tail_lines()}
        if self.role is None:
            self.last_exit = record
        self.group.record_exit(self, record)
        self.reason = said.reason or self.reason
        self.group.event(self, said.event)

    async def _terminate(self, child: Child, exited: asyncio.Future[int]) -> None:
        self._set(WorkerState.STOPPING)
        self.approval.revoke()
        sig = self.cfg.stop_signal
        kill_group(child.pid, sig, child.parent)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.cfg.stop_timeout)
        except TimeoutError:
            self.group.event(self, f"pid {child.pid} ignored {sig.name} for {self.cfg.stop_timeout:g}s: SIGKILL")
            kill_group(child.pid, signal.SIGKILL, child.parent)
            # Its end comes from the keeper. Should that report never come (it went to an engine that
            # died before reading it), a stop must still end: a pid that is no longer the keeper's
            # child has ended, whatever was said about it.
            while not exited.done():
                try:
                    await asyncio.wait_for(asyncio.shield(exited), LOST_EXIT_CHECK)
                except TimeoutError:
                    if not still_child_of(child.pid, child.parent):
                        self.group.event(self, f"pid {child.pid} is gone and its end was never reported: "
                                               "taken as killed")
                        self.group.spawner.ended_meanwhile(child.pid, KILLED_STATUS)

    async def _kill_now(self) -> None:
        child = self._child
        if child is not None:
            self.approval.revoke()
            kill_group(child.pid, signal.SIGKILL, child.parent)   # the spawner helper reaps it
            self._child = None
