"""Moving a running engine into a new process, workers and all, without a restart: to the background
(an embedded TUI's q then b) or to the oxtui now installed (`oxtui upgrade`).

Why: the workers are children of the spawner helper, their output comes through pipes the engine
reads, and their sockets are bound by it. So everything is handed over as file descriptors: the
oxfile's lock, the control socket, each listening socket, the helper's socket and every worker's
pipes; with them a description (its FORMAT and the old engine's version, carry.py's history). The
new engine rebuilds its state from it, and the old one never runs again.

    old engine                               new engine (`oxtui run --adopt FD`)
    checks it can; helper: no PDEATHSIG
    starts the new one with the fds  ------> reads the description; a format it cannot read: it says
                                             so and exits (the old engine carries on)
    waits, its loop standing still   <------ "ready"
    systemd: MAINPID=new
    "go"                             ------> adopts the helper (which exec's the new oxtui's helper
                                             program in place) and the workers, serves the socket
    freezes for good, exits

Until "go" the new engine reads nothing, so when anything fails the old one carries on as if
nothing happened (the helper dies with it again). The lines "ready" and "go" never change: an old
engine and a newer one must always understand each other on them.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..oxfile.config import ConfigError, load
from ..protocol import WorkerState
from ..runtime import ENGINE_OUT, open_private
from . import carry
from .errors import CommandError
from .spawn import Child

if TYPE_CHECKING:
    from .api import EngineApi

TIMEOUT = 20.0
TICK = 0.25        # s between the old engine's watchdog pings while it waits for the new one
# A worker that is starting goes over too (a crash loop is never quiet), once it has a process.
HANDED_STATES = (WorkerState.RUNNING, WorkerState.STARTING, WorkerState.STOPPED, WorkerState.EXITED,
                 WorkerState.COMPLETED, WorkerState.FAILED, WorkerState.ERRORED, WorkerState.BACKOFF,
                 WorkerState.WAITING)
# What the new engine must not inherit: the watchdog belongs to whichever engine is the main process,
# and the new one is told it is (MAINPID) before it runs; WATCHDOG_PID would name the old one.
NOT_INHERITED = ("WATCHDOG_PID",)


class NotNow(CommandError):
    """Not now, but soon: something is half done (a reload, an apply, a worker starting or stopping).
    (Defined here, not in errors.py: an engine started before `pip install -U` imports this module from
    the new files while its errors.py is the old one.)"""

    def __init__(self, what: str, soon: bool = False):
        super().__init__(f"{what}; try again {'in a moment' if soon else 'when it is done'}")
        self.what = what
        self.soon = soon        # the reply says so as "retry" (upgrade.py tries again on it, not on the words)


def check(engine: EngineApi) -> None:
    """Raise CommandError (nothing changed) unless the engine can be handed over now; NotNow when
    waiting a little would do."""
    if engine.stopping:
        raise CommandError("the engine is stopping")
    if engine.applying:
        raise NotNow("an apply is running")
    for g in engine.groups.values():
        if g.reload is not None and g.reload.active:
            what = "its run" if g.cfg.is_task else "a rolling reload"
            raise NotNow(f"{g.name}: {what} is in progress")
        busy = [w.label for w in g.all_workers() if w.role is not None or w.state not in HANDED_STATES
                or (w.state == WorkerState.STARTING and w.pid is None)]
        if busy:
            raise NotNow(f"{', '.join(busy)} starting or stopping", soon=True)
    try:
        on_disk = load(engine.config.path)
    except ConfigError as e:
        raise CommandError(f"{engine.config.path} has errors now ({e.errors[0]}); fix it first") from None
    if on_disk.processes != engine.config.processes or on_disk.logs != engine.config.logs:
        raise CommandError(f"{engine.config.path} changed since the engine read it; apply it first (a), "
                           "or undo the change")


async def until_quiet(engine: EngineApi, progress: Callable[[str], None] | None, limit: float) -> None:
    """Wait for a moment when nothing is half done (a reload, a worker starting); at most `limit` s."""
    deadline = time.monotonic() + limit
    said = None
    while True:
        try:
            check(engine)
            return
        except NotNow as e:
            if time.monotonic() > deadline:
                raise CommandError(f"{e.what} (waited {limit:g}s)") from None
            if progress is not None and e.what != said:
                progress(f"waiting: {e.what}")
            said = e.what
            await asyncio.sleep(0.1)


def hand_over(engine: EngineApi, background: bool = True) -> int:
    """Start the new engine and give it everything; returns its pid. Blocks the engine's loop on
    purpose: nothing may happen here while the new engine takes stock. After a successful return
    the caller must never let this engine run again.

    `background`: the new engine runs in the background (its output to oxtui-engine.out); otherwise
    it keeps this one's stdout and stderr (a terminal, or systemd's journal) and prints as it did."""
    check(engine)
    # Under systemd's watchdog the keeper SIGKILLs an engine silent for 3/4 of WatchdogSec: every
    # step that blocks this loop beats (a 2 s watchdog on a busy machine once lost an upgrade here).
    _keep_alive(engine)
    engine.logs.flush()
    helper = engine.spawner.release()
    ours, theirs = socket.socketpair()
    pid: int | None = None
    out_path = engine.logs.dir / ENGINE_OUT
    try:
        state, fds = describe(engine, helper)
        argv = [sys.executable, "-P", "-m", "oxtui", "run", *(["--background"] if background else []),
                "--adopt", str(theirs.fileno()), str(engine.config.path)]
        pid = _launch(argv, [*fds, theirs.fileno()], engine.config.path.parent, out_path if background else None,
                      lambda: _keep_alive(engine))
        theirs.close()
        ours.settimeout(TIMEOUT)
        ours.sendall(json.dumps(state).encode() + b"\n")
        # The loop stands still until the new engine is ready; under systemd the watchdog is fed from
        # here meanwhile (a slow start of the new engine must not get the unit killed mid-upgrade).
        reply = _readline(ours, lambda: _keep_alive(engine))
        if reply != "ready":
            raise CommandError(_why_not(reply, pid, out_path if background else None))
        engine.service.send(f"MAINPID={pid}")     # systemd: the new engine is the unit's main process
        ours.sendall(b"go\n")
    except (OSError, CommandError) as e:
        reason = str(e)
        if isinstance(e, OSError) and pid is not None:     # it died on us mid-way: say how, not the EPIPE
            reason = _why_not("", pid, out_path if background else None)
        if pid is not None:
            _kill(pid)
        if helper is not None:
            engine.spawner.rearm()
        raise CommandError(reason) from None
    finally:
        ours.close()
        theirs.close()
    return pid


def _keep_alive(engine: EngineApi) -> None:
    """WATCHDOG=1 to the service manager, if it watches. With only what every engine since 0.2.0rc2
    has (`service.watchdog_s`, `service.send`): an engine started before `pip install -U` imports this
    module for the first time from the new files, when it hands over."""
    if engine.service.watchdog_s is not None:
        beat = getattr(engine.service, "beat", None)    # the keeper watches this engine's beats
        if beat is not None:
            beat()
        engine.service.send("WATCHDOG=1")


# The new engine is started through a launcher that forks it and exits at once, so that it is never a
# child of this engine: it belongs to the nearest reaper from the start (init, or the service manager:
# systemd supervises a MAINPID that is its own child, and loses track of one that is not).
LAUNCH = ("import os, sys\n"
          "w = int(sys.argv[1])\n"
          "pid = os.fork()\n"
          "if pid == 0:\n"
          "    os.close(w)\n"
          "    os.execv(sys.argv[2], sys.argv[2:])\n"
          "os.write(w, str(pid).encode())\n")


def _launch(argv: list[str], fds: list[int], cwd: Any, out_path: Any, tick: Callable[[], None]) -> int:
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    r, w = os.pipe()
    out = open_private(out_path) if out_path is not None else None
    try:
        launcher = subprocess.Popen([sys.executable, "-I", "-c", LAUNCH, str(w), *argv], pass_fds=[*fds, w],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
                                    env=env, cwd=cwd, start_new_session=True)
        os.close(w)
        w = -1
        answer = b""
        while True:
            readable = select.select([r], [], [], TICK)[0]
            tick()          # called at least every TICK s while the launcher starts
            if readable:
                if not (chunk := os.read(r, 64)):
                    break
                answer += chunk
        launcher.wait()
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
        if out is not None:
            out.close()
    if not answer.isdigit():
        raise OSError(f"could not start the new engine (the launcher exited with {launcher.returncode})")
    return int(answer)


# Like cli/daemon.py's, on purpose: an engine started before `pip install -U` imports this module from
# the new files, and a helper newly added to a module it has loaded already would not be there for it.
def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def _why_not(reply: str, pid: int, out_path: Any) -> str:
    """Why the new engine did not say "ready": what it said, or that it ended and its last words."""
    if reply.startswith("error: "):
        return reply[len("error: "):]
    deadline = time.monotonic() + 2
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        return f"the new engine (pid {pid}) did not answer within {TIMEOUT:g}s"
    last = ""
    if out_path is not None:
        try:
            lines = [line for line in out_path.read_text(errors="replace").splitlines() if line.strip()]
            last = lines[-1].strip() if lines else ""
        except OSError:
            pass
    if not last:
        # its output went where ours goes (a terminal, the journal): ask the installed oxtui itself
        r = subprocess.run([sys.executable, "-P", "-m", "oxtui", "--version"], capture_output=True, text=True,
                           timeout=30, check=False)
        lines = [line for line in (r.stderr or r.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if r.returncode != 0 and lines else ""
    return "the new engine exited before it was ready" + (f": {last}" if last else "")


def describe(engine: EngineApi, helper: tuple[int, int] | None) -> tuple[dict[str, Any], list[int]]:
    fds: list[int] = []

    def fd(n: int | None) -> int | None:
        if n is not None and n >= 0:
            fds.append(n)
            return n
        return None

    assert engine.lock_fd is not None and engine.control is not None
    groups = []
    for g in engine.groups.values():
        infos = [w.handover_info() for w in g.workers.values()]
        workers = [i for i in infos if i is not None]
        if len(workers) < len(infos) or not engine.spawner.quiet():
            raise NotNow("a worker has just exited", soon=True)
        for w, info in zip(g.workers.values(), workers):
            info["stdout"], info["stderr"] = fd(info["stdout"]), fd(info["stderr"])
            info["history"] = carry.worker_history(w)
        groups.append({"name": g.name, "sock": fd(g.listen_fd), "target": g.target, "release": g.release,
                       "workers": workers, "history": carry.group_history(g)})
    state = {"format": carry.FORMAT, "version": __version__,
             "oxfile": str(engine.config.path), "from_pid": os.getpid(), "started_at": engine.started_at,
             "lock": fd(engine.lock_fd), "control": fd(engine.control.listener_fd()),
             "helper": None if helper is None else {"fd": fd(helper[0]), "pid": helper[1]}, "groups": groups,
             "history": carry.engine_history(engine)}
    return state, fds


async def adopt(engine: EngineApi, channel_fd: int) -> dict[str, Any]:
    """The new engine's side; returns what it took over from (the old engine's pid and version).
    Raises OSError/ValueError before "ready" (the old engine carries on, having been told why)."""
    chan = socket.socket(fileno=channel_fd)
    chan.settimeout(TIMEOUT)
    try:
        try:
            state = json.loads(_readline(chan))
            fmt = state.get("format", 1)
            if fmt > carry.FORMAT:
                raise ValueError(f"the running engine (oxtui {state.get('version', '?')}) hands over in format {fmt}, "
                                 f"and this oxtui ({__version__}) reads up to format {carry.FORMAT}: install an oxtui "
                                 "at least as new as the running one")
            names = [g["name"] for g in state["groups"]]
            if state["oxfile"] != str(engine.config.path) or names != [p.name for p in engine.config.processes]:
                raise ValueError("the oxfile on disk is not the one the old engine runs")
        except (OSError, ValueError, KeyError) as e:
            _say(chan, f"error: {e}")
            raise
        prepare(engine, state)
        chan.sendall(b"ready\n")
        go = _readline(chan)     # "" when the old engine is already gone: carry on all the same
        if go not in ("go", ""):
            raise ValueError(f"unexpected {go!r} from the old engine")
    finally:
        chan.close()
    # From here on the old engine is frozen: read the helper and the pipes, serve the socket.
    kept = await carry_on(engine, state)
    engine.logs.emit("oxtui", None, "event", [(f"took over from pid {state['from_pid']} (oxtui "
                                               f"{state.get('version', '0.1.0')}): {kept} worker(s) kept running, "
                                               "none restarted")])
    return {"pid": state["from_pid"], "version": state.get("version", "0.1.0")}


def prepare(engine: EngineApi, state: dict[str, Any]) -> None:
    """The lock, the log folder and the groups with their sockets; no worker yet."""
    engine.adopt_lock(state["lock"])
    engine.logs.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cfgs = {p.name: p for p in engine.config.processes}
    for g in state["groups"]:
        sock = socket.socket(fileno=g["sock"]) if g["sock"] is not None else None
        group = engine.add_group(cfgs[g["name"]], sock)
        group.target, group.release = g["target"], g["release"]
    engine.started_at = state["started_at"]


async def carry_on(engine: EngineApi, state: dict[str, Any]) -> int:
    """History, the helper, every worker and the control socket; returns how many workers kept running.
    Exits that happened while no engine listened (state "ended": pid -> wait status) are handed to
    the spawner first, so each such worker records its exit and restarts as after any crash."""
    if "history" in state:
        carry.restore_engine(engine, state["history"])
    if state["helper"] is not None:
        engine.spawner.adopt(state["helper"]["fd"], state["helper"]["pid"], state["helper"].get("approvals", False))
    for pid, status in state.get("ended", {}).items():
        engine.spawner.ended_meanwhile(int(pid), status)
    kept = 0
    for g in state["groups"]:
        group = engine.groups[g["name"]]
        if "history" in g:
            carry.restore_group(group, g["history"])
        for info in g["workers"]:
            w = group.workers[info["slot"]] = group.new_worker(info["slot"])
            child = None
            if info["state"] in (WorkerState.RUNNING, WorkerState.STARTING):
                child = Child(info["pid"], info["stdout"] if info["stdout"] is not None else -1,
                              info["stderr"] if info["stderr"] is not None else -1, info["started"],
                              parent=group.spawner.helper_pid)
                kept += 1
            w.adopt(info, child)
            if "history" in info:
                carry.restore_worker(w, info["history"])
        # instances that wait for their depends_on start when it holds, as they would have there
        group.deps_pending = any(w.state == WorkerState.WAITING and not (w.reason or "").startswith("scheduled")
                                 for w in group.workers.values())
    if state["control"] is not None:
        await engine.serve_control(socket.socket(fileno=state["control"]))
    return kept


def _say(chan: socket.socket, line: str) -> None:
    try:
        chan.sendall(line.replace("\n", " ").encode() + b"\n")
    except OSError:
        pass


def _readline(sock: socket.socket, tick: Callable[[], None] | None = None) -> str:
    """One line from the other engine, within TIMEOUT s; `tick` is called at least every TICK s meanwhile."""
    data = b""
    deadline = time.monotonic() + TIMEOUT
    if tick is not None:
        sock.settimeout(TICK)
    while not data.endswith(b"\n"):
        if tick is not None:
            tick()
        if time.monotonic() > deadline:
            raise TimeoutError("no answer")
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            if tick is None:
                raise
            continue
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()
