"""systemd's notify protocol, spoken by an engine that a `Type=notify` unit started.

    start ──> every process ready (or settled) ──> READY=1, MAINPID, STATUS=web 4/4 ready, ...
    a rolling reload begins ──> RELOADING=1 + MONOTONIC_USEC ──> all reloads over ──> READY=1
    shutdown ──> STOPPING=1
    all along, from the engine's own loop: WATCHDOG=1 every WATCHDOG_USEC / 2

The messages are datagrams to $NOTIFY_SOCKET (a path, or an abstract name written with a leading
'@'); no library is needed. WATCHDOG=1 is sent by a task of the engine's loop on purpose: a loop
that hangs stops the pings, and systemd restarts the engine. With no NOTIFY_SOCKET every call is a
no-op. The variables are read once here and never reach an instance (see spawn.instance_env).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import TYPE_CHECKING, Mapping

from ..protocol import WorkerState

if TYPE_CHECKING:
    from .engine import Engine

# READY=1 is not held back forever: a process that never becomes ready (a crash loop that has not
# yet given up) must not keep the whole unit "activating" until systemd kills every healthy one.
READY_GRACE = 15.0
STATUS_EVERY = 1.0          # STATUS= is recomputed at most this often, and sent only when it changed
SETTLED = (WorkerState.RUNNING, WorkerState.EXITED, WorkerState.COMPLETED, WorkerState.FAILED, WorkerState.ERRORED,
           WorkerState.STOPPED)


def under_systemd(environ: Mapping[str, str]) -> bool:
    """Started by systemd as a service (its stdout then goes to the journal)."""
    return bool(environ.get("INVOCATION_ID") or environ.get("JOURNAL_STREAM") or environ.get("NOTIFY_SOCKET"))


def systemd_unit() -> str | None:
    """The unit this process runs in, from its cgroup (e.g. "oxtui-shop.service"), or None."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                path = line.rstrip("\n").split(":", 2)[-1]
                for part in reversed(path.split("/")):
                    if part.endswith(".service"):
                        return part
    except OSError:
        pass
    return None


class Notifier:
    def __init__(self, environ: Mapping[str, str]):
        addr = environ.get("NOTIFY_SOCKET") or None
        if addr is not None and addr.startswith("@"):
            addr = "\0" + addr[1:]
        self.address = addr
        self.watchdog_s: float | None = None
        usec = environ.get("WATCHDOG_USEC")
        wd_pid = environ.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not wd_pid or wd_pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._sock: socket.socket | None = None
        self.ready_sent = False
        self._reloading = False
        self._status = ""
        self._status_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    def send(self, *fields: str) -> None:
        if self.address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            pass      # systemd gone or the socket full: never a reason to disturb supervision

    # ---- driven by the engine -------------------------------------------------------------

    def start(self, engine: Engine) -> None:
        if self.address is None:
            return
        loop = asyncio.get_running_loop()
        if self.watchdog_s is not None:
            self._tasks.append(loop.create_task(self._watchdog(), name="sd watchdog"))
        self._tasks.append(loop.create_task(self._follow(engine), name="sd status"))

    def stopping(self) -> None:
        for t in self._tasks:
            t.cancel()
        self.send("STOPPING=1", "STATUS=stopping every process")

    async def _watchdog(self) -> None:
        assert self.watchdog_s is not None
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s / 2)

    async def _follow(self, engine: Engine) -> None:
        started = time.monotonic()
        wake = asyncio.Event()
        engine.listeners.append(wake.set)
        try:
            while True:
                self._update(engine, time.monotonic() - started)
                try:
                    await asyncio.wait_for(wake.wait(), STATUS_EVERY)
                except TimeoutError:
                    pass
                wake.clear()
        finally:
            engine.listeners.remove(wake.set)

    def _update(self, engine: Engine, elapsed: float) -> None:
        """READY and reload transitions go out at once; a changed STATUS= at most once a second."""
        if not self.ready_sent:
            if settled(engine) or elapsed > _ready_deadline(engine):
                self.ready_sent = True
                self._status = summary(engine)
                self._status_at = time.monotonic()
                self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={self._status}")
            return
        reloading = any(g.reload is not None and g.reload.active for g in engine.groups.values())
        if reloading != self._reloading:
            self._reloading = reloading
            self._status = summary(engine)
            self._status_at = time.monotonic()
            if reloading:
                usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={self._status}")
            else:
                self.send("READY=1", f"STATUS={self._status}")
        elif time.monotonic() - self._status_at >= STATUS_EVERY:
            status = summary(engine)
            if status != self._status:
                self._status, self._status_at = status, time.monotonic()
                self.send(f"STATUS={status}")


def _ready_deadline(engine: Engine) -> float:
    longest = max((p.ready.timeout for p in engine.config.processes if p.ready is not None), default=1.0)
    return longest + READY_GRACE


def settled(engine: Engine) -> bool:
    """Every instance is ready, or has settled in a state it will not leave by itself."""
    return all(w.state in SETTLED for g in engine.groups.values() for w in g.workers.values())


def summary(engine: Engine) -> str:
    """One line for `systemctl status`: "web 4/4 ready, worker 1/1 ready (reloading)"."""
    parts = []
    for g in engine.groups.values():
        ready = sum(1 for w in g.workers.values() if w.state == WorkerState.RUNNING)
        text = f"{g.name} {ready}/{g.target} ready"
        bad = sum(1 for w in g.workers.values() if w.state in (WorkerState.ERRORED, WorkerState.BACKOFF))
        if bad:
            text += f", {bad} failing"
        if g.reload is not None and g.reload.active:
            text += " (reloading)"
        parts.append(text)
    return ", ".join(parts) or "no processes"
