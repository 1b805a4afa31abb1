"""What the engine shows: the typed snapshot (protocol.py) made from its live objects, in one place.

Every view reads only this: `status --json`, the TUI (embedded or attached), systemd's STATUS=, the
Prometheus exporter, notifications. It is built on the engine's loop, at most about ten times a
second, and changes nothing. The engine and its groups are typed loosely here (Any): this module is
below them (they import it), and the shape it returns is what the types in protocol.py pin down.
"""

from __future__ import annotations

import os
import time
from typing import Any

from .. import __version__
from ..observers.sdnotify import systemd_unit, under_systemd
from ..oxfile.config import Config, digest
from ..protocol import LIVE_STATES, ProcessSnapshot, ScheduleSnapshot, Snapshot, WorkerSnapshot
from ..releases import release_of


class DiskCheck:
    """Whether the oxfile on disk is still what the engine read (edited since, and not applied)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._changed = False
        self._unit: str | None | bool = False

    def changed(self, config: Config) -> bool:
        try:
            st = config.path.stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns, config.digest)
            if key != self._key:       # hash again only when the file was touched (snapshots run at 10 Hz)
                self._key = key
                self._changed = digest(config.path.read_bytes()) != config.digest
        except OSError:
            return True
        return self._changed

    def unit(self) -> str | None:
        """The systemd unit this engine runs in (read once)."""
        if self._unit is False:
            self._unit = systemd_unit() if under_systemd(os.environ) else None
        return self._unit       # type: ignore[return-value]


def engine_snapshot(engine: Any) -> Snapshot:
    usage = engine.sampling.usage
    return {
        "oxfile": str(engine.config.path),
        "engine_pid": os.getpid(),
        "engine": {"started_at": engine.started_at, "uptime_s": round(time.time() - engine.started_at, 3),
                   "cpu_percent": usage.cpu_percent, "cpu_seconds": usage.cpu_seconds,
                   "rss_bytes": usage.rss_bytes, "version": __version__, "recovered": engine.recovered,
                   "keeper_pid": engine.spawner.helper_pid,
                   "journal": {"writes": engine.journal.writes, "bytes": engine.journal.bytes},
                   "log_dir": str(engine.logs.dir), "viewers": engine.sampling.viewers,
                   "journald": engine.logs.journal.status() if engine.logs.journal is not None else None,
                   "deploy": engine.deploying.snapshot() if engine.deploying is not None else None,
                   "systemd": under_systemd(os.environ), "unit": engine.disk.unit(),
                   "oxfile_changed": engine.disk.changed(engine.config),
                   "notify": engine.notifications.status() if engine.config.notifies else None},
        "processes": [process_snapshot(g) for g in engine.groups.values()],
    }


def process_snapshot(self: Any) -> ProcessSnapshot:
    """One `[processes.X]` group as status --json shows it."""
    now = time.monotonic()
    deploy = self.engine.config.deploy
    root = deploy.root if deploy is not None else None
    workers = [_worker_snapshot(w, now, root) for _, w in sorted(self.workers.items())]
    workers += [_worker_snapshot(w, now, root) for w in self.extra]
    return {
        "name": self.name,
        "instances": self.target,
        "oxfile_instances": self.cfg.instances,
        "listen": self.cfg.listen_str,
        "reload": self.reload.snapshot() if self.reload is not None else None,
        "log_file": str(self.log.file.path) if self.log.file is not None else None,
        "log_error": self.log.file.trouble.status() if self.log.file is not None and self.log.file.trouble else None,
        "command": self.cfg.command,
        "release": self.release,
        "cwd": str(self.cfg.cwd),
        "user": self.cfg.run_as.user if self.cfg.run_as else None,
        "env_names": self.env_names.of(self.cfg.env, self.cfg.env_files),
        "exits": list(self.exits),
        "depends_on": dict(self.cfg.depends_on),
        "schedule": _schedule_snapshot(self),
        "task": self.cfg.is_task,
        "counters": {"exits": dict(self.exit_causes), "reloads": dict(self.reload_results),
                     "last_reload_s": self.last_reload_seconds, "log_lines": self.log.lines_total},
        "workers": workers,
    }

def _schedule_snapshot(self: Any) -> ScheduleSnapshot | None:
    sched = self.cfg.schedule
    if sched is None:
        return None
    return {"cron": sched.cron, "every": sched.every, "timezone": sched.timezone, "text": sched.text,
            "next_run": self.schedule.next_run if self.schedule else None,
            "last_run": self.schedule.last_run.copy() if self.schedule and self.schedule.last_run else None}

def _release(w: Any, root: Any) -> str | None:
    """The deploy's release this instance runs from (releases/NAME/...), by the folder it was started in;
    for one adopted from another engine, read once from /proc."""
    if w.cwd is None and w.pid is not None and w.state in LIVE_STATES:
        try:
            w.cwd = os.readlink(f"/proc/{w.pid}/cwd")
        except OSError:
            return None
    return release_of(w.cwd, root) if w.cwd else None


def _worker_snapshot(w: Any, now: float, deploy_root: Any = None) -> WorkerSnapshot:
    up = w.uptime()
    return {
        "instance": w.slot,
        "pid": w.pid if w.state in LIVE_STATES else None,
        "state": w.state,
        "restarts": w.restarts,
        "uptime_s": round(up, 3) if up is not None else None,
        "cpu_percent": w.cpu_percent,
        "rss_bytes": w.rss_bytes,
        "exit_code": w.exit_code,
        "exit_signal": w.exit_signal,
        "ready": w.ready.is_set(),
        "health": w.health,
        "reason": w.reason,
        "role": w.role,
        "generation": w.release,
        "release": _release(w, deploy_root) if deploy_root is not None else None,
        "last_exit": w.last_exit,
        "checks": list(w.checks),       # the entries are never changed once made: shared, not copied
        "cpu_seconds": round(w.cpu_seconds, 2),
        # the spawner helper holds leave to restart this process the moment it ends (approval.py)
        "approved": w.pid is not None and w.approval.pid == w.pid,
        "tree": [m._asdict() for m in w.tree] if w.tree else [],    # (most instances are one process: [])
    }
