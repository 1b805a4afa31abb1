"""The engine: owns every process group, takes commands, publishes snapshots and log batches.

An asyncio library with no UI import. `oxtui run` drives it on the main thread; the TUI runs it
on a thread of its own. Commands arrive through `execute()`, the same entry the control socket
uses, so a script and a key press do exactly the same thing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..observers.notify import Notifications
from ..observers.sdnotify import Notifier, ready_deadline
from ..oxfile.config import Config, ProcessConfig
from ..protocol import LIVE_STATES, Event, Snapshot
from .deploying import undeployed
from .errors import AlreadyRunning, CommandError, EngineError, UsageError
from .events import EventHub
from .group import ProcessGroup
from .journal import Journal
from .journald import journald_for
from .keeperlink import KeeperLink
from .lock import Locked, OxfileLock
from .logfile import LogTrouble
from .logs import LogHub
from .recovery import journal_state
from .sampling import Sampling
from .snapshots import DiskCheck, engine_snapshot
from .sockets import ListenError, bind_listener
from .spawn import Spawner

if TYPE_CHECKING:
    from .control import ControlServer


class Engine:
    def __init__(self, config: Config, *, control: bool = True):
        self.config = config
        self.logs = LogHub(config.logs)
        self.events = EventHub()
        self.notifications = Notifications(self, lambda name: self.config.notify_for(name), str(config.path.parent))
        self.exporter: Any = None
        self.groups: dict[str, ProcessGroup] = {}
        self.base_env = dict(os.environ)
        self.started_at = time.time()
        self.sampling = Sampling(self._live_workers, self._sampled, self.log, self._metrics_needed)
        self.listeners: list[Callable[[], None]] = []
        self.command_listeners: list[Callable[[], None]] = []     # on_change(after_commands=True)
        self._control_enabled = control
        self._control: ControlServer | None = None
        self._lock = OxfileLock(config.path)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._applying = False
        # Lines are written as soon as they are read, not after a pause nor at the end of the loop's pass:
        # what the engine has read from a pipe is gone from it, so a SIGKILL (the keeper then starts a new
        # engine) must find it on disk, and inside a TUI the UI thread may hold the GIL between a read and
        # the next callback. One write per read: a flood's reads are large, a quiet app's are rare.
        self.logs.on_pending = self.logs.flush
        self.logs.on_trouble = self._log_trouble
        self.stopped = asyncio.Event()
        self.background = False            # `oxtui run --background` (`oxtui up`): no terminal, no journal
        self.embedded = False              # inside a TUI: that TUI moves it (q then b), not `oxtui upgrade`
        self.spawner = Spawner()
        self.service = Notifier(os.environ)
        self.keeper = KeeperLink(self.spawner, self.service)
        self.spawner.on_new_helper.append(lambda: self.keeper.replaced(self, self._lock.fd))
        self.disk = DiskCheck()
        self._settling = False
        self.recovered: dict[str, Any] | None = None     # this engine replaced one that died (recovery.py)
        self.deploying: Any = None         # the deploy or rollback running or last ended (deploying.py)
        self.journal = Journal(config.path, lambda: journal_state(self))

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self, only: set[str] | None = None) -> None:
        """Bind every socket, start every process, serve the control socket. With `only`: just those
        processes and what they depend on; the others (and any `disabled = true`) wait for a start.

        Raises EngineError (nothing left running) when an engine already runs for this oxfile or an
        address cannot be bound.
        """
        try:
            self._lock.take()
        except Locked as e:
            raise AlreadyRunning(str(e)) from None
        if (why := undeployed(self.config)) is not None:
            self._lock.release()
            raise EngineError(why)
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
                    self.logs.open(p.name, check=True)
            except OSError as e:
                raise EngineError(f"{self.config.path}: [logs] dir: cannot write {self.logs.dir} ({e.strerror}); "
                                  "set [logs] dir to a writable folder") from None
            self.logs.journal = self.logs.journal or journald_for(self.config.logs, str(self.config.path), self.log)
            if self._control_enabled:
                from .control import ControlServer
                self._control = ControlServer(self, self.config.path)
                await self._control.start()
        except BaseException:
            for s in socks.values():
                s.close()
            self._lock.release()
            raise
        for p in self.config.processes:
            self.add_group(p, socks.get(p.name))
        from ..oxfile.graph import with_dependencies
        wanted = with_dependencies({n: [d for d, _ in g.cfg.depends_on] for n, g in self.groups.items()}, only) \
            if only else None
        for g in self.in_start_order():
            if g.cfg.disabled:
                g.hold(f"disabled in the oxfile; `oxtui start {g.name}` starts it")
            elif wanted is not None and g.name not in wanted:
                g.hold(f"not started (up --only {','.join(sorted(only or ()))}); `oxtui start {g.name}` starts it")
            else:
                g.boot()
        self._run_loops()

    async def adopt(self, channel_fd: int) -> None:
        """Start by taking over a running engine's workers (see handover.py) instead of starting any."""
        from .handover import adopt
        try:
            origin = await adopt(self, channel_fd)
        except BaseException:
            self._lock.forget()      # the old engine's lock: not ours to close until we have it all
            raise
        why = None
        if origin["version"] != __version__:   # an upgrade: the helper becomes this version's, keeping its children
            why = self.spawner.upgrade_helper()
            self.log(f"spawner helper: {'now runs oxtui ' + __version__ if why is None else 'not upgraded: ' + why}")
        self.spawner.approvals = why is None      # it runs this program: it takes approved restarts
        self._run_loops(adopted=True)

    async def recover(self, keeper_fd: int) -> None:
        """Start by adopting the workers of an engine that died, from its keeper (recovery.py)."""
        from .recovery import recover
        try:
            await recover(self, keeper_fd)
        except BaseException:
            self._lock.forget()      # the keeper's lock: it stays held there for the next try
            raise
        self._run_loops(adopted=True)
        self.keeper.adopted()

    def socket_changed(self, group: ProcessGroup) -> None:
        """A group's listening socket was bound or closed: the keeper holds it or lets it go."""
        self.keeper.hold(f"listen:{group.name}", group.listen_fd)

    def _run_loops(self, adopted: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.journal.open(list(self.events.history))
        self.events.subscribers.append(lambda ev: self.journal.record(ev, self.events.history))
        self._tasks = [loop.create_task(self.sampling.run(), name="metrics")]
        for g in self.groups.values():
            g.start_watch()
            g.start_schedule()
        # taken over from an engine that had told systemd READY=1 already (it made us the main process)
        self.service.start(self, ready_deadline(self.config), ready_sent=adopted)
        # (after service.start: it must know whether READY=1 went out already)
        self.keeper.arm(self, self._lock.fd, recovered=self.recovered is not None)
        self.notifications.start()
        if self.config.metrics.listen is not None:
            self._start_metrics()

    def adopt_lock(self, fd: int) -> None:
        self._lock.adopt(fd)

    async def serve_control(self, inherited: socket.socket) -> None:
        from .control import ControlServer
        self._control = ControlServer(self, self.config.path)
        await self._control.start(inherited)

    def hand_over(self, background: bool = True) -> int:
        """Move every worker into a new engine process (see handover.py); returns its pid. Blocks this
        loop; on success the caller must never run this engine again."""
        from .handover import hand_over
        return hand_over(self, background)

    async def until_it_can_hand_over(self, progress: Callable[[str], None] | None, limit: float) -> None:
        """Wait for a moment when nothing is half done (a reload, a worker starting); at most `limit` s."""
        from .handover import until_quiet
        await until_quiet(self, progress, limit)

    async def shutdown(self) -> None:
        """Stop every worker gracefully, then close sockets, logs and the control socket."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self.keeper.bye()               # a stop asked for: the keeper must not bring anything back
        self.service.stopping()
        self.notifications.close()
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
            self.journal.close(remove=True)
            self.logs.close()
            self._lock.release()
            self.stopped.set()

    def force_kill(self) -> None:
        """SIGKILL every instance's process group now (a second Ctrl-C); shutdown() then finishes fast."""
        for g in self.groups.values():
            for w in g.all_workers():
                w.kill_group(signal.SIGKILL)

    # ---- the groups: the one place they are made and removed (start, apply, hand-over) ------

    def add_group(self, cfg: ProcessConfig, sock: socket.socket | None) -> ProcessGroup:
        """A group for cfg, its log file open; not started."""
        self.logs.open(cfg.name)
        group = self.groups[cfg.name] = ProcessGroup(self, cfg, sock)
        if sock is not None and self._tasks:      # an apply added it (at start, _arm_keeper holds them all)
            self.socket_changed(group)
        return group

    async def remove_group(self, name: str) -> None:
        """Stop the group for good (watcher, workers, socket) and forget it."""
        await self.groups.pop(name).close()

    def use_config(self, config: Config) -> None:
        """What runs now is this config (after an apply or a save)."""
        self.config = config
        self.changed()

    # ---- what observers get (protocol.EngineFeed) ------------------------------------------

    def subscribe(self, on_event: Callable[[Event], None]) -> Callable[[], None]:
        self.events.subscribers.append(on_event)
        return lambda: self.events.subscribers.remove(on_event)

    def on_change(self, fn: Callable[[], None], after_commands: bool = False) -> Callable[[], None]:
        """fn() at each change; with after_commands, each time a command has run instead: its effect is
        a person's key or a script's verb, to show at once, whatever a viewer's cap on what moves alone."""
        listeners = self.command_listeners if after_commands else self.listeners
        listeners.append(fn)
        return lambda: listeners.remove(fn)

    def publish(self, event: str, process: str, text: str, **fields: Any) -> None:
        self.events.publish(event, process, None, None, text, **fields)

    def log(self, text: str) -> None:
        self.logs.emit("oxtui", None, "event", [text])

    def _log_trouble(self, kind: str, name: str, t: LogTrouble) -> None:
        """A log file that cannot be written, or can again: an event, the engine's log, status (log_error)."""
        text = t.describe(kind)
        self.publish("logs", name, text, state=kind, error=t.error, file=str(t.path), lines_not_written=t.lines)
        self.log(f"{name}: {text}")
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
        return self._lock.fd

    @property
    def control(self) -> Any:
        return self._control

    def changed(self, sampled: bool = False) -> None:
        if not sampled:
            self.journal.changed()
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
        from ..oxfile.graph import levels
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

    def _live_workers(self) -> list:
        return [w for g in self.groups.values() for w in g.all_workers() if w.state in LIVE_STATES]

    def _sampled(self) -> None:
        if self.exporter is not None:
            self.exporter.update(self.snapshot())
        self.changed(sampled=True)

    def _start_metrics(self) -> None:
        from ..openssl import allow
        allow()            # prometheus_client imports ssl (openssl.py)
        from ..observers.prometheus import serve
        self.exporter = serve(self)

    def looked_at(self, viewer: int = 0) -> None:
        """Someone wants fresh metrics (a status request, or a UI arriving or leaving: +1/-1)."""
        self.sampling.looked_at(viewer)

    async def fresh_metrics(self) -> None:
        await self.sampling.fresh()

    def _metrics_needed(self) -> bool:
        return self.exporter is not None or any(g.cfg.max_memory is not None for g in self.groups.values())

    # ---- commands -------------------------------------------------------------------------

    def targets(self, name: Any) -> list[ProcessGroup]:
        if name in ("all", None):
            return list(self.groups.values())
        group = self.groups.get(name) if isinstance(name, str) else None
        if group is None:
            import difflib
            near = difflib.get_close_matches(str(name), list(self.groups), n=1, cutoff=0.6)
            raise UsageError(f"no process named {name!r} in {self.config.path}"
                             + (f"; did you mean {near[0]!r}?" if near else "")
                             + f" (processes: {', '.join(self.groups) or 'none'}, or all)")
        return [group]

    async def execute(self, req: dict[str, Any], progress: Callable[[str], None] | None = None) -> Any:
        """Run one command (the socket's, a key's, a script's). Raises CommandError with a one-line
        reason when it cannot be done. The verbs are the table in commands.py."""
        from .commands import COMMANDS
        handler = COMMANDS.get(req.get("cmd"))    # type: ignore[arg-type]
        if handler is None:
            raise CommandError(f"unknown command {req.get('cmd')!r}")
        try:
            return await handler(self, req, progress)
        finally:
            for fn in self.command_listeners:
                fn()

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
            skip = None
            if len(groups) > 1 and g.deps_pending:
                skip = "skipped: it has not started yet"
            elif len(groups) > 1 and g.cfg.is_task and g.cfg.schedule is not None:
                # a backup or a cleanup is not part of a deploy; `oxtui reload NAME` runs it now
                skip = f"skipped: a scheduled task runs on its schedule ({g.cfg.schedule.text})"
            if skip is not None:
                results.append({"name": g.name, "ok": True, "reason": skip, "task": g.cfg.is_task})
                continue

            def tagged(text: str, name: str = g.name) -> None:
                if progress is not None:
                    progress(f"{name}: {text}")
            await g.scheduled_reload_done()      # a schedule's tick reloading it now: ours comes after
            ok = await g.begin_reload(tagged)
            results.append({"name": g.name, "ok": ok, "reason": g.reload.reason if g.reload else None,
                            "task": g.cfg.is_task})
            if not ok:
                break
        return {"ok": all(r["ok"] for r in results), "processes": results}

    def reload_all_in_background(self) -> None:
        """SIGHUP to a service: reload every process, one after another, without anyone waiting."""
        self.log("SIGHUP: rolling reload of every process (the reload signal of a service with no terminal)")
        self.reload_in_background(list(self.groups.values()))

    def reload_in_background(self, groups: list[ProcessGroup]) -> None:
        async def go() -> None:
            try:
                await self.reload(groups, None)
            except CommandError as e:
                self.logs.emit("oxtui", None, "event", [f"reload refused: {e}"])
        asyncio.get_running_loop().create_task(go())

    # ---- status ---------------------------------------------------------------------------

    def oxfile_changed(self) -> bool:
        """The oxfile on disk is not what the engine read (edited since, and not applied)."""
        return self.disk.changed(self.config)

    def snapshot(self) -> Snapshot:
        return engine_snapshot(self)
