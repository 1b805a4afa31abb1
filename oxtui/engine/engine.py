"""The engine: owns every process group, takes commands, publishes snapshots and log batches.

An asyncio library with no UI import. `oxtui run` drives it on the main thread; the TUI runs it
on a thread of its own. Commands arrive through `execute()`, the same entry the control socket
uses, so a script and a key press do exactly the same thing.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import time
from typing import Any, Callable

from ..config import Config, ProcessConfig, digest
from ..format import hint
from ..protocol import LIVE_STATES, Snapshot, WorkerState
from ..runtime import hold_dir, lock_path, write_lock
from .alerts import Alerts
from .errors import CommandError
from .events import EventHub
from .group import ProcessGroup
from .heap import Trimmer
from .logs import LogHub
from .metrics import Sampler, Usage
from .sdnotify import Notifier, systemd_unit, under_systemd
from .sockets import ListenError, bind_listener
from .spawn import Spawner

METRICS_INTERVAL = 1.0
# With nobody looking (no UI, no recent status), sample less often: an idle engine with 64 workers
# then costs a quarter of the CPU. max_memory is still enforced, within this many seconds.
METRICS_IDLE_INTERVAL = 5.0
# Past this many workers a sample comes less often than every second: N / this seconds (2 s at
# 1000). A sample costs about 10 µs of /proc reading per process, and each one makes a snapshot that
# a viewer re-reads; with 1000 workers and a TUI, this halves engine + TUI CPU. htop's default is 1.5 s.
WORKERS_PER_SECOND = 500
LOOKED_AT_RECENTLY = 5.0
FLUSH_INTERVAL = 0.2


class EngineError(Exception):
    """The engine cannot start; the message says why and what to do."""


class Engine:
    def __init__(self, config: Config, *, control: bool = True):
        self.config = config
        self.logs = LogHub(config.logs.dir, config.logs.max_size, config.logs.keep, config.logs.buffer_lines)
        self.events = EventHub()
        self.alerts = Alerts(self)
        self.exporter: Any = None
        self.groups: dict[str, ProcessGroup] = {}
        self.base_env = dict(os.environ)
        self.started_at = time.time()
        self.usage = Usage(0.0, 0)
        self.listeners: list[Callable[[], None]] = []
        self._control_enabled = control
        self._control = None
        self._lock_fd: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._applying = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self.logs.on_pending = self._flush_soon
        self.viewers = 0                   # UIs showing live metrics (embedded TUI, attached TUIs)
        self._looked_at = time.monotonic() - LOOKED_AT_RECENTLY
        self._wake_metrics = asyncio.Event()
        self.stopped = asyncio.Event()
        self.spawner = Spawner()
        self.service = Notifier(os.environ)
        self._dir_fd: int | None = None
        self._disk_key: tuple | None = None
        self._disk_changed = False
        self._settling = False

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every socket, start every process, serve the control socket.

        Raises EngineError (nothing left running) when an engine already runs for this oxfile or an
        address cannot be bound.
        """
        self._take_lock()
        socks: dict[str, socket.socket] = {}
        try:
            for p in self.config.processes:
                if p.listen is not None:
                    try:
                        socks[p.name] = bind_listener(*p.listen)
                    except ListenError as e:
                        raise EngineError(f"{self.config.path}: [processes.{p.name}] listen: {e}") from None
            try:
                self.logs.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                for p in self.config.processes:
                    self.logs.open(p.name)
            except OSError as e:
                raise EngineError(f"{self.config.path}: [logs] dir: cannot write {self.logs.dir} ({e.strerror}); "
                                  "set [logs] dir to a writable folder") from None
            if self._control_enabled:
                from .control import ControlServer
                self._control = ControlServer(self, self.config.path)
                await self._control.start()
        except BaseException:
            for s in socks.values():
                s.close()
            self._release_lock()
            raise
        for p in self.config.processes:
            self.add_group(p, socks.get(p.name))
        for g in self.in_start_order():
            g.boot()
        self._run_loops()

    async def adopt(self, channel_fd: int) -> None:
        """Start by taking over a running engine's workers (see handover.py) instead of starting any."""
        from .handover import adopt
        try:
            await adopt(self, channel_fd)
        except BaseException:
            self._lock_fd = None     # the old engine's lock: not ours to close until we have it all
            raise
        self._run_loops()

    def _run_loops(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._metrics_loop(), name="metrics")]
        for g in self.groups.values():
            g.start_watch()
            g.start_schedule()
        self.service.start(self)
        self.alerts.start()
        if self.config.metrics.listen is not None:
            self._start_metrics()

    def adopt_lock(self, fd: int) -> None:
        self._lock_fd = fd
        self._hold_dir()
        write_lock(fd, self.config.path)

    async def serve_control(self, inherited: socket.socket) -> None:
        from .control import ControlServer
        self._control = ControlServer(self, self.config.path)
        await self._control.start(inherited)

    def hand_over(self) -> int:
        """Move every worker into a new background engine process (see handover.py); returns its pid.
        Blocks this loop; on success the caller must never run this engine again."""
        from .handover import hand_over
        return hand_over(self)

    async def shutdown(self) -> None:
        """Stop every worker gracefully, then close sockets, logs and the control socket."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self.service.stopping()
        self.alerts.close()
        if self.exporter is not None:
            self.exporter.close()
        for t in self._tasks:
            t.cancel()
        try:
            for level in self.stop_levels(list(self.groups.values())):
                await asyncio.gather(*(g.close() for g in level))
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._control is not None:
                await self._control.close()
            for g in self.groups.values():
                g.stop_watch()
                if g.sock is not None:
                    g.sock.close()
            self.spawner.close()
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self.logs.close()
            self._release_lock()
            self.stopped.set()

    def force_kill(self) -> None:
        """SIGKILL every instance's process group now (a second Ctrl-C); shutdown() then finishes fast."""
        for g in self.groups.values():
            for w in g.all_workers():
                w.kill_group(signal.SIGKILL)

    def _take_lock(self) -> None:
        path = lock_path(self.config.path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").split("\n", 1)[0].strip() or "?"
            os.close(fd)
            raise EngineError(f"{self.config.path}: an engine is already running for this oxfile (pid {other}); "
                              f"see it with `{hint('status', self.config.path)}`, stop it with "
                              f"`{hint('down', self.config.path)}`") from None
        write_lock(fd, self.config.path)
        self._lock_fd = fd
        self._hold_dir()

    def _hold_dir(self) -> None:
        if self._dir_fd is None:
            self._dir_fd = hold_dir()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    # ---- the groups: the one place they are made and removed (start, apply, hand-over) ------

    def add_group(self, cfg: ProcessConfig, sock: socket.socket | None) -> ProcessGroup:
        """A group for cfg, its log file open; not started."""
        self.logs.open(cfg.name)
        group = self.groups[cfg.name] = ProcessGroup(self, cfg, sock)
        return group

    async def remove_group(self, name: str) -> None:
        """Stop the group for good (watcher, workers, socket) and forget it."""
        await self.groups.pop(name).close()

    def use_config(self, config: Config) -> None:
        """What runs now is this config (after an apply or a save)."""
        self.config = config
        self.changed()

    # ---- change notification --------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def applying(self) -> bool:
        return self._applying

    @property
    def lock_fd(self) -> int | None:
        return self._lock_fd

    @property
    def control(self) -> Any:
        return self._control

    def changed(self) -> None:
        if not self._settling and any(g.deps_pending for g in self.groups.values()):
            try:
                asyncio.get_running_loop().call_soon(self._settle)
                self._settling = True
            except RuntimeError:
                pass
        for fn in self.listeners:
            fn()

    def _settle(self) -> None:
        """Start whatever waited for depends_on and may go now (once per burst of changes)."""
        self._settling = False
        for g in self.in_start_order():
            g.settle()

    # ---- start order (depends_on) ---------------------------------------------------------

    def _levels(self) -> dict[str, int]:
        from ..graph import levels
        return levels({name: [d for d, _ in g.cfg.depends_on] for name, g in self.groups.items()})

    def in_start_order(self, groups: list[ProcessGroup] | None = None) -> list[ProcessGroup]:
        """Dependencies before their dependents; otherwise the oxfile's order."""
        lv = self._levels()
        chosen = list(self.groups.values()) if groups is None else groups
        return sorted(chosen, key=lambda g: lv.get(g.name, 0))

    def stop_levels(self, groups: list[ProcessGroup]) -> list[list[ProcessGroup]]:
        """Groups to stop together, dependents first: the reverse of the start order, level by level."""
        lv = self._levels()
        by: dict[int, list[ProcessGroup]] = {}
        for g in groups:
            by.setdefault(lv.get(g.name, 0), []).append(g)
        return [by[k] for k in sorted(by, reverse=True)]

    # ---- background loops -----------------------------------------------------------------

    async def _metrics_loop(self) -> None:
        sampler, trimmer = Sampler(), Trimmer()
        while True:
            workers = [w for g in self.groups.values() for w in g.all_workers()
                       if w.pid is not None and w.state in LIVE_STATES]
            pids = [w.pid for w in workers if w.pid is not None]
            try:
                per_pid, self.usage = await asyncio.to_thread(_sample_and_trim, sampler, trimmer, pids)
            except Exception as e:  # a /proc oddity must never end the metrics loop
                self.logs.emit("oxtui", None, "event", [f"metrics sampling failed: {e}"])
                per_pid = {}
            for w in workers:
                u = per_pid.get(w.pid) if w.pid is not None else None
                if u is None:
                    continue
                w.cpu_percent, w.rss_bytes = u.cpu_percent, u.rss_bytes
                w.cpu_seconds += u.cpu_seconds
                limit = w.cfg.max_memory
                if limit is not None and u.rss_bytes > limit and w.state == WorkerState.RUNNING:
                    w.restart(f"memory {u.rss_bytes / 2**20:.0f} MiB over max_memory {limit / 2**20:.0f} MiB",
                              "max_memory")
            if self.exporter is not None:
                self.exporter.update()
            self.changed()
            self._wake_metrics.clear()
            try:
                interval = METRICS_INTERVAL if self._watched() else METRICS_IDLE_INTERVAL
                await asyncio.wait_for(self._wake_metrics.wait(), max(interval, len(pids) / WORKERS_PER_SECOND))
            except TimeoutError:
                pass

    def _start_metrics(self) -> None:
        from .prom import Exporter
        try:
            self.exporter = Exporter(self, *self.config.metrics.listen)
        except OSError as e:
            self.logs.emit("oxtui", None, "event", [f"[metrics] listen: cannot serve on "
                                                    f"{self.config.metrics.listen}: {e.strerror}; no /metrics"])

    def _watched(self) -> bool:
        return self.viewers > 0 or time.monotonic() - self._looked_at < LOOKED_AT_RECENTLY

    def looked_at(self, viewer: int = 0) -> None:
        """Someone wants fresh metrics (a status request, or a UI arriving or leaving: +1/-1)."""
        was = self._watched()
        self.viewers += viewer
        self._looked_at = time.monotonic()
        if not was:
            self._wake_metrics.set()     # out of the idle interval now, not in up to 5 s

    def _flush_soon(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_handle = None
        self.logs.flush()

    # ---- commands -------------------------------------------------------------------------

    def targets(self, name: Any) -> list[ProcessGroup]:
        if name in ("all", None):
            return list(self.groups.values())
        group = self.groups.get(name) if isinstance(name, str) else None
        if group is None:
            raise CommandError(f"no process named {name!r} in {self.config.path} "
                               f"(processes: {', '.join(self.groups) or 'none'}, or all)")
        return [group]

    async def execute(self, req: dict[str, Any], progress: Callable[[str], None] | None = None) -> Any:
        """Run one command (the socket's, a key's, a script's). Raises CommandError with a one-line
        reason when it cannot be done. The verbs are the table in commands.py."""
        from .commands import COMMANDS
        handler = COMMANDS.get(req.get("cmd"))    # type: ignore[arg-type]
        if handler is None:
            raise CommandError(f"unknown command {req.get('cmd')!r}")
        return await handler(self, req, progress)

    async def apply(self, progress: Callable[[str], None] | None) -> dict[str, Any]:
        from .apply import apply
        if self._stopping:
            raise CommandError("the engine is stopping; nothing to apply")
        if self._applying:
            raise CommandError("an apply is already running; wait for it to finish")
        self._applying = True
        try:
            return await apply(self, progress)
        finally:
            self._applying = False

    async def reload(self, groups: list[ProcessGroup], progress: Callable[[str], None] | None) -> dict:
        """Reload the groups one after another; stop at the first that fails."""
        results = []
        for g in self.in_start_order(groups):
            if g.deps_pending and len(groups) > 1:
                results.append({"name": g.name, "ok": True, "reason": "skipped: it has not started yet",
                                "task": g.cfg.is_task})
                continue
            def tagged(text: str, name: str = g.name) -> None:
                if progress is not None:
                    progress(f"{name}: {text}")
            ok = await g.begin_reload(tagged)
            results.append({"name": g.name, "ok": ok, "reason": g.reload.reason if g.reload else None,
                            "task": g.cfg.is_task})
            if not ok:
                break
        return {"ok": all(r["ok"] for r in results), "processes": results}

    def reload_all_in_background(self) -> None:
        """SIGHUP: reload every process, one after another, without anyone waiting."""
        async def go() -> None:
            try:
                await self.reload(list(self.groups.values()), None)
            except CommandError as e:
                self.logs.emit("oxtui", None, "event", [f"reload on SIGHUP refused: {e}"])
        asyncio.get_running_loop().create_task(go())

    # ---- status ---------------------------------------------------------------------------

    def _unit(self) -> str | None:
        if not hasattr(self, "_unit_name"):
            self._unit_name = systemd_unit() if under_systemd(os.environ) else None
        return self._unit_name

    def oxfile_changed(self) -> bool:
        """The oxfile on disk is not what the engine read (edited since, and not applied)."""
        try:
            st = self.config.path.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns, self.config.digest)
            if key != self._disk_key:       # hash again only when the file was touched (snapshots run at 10 Hz)
                self._disk_key = key
                self._disk_changed = digest(self.config.path.read_bytes()) != self.config.digest
        except OSError:
            return True
        return self._disk_changed

    def snapshot(self) -> Snapshot:
        return {
            "oxfile": str(self.config.path),
            "engine_pid": os.getpid(),
            "engine": {"started_at": self.started_at, "uptime_s": round(time.time() - self.started_at, 3),
                       "cpu_percent": self.usage.cpu_percent, "rss_bytes": self.usage.rss_bytes,
                       "log_dir": str(self.logs.dir), "viewers": self.viewers,
                       "systemd": under_systemd(os.environ), "unit": self._unit(),
                       "oxfile_changed": self.oxfile_changed()},
            "processes": [g.snapshot() for g in self.groups.values()],
        }


def _sample_and_trim(sampler: Sampler, trimmer: Trimmer, pids: list[int]) -> tuple[dict[int, Usage], Usage]:
    """On the sampler's thread: read /proc, then give freed heap pages back when it is time (heap.py)."""
    sample = sampler.sample(pids)
    trimmer.maybe_trim()
    return sample
