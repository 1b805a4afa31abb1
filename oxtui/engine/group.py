"""One [processes.NAME]: its instances, scaling, and the rolling-reload state machine."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..oxfile.config import ProcessConfig
from ..protocol import ExitRecord, ProcessSnapshot, ReloadWhy, WorkerState
from .deps import verdict
from .envfiles import EnvNames
from .errors import CommandError, UsageError
from .logs import LogBatch
from .reload import Carried, RollingReload, TaskRun
from .schedule import Scheduler
from .snapshots import process_snapshot
from .sockets import ListenError, bind_listener
from .spawn import Spawner
from .watch import WatchSpec, watch_loop
from .worker import Worker

if TYPE_CHECKING:
    from .events import EventHub
    from .logs import LogHub


class GroupHost(Protocol):
    """All a process group may use of its engine (the engine satisfies it; the group never imports it)."""

    logs: LogHub
    events: EventHub
    spawner: Spawner
    base_env: dict[str, str]
    @property
    def groups(self) -> Mapping[str, ProcessGroup]: ...     # the others: depends_on reads their workers

    def socket_changed(self, group: ProcessGroup) -> None: ...

    @property
    def stopping(self) -> bool: ...
    def changed(self) -> None: ...


EXITS_KEPT = 50
# The event an exit is published as (the notifications' "crash" covers every unexpected cause).
EXIT_EVENTS = {"crash": "crash", "not_found": "crash", "killed": "crash", "oom": "oom", "max_memory": "max_memory",
               "health": "health", "reload": "stop", "stopped": "stop"}


class ProcessGroup:
    def __init__(self, engine: GroupHost, cfg: ProcessConfig, sock: socket.socket | None):
        self.engine, self.cfg, self.name = engine, cfg, cfg.name
        self.sock = sock
        self.target = cfg.instances
        self.release = 1
        self.workers: dict[int, Worker] = {}
        self.extra: list[Worker] = []            # reload surge instance and canary, while they exist
        self.reload: RollingReload | TaskRun | Carried | None = None
        self._reload_task: asyncio.Task[bool] | None = None
        self._watch_pending = False
        self._watch_task: asyncio.Task[None] | None = None
        self.schedule: Scheduler | None = None
        self.carried_schedule: dict | None = None    # anchor and last run, from the engine we took over from
        self.deps_pending = False          # its workers wait for depends_on (the engine settles it)
        self.exits: deque[ExitRecord] = deque(maxlen=EXITS_KEPT)
        self.exit_causes: Counter[str] = Counter()      # every exit since the engine started, by cause
        self.reload_results: Counter[str] = Counter()   # rolling reloads: "done" / "failed"
        self.last_reload_seconds: float | None = None
        self._blocked_said: str | None = None
        self.env_names = EnvNames()
        self.log = engine.logs.open(cfg.name)

    # ---- what workers use (worker.WorkerHost: the whole of it) -------------------------------

    @property
    def listen_fd(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    @property
    def base_env(self) -> dict[str, str]:
        return self.engine.base_env

    @property
    def spawner(self) -> Spawner:
        return self.engine.spawner

    def event(self, who: Worker | None, text: str) -> None:
        self.engine.logs.emit(self.name, None if who is None else who.log_instance, "event", [text])
        self.changed()

    def output(self, who: Worker, stream: str, blob: bytes) -> LogBatch:
        return self.engine.logs.emit_bytes(self.name, who.log_instance, stream, blob, who.pid)

    def changed(self) -> None:
        self.engine.changed()

    def publish(self, who: Worker | None, event: str, text: str, **fields: Any) -> None:
        self.engine.events.publish(event, self.name, None if who is None else who.log_instance,
                                   None if who is None else who.last_pid, text, **fields)

    def record_exit(self, who: Worker, record: ExitRecord) -> None:
        self.exits.append(record)
        self.exit_causes[record["cause"]] += 1
        how = f"signal {record['signal']}" if record["signal"] else f"code {record['code']}"
        text = f"exited ({record['cause']}: {how}" + (f", {record['note']}" if record["note"] else "") + ")"
        event = EXIT_EVENTS.get(record["cause"], "crash")
        fields = {k: v for k, v in record.items() if k not in ("instance", "pid", "at")}
        self.engine.events.publish(event, self.name, who.log_instance, record["pid"], text, at=record["at"],
                                   role=who.role, **fields)

    def all_workers(self) -> list[Worker]:
        """The slots' workers plus a reload's surge instance and canary."""
        return list(self.workers.values()) + self.extra

    # ---- commands -------------------------------------------------------------------------

    def new_worker(self, slot: int, role: str | None = None, listen_fd: int | None = None) -> Worker:
        return Worker(self, slot, self.cfg, self.release, role=role, listen_fd=listen_fd)

    def boot(self) -> None:
        """Start as the engine (or an apply) first does: a scheduled task waits for its first tick."""
        if self.cfg.schedule is not None and self.cfg.is_task:
            for slot in range(self.target):
                self._slot_worker(slot).wait(f"scheduled ({self.cfg.schedule.text})")
            self.changed()
            return
        self.start()

    def hold(self, reason: str) -> None:
        """Leave it stopped at the engine's start, saying why (disabled, or not in up --only)."""
        for slot in range(self.target):
            self._slot_worker(slot).reason = reason
        self.changed()

    def _slot_worker(self, slot: int) -> Worker:
        worker = self.workers.get(slot)
        if worker is None:
            worker = self.workers[slot] = self.new_worker(slot)
        return worker

    def start(self) -> None:
        if self.target:
            self._ensure_socket()
        v = verdict(self.cfg.depends_on, self.engine.groups)
        self.deps_pending = not v.holds
        for slot in range(self.target):
            worker = self._slot_worker(slot)
            if v.holds:
                if worker.state in (WorkerState.WAITING, WorkerState.STOPPED):
                    worker.reason = None
                worker.start()
            elif worker.idle:
                worker.wait(v.reason or "waiting")
        if v.holds:
            self._blocked_said = None
        else:
            self._tell_blocked(v.blocked)
        self.changed()

    def settle(self) -> None:
        """Something changed elsewhere: start the waiting instances once depends_on holds."""
        if not self.deps_pending or self.engine.stopping:
            return
        v = verdict(self.cfg.depends_on, self.engine.groups)
        waiting = [w for w in self.workers.values() if w.state == WorkerState.WAITING]
        if v.holds:
            self.deps_pending = False
            self._blocked_said = None
            if waiting:
                self.event(None, f"depends_on holds ({self._deps_text()}); starting")
            for w in waiting:
                w.reason = None
                w.start()
            return
        for w in waiting:
            if w.reason != v.reason:
                w.reason = v.reason
                self.changed()
        self._tell_blocked(v.blocked)

    def _tell_blocked(self, blocked: str | None) -> None:
        if blocked and blocked != self._blocked_said:
            self._blocked_said = blocked
            self.event(None, f"will not start: {blocked}")

    def _deps_text(self) -> str:
        return ", ".join(f"{n} {c}" for n, c in self.cfg.depends_on)

    async def stop(self, release: bool = False) -> None:
        """Stop every instance; with `release` (a stop asked for, not a restart) also close the port."""
        self.deps_pending = False
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_task.cancel()
            await asyncio.gather(self._reload_task, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self.all_workers()))
        if release:
            self._release_socket()

    # A port nobody serves is closed, so clients are refused at once instead of waiting in the
    # backlog until they time out (a 503 is not the engine's to send). It is bound again on start.
    def _ensure_socket(self) -> None:
        if self.sock is None and self.cfg.listen is not None:
            try:
                self.sock = bind_listener(*self.cfg.listen)
            except ListenError as e:
                raise CommandError(f"{self.name}: cannot listen on {self.cfg.listen_str} again ({e}); "
                                   "free the port, then start it") from None
            self.engine.socket_changed(self)
            self.event(None, f"listening on {self.cfg.listen_str} again")

    def _release_socket(self) -> None:
        if self.sock is not None and self.cfg.listen is not None:
            self.sock.close()
            self.sock = None
            self.engine.socket_changed(self)     # the keeper's copy too, or the port would stay open
            self.event(None, f"nothing serves {self.cfg.listen_str}: port closed, new connections are refused")

    async def close(self) -> None:
        """Stop for good (engine shutdown, or the process left the oxfile): watcher, workers, socket."""
        self.stop_watch()
        self.stop_schedule()
        await self.stop()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self.engine.socket_changed(self)

    async def restart(self) -> None:
        self.refuse_during_reload("restart")
        await self.stop()
        for w in self.workers.values():
            w.restarts += 1
        self.start()

    async def scale(self, n: int) -> tuple[int, int]:
        if n < 0:
            raise UsageError(f"{self.name}: cannot scale below 0 instances (asked for {n})")
        self.refuse_during_reload("scale")
        before = self.target
        self.target = n
        self.event(None, f"scaling {before} -> {n}")
        self.publish(None, "scale", f"scaling {before} -> {n}", before=before, instances=n)
        if n > before:
            if self.cfg.schedule is not None and self.cfg.is_task:
                self.boot()       # the new instances join the next scheduled run
            else:
                self.start()
        else:
            doomed = [self.workers.pop(s) for s in sorted(self.workers) if s >= n]
            self.changed()
            await asyncio.gather(*(w.stop() for w in doomed))
            if n == 0:
                self._release_socket()
        self.changed()
        return before, n

    def kill(self, slot: int, sig: signal.Signals) -> int:
        worker = self.workers.get(slot)
        if worker is None:
            raise UsageError(f"{self.name} has no instance {slot} (instances: 0-{self.target - 1})"
                             if self.target else f"{self.name} has no instances; scale it up first")
        pid = worker.pid
        if not worker.kill(sig):
            raise CommandError(f"{self.name}.{slot} is not running (state: {worker.state})")
        assert pid is not None
        return pid

    def refuse_during_reload(self, what: str) -> None:
        if self.reload is not None and self.reload.active:
            raise CommandError(f"{self.name}: a rolling reload is in progress (slot {self.reload.slot}); "
                               f"{what} it when the reload is done")

    # ---- schedule -------------------------------------------------------------------------

    def start_schedule(self, anchor: float | None = None) -> None:
        self.stop_schedule()
        if self.cfg.schedule is not None:
            last = self.schedule.last_run if self.schedule is not None else None
            owed = None
            if self.carried_schedule is not None:
                anchor, last = self.carried_schedule["anchor"], self.carried_schedule["last_run"]
                owed = last["at"] if last is not None else anchor
                self.carried_schedule = None
            self.schedule = Scheduler(self.cfg.schedule, self._tick, self.changed, anchor, owed)
            self.schedule.last_run = last

    def stop_schedule(self) -> None:
        if self.schedule is not None:
            self.schedule.stop()

    def _tick(self) -> None:
        assert self.schedule is not None
        at = time.time()
        why = None
        if self.engine.stopping:
            return
        v = verdict(self.cfg.depends_on, self.engine.groups)
        if not v.holds:
            why = v.reason
        elif self.target == 0:
            why = "it has 0 instances"
        elif self.reload is not None and self.reload.active:
            why = "the last run is still going" if self.cfg.is_task else "a reload is still running"
        elif self.cfg.is_task and any(not w.idle for w in self.workers.values()):
            why = "the last run is still going"
        if why is None:
            try:
                task = self.begin_reload(why="schedule")
            except CommandError as e:        # refused: this tick is skipped, the timetable goes on
                why = str(e)
        if why is not None:
            self.schedule.last_run = {"at": at, "result": "skipped", "reason": why}
            self.event(None, f"schedule: tick skipped: {why}")
            return
        run = self.schedule.last_run = {"at": at, "result": "running", "reason": None}
        if not self.cfg.is_task:
            self.event(None, f"schedule: rolling reload ({self.schedule.sched.text})")

        def done(t: asyncio.Task[bool]) -> None:
            if t.cancelled():
                run.update(result="cancelled")
            else:
                run.update(result=("completed" if self.cfg.is_task else "reloaded") if t.result() else "failed",
                           reason=self.reload.reason if self.reload is not None else None)
            self.changed()
        task.add_done_callback(done)

    # ---- watch ----------------------------------------------------------------------------

    def start_watch(self) -> None:
        self.stop_watch()
        if not self.cfg.watch:
            return
        spec = WatchSpec(self.cfg.cwd, self.cfg.watch, self.cfg.ignore, (self.engine.logs.dir,))
        self._watch_task = asyncio.get_running_loop().create_task(
            watch_loop(spec, self.cfg.watch_debounce, self._on_watch, lambda text: self.event(None, text)),
            name=f"watch {self.name}")

    def stop_watch(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None

    def _on_watch(self, paths: list[str]) -> None:
        first = os.path.relpath(paths[0], self.cfg.cwd)
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        if self.reload is not None and self.reload.active:
            self._watch_pending = True
            self.event(None, f"watch: {first}{more} changed; reloading again after the current reload")
            return
        self.event(None, f"watch: {first}{more} changed; rolling reload")
        self.begin_reload()

    def _after_reload(self, task: asyncio.Task[bool]) -> None:
        rl = self.reload
        if isinstance(rl, RollingReload) and rl.state in ("done", "failed"):
            self.reload_results[rl.state] += 1
            self.last_reload_seconds = (rl.finished or time.time()) - rl.started
        if self._watch_pending and not self.engine.stopping:
            self._watch_pending = False
            self.event(None, "watch: files changed during the reload; reloading again")
            self.begin_reload()

    async def scheduled_reload_done(self) -> None:
        """Wait for a rolling reload that a schedule's tick started, if one runs (a reload asked for by
        someone then replaces the instances again, with what is on disk now)."""
        if self.reload is not None and self.reload.active and self.reload.why == "schedule" \
                and not self.cfg.is_task and self._reload_task is not None:
            await asyncio.gather(asyncio.shield(self._reload_task), return_exceptions=True)

    def begin_reload(self, progress: Callable[[str], None] | None = None, why: ReloadWhy = "reload") -> asyncio.Task[bool]:
        """Start a rolling reload (for a task: a run of every instance); the task's result is True when every
        slot was replaced (every instance completed)."""
        if self.engine.stopping:
            raise CommandError("the engine is stopping; nothing to reload")
        if self.reload is not None and self.reload.active:
            raise CommandError(f"{self.name}: a rolling reload is already running (slot {self.reload.slot}); "
                               "wait for it to finish")
        if self.deps_pending:
            raise CommandError(f"{self.name} has not started yet: {self._deps_text()} must hold first "
                               f"(oxtui status {self.name} says what it waits for)")
        if self.cfg.is_task:
            self.reload = TaskRun(self, self.release, progress, why)
            self._reload_task = asyncio.get_running_loop().create_task(self.reload.run(), name=f"run {self.name}")
            self.changed()
            return self._reload_task
        if self.target:
            self._ensure_socket()
        self.release += 1
        self.reload = RollingReload(self, self.release, progress, why)
        self._reload_task = asyncio.get_running_loop().create_task(self.reload.run(), name=f"reload {self.name}")
        self._reload_task.add_done_callback(self._after_reload)
        self.changed()
        return self._reload_task

    # ---- status ---------------------------------------------------------------------------

    def snapshot(self) -> ProcessSnapshot:
        return process_snapshot(self)
