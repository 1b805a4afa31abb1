"""systemd's notify protocol, spoken by an engine that a `Type=notify` unit started.

    start ──> every process ready (or settled) ──> READY=1, MAINPID, STATUS=web 4/4 ready, ...
    a rolling reload asked for (oxtui reload, systemctl reload, SIGHUP, apply) begins
          ──> RELOADING=1 + MONOTONIC_USEC ──> all such reloads over ──> READY=1
    a task's run, or a schedule's tick ──> only STATUS= changes: the unit stays `active`
    shutdown ──> STOPPING=1
    all along, from the engine's own loop: WATCHDOG=1 every WATCHDOG_USEC / 2

The messages are datagrams to $NOTIFY_SOCKET (a path, or an abstract name written with a leading
'@'); no library is needed. WATCHDOG=1 is sent by a task of the engine's loop on purpose: a loop
that hangs stops the pings, and systemd restarts the engine. With no NOTIFY_SOCKET every call is a
no-op. The variables are read once here and never reach an instance (see engine/commandline.instance_env).
Everything else is read from the engine's snapshot (protocol.py), never from the engine itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..protocol import EngineFeed, ProcessSnapshot, Snapshot, WorkerState, slot_workers

if TYPE_CHECKING:
    from ..oxfile.config import Config

# READY=1 is not held back forever: a process that never becomes ready (a crash loop that has not
# yet given up) must not keep the whole unit "activating" until systemd kills every healthy one.
READY_GRACE = 15.0


def ready_deadline(config: Config) -> float:
    """Seconds after the start when READY=1 goes out even if not every process is ready."""
    longest = max((p.ready.timeout for p in config.processes if p.ready is not None), default=1.0)
    return longest + READY_GRACE


STATUS_EVERY = 1.0          # STATUS= is recomputed at most this often, and sent only when it changed
LOOK_EVERY = 0.1            # after a change, the snapshot is read at most this often
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


def socket_address(value: str | None) -> str | None:
    """$NOTIFY_SOCKET as sendto() takes it: an abstract name is written with '@' and sent with a NUL."""
    if not value:
        return None
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    def __init__(self, environ: Mapping[str, str]):
        self.address = socket_address(environ.get("NOTIFY_SOCKET"))
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
        # Set by the engine: its keeper watches these beats (helper/keeper.py), and replaces an engine
        # that stops beating before the watchdog below would fail the whole unit.
        self.beat: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        return self.address is not None

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

    def start(self, feed: EngineFeed, ready_deadline: float, ready_sent: bool = False) -> None:
        """`ready_deadline`: seconds after which READY=1 goes out even if not everything is ready.
        `ready_sent`: the engine took over from one that had said READY=1 already (a hand-over)."""
        if self.address is None:
            return
        self.ready_sent = ready_sent
        loop = asyncio.get_running_loop()
        if self.watchdog_s is not None:
            self._tasks.append(loop.create_task(self._watchdog(), name="sd watchdog"))
        self._tasks.append(loop.create_task(self._follow(feed, ready_deadline), name="sd status"))

    def stopping(self) -> None:
        for t in self._tasks:
            t.cancel()
        self.send("STOPPING=1", "STATUS=stopping every process")

    async def _watchdog(self) -> None:
        assert self.watchdog_s is not None
        while True:
            if self.beat is not None:
                self.beat()
            self.send("WATCHDOG=1")

            await asyncio.sleep(self.watchdog_s / 2)

    async def _follow(self, feed: EngineFeed, ready_deadline: float) -> None:
        started = time.monotonic()
        wake = asyncio.Event()
        stop_listening = feed.on_change(wake.set)
        try:
            while True:
                self.update(feed.snapshot(), time.monotonic() - started, ready_deadline)
                try:
                    await asyncio.wait_for(wake.wait(), STATUS_EVERY)
                except TimeoutError:
                    pass
                wake.clear()
                await asyncio.sleep(LOOK_EVERY)       # a burst of changes is one look
        finally:
            stop_listening()

    def update(self, snap: Snapshot, elapsed: float, ready_deadline: float) -> None:
        """READY and reload transitions go out at once; a changed STATUS= at most once a second."""
        if not self.ready_sent:
            if settled(snap) or elapsed > ready_deadline:
                self.ready_sent = True
                self._status = summary(snap)
                self._status_at = time.monotonic()
                self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={self._status}")
            return
        reloading = any(asked_reload(p) for p in snap["processes"])
        if reloading != self._reloading:
            self._reloading = reloading
            self._status = summary(snap)
            self._status_at = time.monotonic()
            if reloading:
                usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={self._status}")
            else:
                self.send("READY=1", f"STATUS={self._status}")
        elif time.monotonic() - self._status_at >= STATUS_EVERY:
            status = summary(snap)
            if status != self._status:
                self._status, self._status_at = status, time.monotonic()
                self.send(f"STATUS={status}")


def asked_reload(p: ProcessSnapshot) -> bool:
    """A rolling reload someone asked for is running: not a task's run, not a schedule's tick."""
    rl = p["reload"]
    return rl is not None and rl["state"] == "running" and rl["kind"] == "rolling" and rl["why"] != "schedule"


def settled(snap: Snapshot) -> bool:
    """Every instance is ready, or has settled in a state it will not leave by itself: a scheduled
    task waiting for its first tick and an instance blocked by a failed dependency count; one
    waiting for a dependency that is still starting does not."""
    return all(w["state"] in SETTLED or (w["state"] == WorkerState.WAITING and
                                         (w["reason"] or "").startswith(("scheduled", "blocked")))
               for p in snap["processes"] for w in slot_workers(p))


def summary(snap: Snapshot) -> str:
    """One line for `systemctl status`: "web 4/4 ready (reloading), migrate done, backup running"."""
    return ", ".join(_process_status(p) for p in snap["processes"]) or "no processes"


def _process_status(p: ProcessSnapshot) -> str:
    workers = slot_workers(p)
    states = [w["state"] for w in workers]
    if p["task"]:
        if any(s in (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.STOPPING) for s in states):
            return f"{p['name']} running"
        if WorkerState.FAILED in states or WorkerState.ERRORED in states:
            return f"{p['name']} failed"
        if states and all(s == WorkerState.COMPLETED for s in states):
            return f"{p['name']} done"
        return f"{p['name']} waiting"
    ready = sum(1 for w in workers if w["state"] == WorkerState.RUNNING and w["ready"])
    text = f"{p['name']} {ready}/{p['instances']} ready"
    bad = sum(1 for s in states if s in (WorkerState.ERRORED, WorkerState.BACKOFF))
    if bad:
        text += f", {bad} failing"
    rl = p["reload"]
    if rl is not None and rl["state"] == "running" and rl["kind"] == "rolling":
        text += " (scheduled reload)" if rl["why"] == "schedule" else " (reloading)"
    return text
