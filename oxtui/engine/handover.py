"""Moving a running engine into a new background process, workers and all, without a restart.

Why: an engine embedded in a TUI lives in the process the shell waits for. To give the terminal back
and keep serving, that process must end, yet its workers are children of its spawner helper, their
output comes through pipes it reads, and their sockets are bound by it. So everything is handed
over as file descriptors: the oxfile's lock, the control socket, each listening socket, the
helper's socket and every worker's pipes. The new engine rebuilds its state from a description,
and the old one never runs again.

    old engine                               new engine (`oxtui run --background --adopt FD`)
    checks it can; helper: no PDEATHSIG
    starts the new one with the fds  ------> reads the state, opens sockets, logs, groups
    waits, its loop standing still   <------ "ready"
    "go"                             ------> adopts the helper and workers, serves the control socket
    freezes for good, exits

Until "go" the new engine reads nothing, so when anything fails the old one carries on as if
nothing happened (the helper dies with it again).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, load
from ..protocol import WorkerState
from ..runtime import ENGINE_OUT, open_private
from .errors import CommandError
from .spawn import Child

if TYPE_CHECKING:
    from .engine import Engine

TIMEOUT = 20.0
HANDED_STATES = (WorkerState.RUNNING, WorkerState.STOPPED, WorkerState.EXITED, WorkerState.COMPLETED,
                 WorkerState.FAILED, WorkerState.ERRORED,
                 WorkerState.BACKOFF)


def check(engine: Engine) -> None:
    """Raise CommandError (nothing changed) unless the engine can be handed over now."""
    if engine.stopping:
        raise CommandError("the engine is stopping")
    if engine.applying:
        raise CommandError("an apply is running; try again when it is done")
    for g in engine.groups.values():
        if g.reload is not None and g.reload.active:
            raise CommandError(f"{g.name}: a rolling reload is running; try again when it is done")
        busy = [w.label for w in g.all_workers() if w.role is not None or w.state not in HANDED_STATES]
        if busy:
            raise CommandError(f"{', '.join(busy)} starting or stopping; try again in a moment")
    try:
        on_disk = load(engine.config.path)
    except ConfigError as e:
        raise CommandError(f"{engine.config.path} has errors now ({e.errors[0]}); fix it first") from None
    if on_disk.processes != engine.config.processes or on_disk.logs != engine.config.logs:
        raise CommandError(f"{engine.config.path} changed since the engine read it; apply it first (a), "
                           "or undo the change")


def hand_over(engine: Engine) -> int:
    """Start the new engine and give it everything; returns its pid. Blocks the engine's loop on
    purpose: nothing may happen here while the new engine takes stock. After a successful return
    the caller must never let this engine run again."""
    check(engine)
    engine.logs.flush()
    helper = engine.spawner.release()
    ours, theirs = socket.socketpair()
    proc: subprocess.Popen[bytes] | None = None
    try:
        state, fds = describe(engine, helper)
        out = open_private(engine.logs.dir / ENGINE_OUT)
        with out:
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "oxtui", "run", "--background", "--adopt", str(theirs.fileno()),
                 str(engine.config.path)],
                pass_fds=[*fds, theirs.fileno()], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=engine.config.path.parent, start_new_session=True)
        theirs.close()
        ours.settimeout(TIMEOUT)
        ours.sendall(json.dumps(state).encode() + b"\n")
        reply = _readline(ours)
        if reply != "ready":
            raise CommandError(f"the new engine said: {reply or 'nothing'} (see {engine.logs.dir / ENGINE_OUT})")
        ours.sendall(b"go\n")
    except (OSError, CommandError) as e:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if helper is not None:
            engine.spawner.rearm()
        raise CommandError(f"could not move to the background: {e}") from None
    finally:
        ours.close()
        theirs.close()
    return proc.pid


def describe(engine: Engine, helper: tuple[int, int] | None) -> tuple[dict[str, Any], list[int]]:
    fds: list[int] = []

    def fd(n: int | None) -> int | None:
        if n is not None and n >= 0:
            fds.append(n)
            return n
        return None

    assert engine.lock_fd is not None and engine.control is not None
    groups = []
    for g in engine.groups.values():
        workers = [w.handover_info() for w in g.workers.values()]
        if None in workers or not engine.spawner.quiet():
            raise CommandError("a worker has just exited; try again in a moment")
        for w in workers:
            w["stdout"], w["stderr"] = fd(w["stdout"]), fd(w["stderr"])
        groups.append({"name": g.name, "sock": fd(g.listen_fd), "target": g.target, "release": g.release,
                       "workers": workers})
    state = {"oxfile": str(engine.config.path), "from_pid": os.getpid(), "started_at": engine.started_at,
             "lock": fd(engine.lock_fd), "control": fd(engine.control.listener_fd()),
             "helper": None if helper is None else {"fd": fd(helper[0]), "pid": helper[1]}, "groups": groups}
    return state, fds


async def adopt(engine: Engine, channel_fd: int) -> None:
    """The new engine's side. Raises EngineError-worthy OSError/ValueError before "ready"."""
    chan = socket.socket(fileno=channel_fd)
    chan.settimeout(TIMEOUT)
    try:
        state = json.loads(_readline(chan))
        names = [g["name"] for g in state["groups"]]
        if state["oxfile"] != str(engine.config.path) or names != [p.name for p in engine.config.processes]:
            raise ValueError("the oxfile on disk is not the one the old engine runs")
        engine.adopt_lock(state["lock"])
        engine.logs.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cfgs = {p.name: p for p in engine.config.processes}
        for g in state["groups"]:
            sock = socket.socket(fileno=g["sock"]) if g["sock"] is not None else None
            group = engine.add_group(cfgs[g["name"]], sock)
            group.target, group.release = g["target"], g["release"]
        engine.started_at = state["started_at"]
        chan.sendall(b"ready\n")
        go = _readline(chan)     # "" when the old engine is already gone: carry on all the same
        if go not in ("go", ""):
            raise ValueError(f"unexpected {go!r} from the old engine")
    finally:
        chan.close()
    # From here on the old engine is frozen: read the helper and the pipes, serve the socket.
    if state["helper"] is not None:
        engine.spawner.adopt(state["helper"]["fd"], state["helper"]["pid"])
    kept = 0
    for g in state["groups"]:
        group = engine.groups[g["name"]]
        for info in g["workers"]:
            w = group.workers[info["slot"]] = group.new_worker(info["slot"])
            child = None
            if info["state"] == WorkerState.RUNNING:
                child = Child(info["pid"], info["stdout"] if info["stdout"] is not None else -1,
                              info["stderr"] if info["stderr"] is not None else -1, info["started"])
                kept += 1
            w.adopt(info, child)
    await engine.serve_control(socket.socket(fileno=state["control"]))
    engine.logs.emit("oxtui", None, "event", [f"took over from pid {state['from_pid']}: {kept} worker(s) kept "
                                              "running, none restarted"])


def _readline(sock: socket.socket) -> str:
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while not data.endswith(b"\n"):
        if time.monotonic() > deadline:
            raise TimeoutError("no answer")
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()
