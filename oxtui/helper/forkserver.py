"""The spawner: a small single-threaded helper process that forks every instance.

Why: an instance must die with its keeper (PR_SET_PDEATHSIG), start in its own session, find the
listening socket at fd 3 and know its own PID (LISTEN_PID) before exec. posix_spawn cannot call
prctl, and `setpriv --pdeathsig ... sh -c 'exec ...'` costs two extra execs per start (about 2 ms
of a 5 ms restart). preexec_fn is unsafe once the process has threads (the TUI's engine runs on
one). This helper has no threads, so it forks and does that set-up in the child safely, then
exec's the program directly. One interpreter start per engine, not per instance.

The fork itself is kept off a restart's path: a *spare* child, forked while idle, waits to become the
next instance (spare.py).

The helper is also the keeper (keeper.py): it outlives the engine, holds what a new engine needs,
and starts one when the engine dies without a "bye". The instances (and the spare) die with the
helper (PDEATHSIG): a SIGKILLed keeper leaves no orphan. It is also a child subreaper: a daemonising
grandchild is re-parented here, not to init, and is reaped.

Protocol over a SOCK_SEQPACKET socketpair, one JSON message per packet:
  engine -> helper: {"id", "argv", "cwd", "env", "listen": bool(, "uid", "gid", "groups")}
                    with fds [stdout, stderr(, socket)]
  helper -> engine: {"id", "pid", "t"} or {"id", "error"};  {"exit": pid, "status": wait status, "t"}
                    (t: CLOCK_MONOTONIC ns of the request, the fork, the reap: the restart timeline)
  engine -> helper: {"id", "cmd": "pdeathsig", "on": bool}  ->  {"id", "ok": true}
  engine -> helper: {"cmd": "approve", "pid", "spawn": request, "min_uptime"} with fds [socket] or []:
                    when instance pid ends (after min_uptime s), start `spawn` at once and report
                    both in one message:
                    {"exit", "status", "t", "then": {"pid", "t"}} with fds [stdout, stderr] (read ends)
  engine -> helper: {"cmd": "revoke", "pid"} (sent before the engine signals an instance itself)
  engine -> keeper: a spawn request's "tag" and "keep": n (its last n fds are read ends the keeper
                    holds), and the keeper's own messages (keeper.py)
  engine -> helper: {"id", "cmd": "reexec", "path": forkserver.py}  ->  {"id", "ok": true} from the new program
                    (an upgrade: the helper exec's the installed oxtui's helper in place, keeping its pid,
                    its socket and its children; its spare, a copy of the old program, is ended first)
After a "bye" (or for an engine that never said who it is) the helper ends its instances and exits
when every holder of the engine's end has closed it.

This file runs as a script (`python -I -S forkserver.py FD`): it imports only the standard library,
which keeps the helper small and its fork cheap. Without `site` too: the .pth files of a venv (an
editable install's finder, setuptools' distutils hack) cost 1.2 MB in the helper, and in its spare.
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import sys
import time

# The child's side (fork, set-up, exec) is a file of its own beside this one; run as a script, the
# helper has no package to import it from, so it appends its own folder (after the standard library).
if __package__:
    from .approved import Approved
    from .forkchild import (
        CANNOT_START_EXIT,
        ORPHANED_EXIT,
        PR_SET_CHILD_SUBREAPER,
        PR_SET_NAME,
        PR_SET_PDEATHSIG,
        become_instance,
        fork,
        prctl,
    )
    from .keeper import KEEPER_MESSAGES, Keeper, stop_orphans
    from .spare import Spare
else:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    from approved import Approved  # type: ignore[no-redef]
    from forkchild import (  # type: ignore[no-redef]
        CANNOT_START_EXIT,
        ORPHANED_EXIT,
        PR_SET_CHILD_SUBREAPER,
        PR_SET_NAME,
        PR_SET_PDEATHSIG,
        become_instance,
        fork,
        prctl,
    )
    from keeper import KEEPER_MESSAGES, Keeper, stop_orphans  # type: ignore[no-redef]
    from spare import Spare  # type: ignore[no-redef]

MAX_MSG = 1 << 20
MAX_FDS = 5                # a spawn: stdout, stderr, the socket, and the two read ends the keeper holds


def recv_with_fds(sock: socket.socket, maxfds: int, flags: int = 0) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it. (socket.recv_fds ignores its flags before Python
    3.12: MSG_DONTWAIT would block.)"""
    fds = array.array("i")
    msg, ancdata, _flags, _addr = sock.recvmsg(MAX_MSG, socket.CMSG_LEN(maxfds * fds.itemsize), flags)
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


def serve(sock: socket.socket, engine_pid: int) -> None:
    global _sock
    _sock = sock
    KEEP.engine_pid = engine_pid
    helper_pid = os.getpid()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)   # a handler, so the wakeup fd hears about exits
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        try:
            events = poller.poll(_poll_timeout_ms())
        except InterruptedError:
            continue
        KEEP.watchdog(_sock is not None)
        if KEEP.relaunch_at is not None and time.monotonic() >= KEEP.relaunch_at:
            _launch_engine(poller)
        if not events:
            if SPARE.child is None:
                SPARE.fork(helper_pid)
            continue
        for fd, _ in events:
            if fd == wake_r:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(helper_pid, wake_w)
            elif _sock is None and fd == KEEP.held.get("control"):
                if KEEP.answer_in_its_stead(_spawned, _stop_without_engine):
                    return                      # `oxtui down` while no engine could start: all stopped
            elif _sock is not None and fd == _sock.fileno():
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(_sock, MAX_MSG, MAX_FDS)
                except OSError:
                    msg, fds = b"", []
                if not msg:
                    if not KEEP.replaces_engines:
                        SPARE.drop()
                        stop_orphans()         # the engine closed its end: it is gone or done
                        return
                    _engine_lost(poller)
                    continue
                _on_request(_sock, json.loads(msg), fds, helper_pid, wake_w)
        _reap(helper_pid, wake_w)


_sock: socket.socket | None = None


def _poll_timeout_ms() -> int | None:
    waits = KEEP.timeout_ms()
    if SPARE.child is None:
        waits.append(SPARE.wait_ms)
    return min(waits) if waits else None


def _on_request(sock: socket.socket, req: dict, fds: list[int], helper_pid: int, wake_w: int) -> None:
    cmd = req.get("cmd")
    if cmd == "pdeathsig":
        _set_pdeathsig(sock, req)
    elif cmd == "reexec":
        _reexec(sock, req, wake_w)
    elif cmd == "approve":
        APPROVED.approve(req, fds, _spawned)
    elif cmd == "revoke":
        APPROVED.revoke(req["pid"])
    elif cmd in KEEPER_MESSAGES:
        KEEP.handle(req, fds, _spawned)
        if "id" in req:                         # the engine waits for it (a port closed: closed here too)
            sock.send(json.dumps({"id": req["id"], "ok": True}).encode())
    elif "argv" in req:
        _spawn(sock, req, fds, helper_pid)
    else:
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"id": req.get("id"), "error": f"unknown request {cmd!r}"}).encode())


def _drain(helper_pid: int, wake_w: int) -> None:
    """Act on every request already queued, without waiting for more."""
    while _sock is not None:
        sock = _sock
        try:
            msg, fds = recv_with_fds(sock, MAX_FDS, socket.MSG_DONTWAIT)
        except OSError:
            return
        if not msg:
            return                              # the engine has gone: serve() sees it next
        _on_request(sock, json.loads(msg), fds, helper_pid, wake_w)


_spawned: set[int] = set()     # instances; other children are orphans adopted as subreaper
_born: dict[int, int] = {}     # instance -> CLOCK_MONOTONIC ns of its fork, for approvals' min_uptime
APPROVED = Approved()                         # the engine's leave to restart an instance here at once
SPARE = Spare()

KEEP = Keeper()


def _start(req: dict, fds: list[int], helper_pid: int) -> int:
    """A new instance: the request handed to the spare, or a fork (the child never returns from here).
    Raises OSError when neither works."""
    pid = SPARE.hand(req, fds) or fork()
    if pid == 0:
        become_instance(req, fds, helper_pid)
    _spawned.add(pid)
    _born[pid] = time.monotonic_ns()
    return pid


def _spawn(sock: socket.socket, req: dict, fds: list[int], helper_pid: int) -> None:
    got = time.monotonic_ns()
    keep = req.pop("keep", 0)
    held = fds[len(fds) - keep:] if keep else []
    fds = fds[:len(fds) - keep] if keep else fds
    try:
        pid = _start(req, fds, helper_pid)
    except OSError as e:
        reply = {"id": req["id"], "error": f"fork failed: {e.strerror}"}
        for fd in held:
            os.close(fd)
    else:
        # CLOCK_MONOTONIC is the machine's: these times line up with the engine's (the restart timeline)
        reply = {"id": req["id"], "pid": pid, "t": [got, _born[pid]]}
        KEEP.spawned(pid, held, req.get("tag"))
    for fd in fds:
        os.close(fd)
    sock.send(json.dumps(reply).encode())


def _reexec(sock: socket.socket, req: dict, wake_w: int) -> None:
    """Become the helper program at req["path"] (the oxtui installed now): same pid, same children.
    When the exec fails, this program carries on as it was and says why."""
    SPARE.drop()
    APPROVED.revoke_all()                       # the new program starts with none: the engine arms again
    signal.set_wakeup_fd(-1)
    kept, kept_fds = KEEP.carried()
    carried = [sock.fileno(), *kept_fds]
    for fd in carried:
        os.set_inheritable(fd, True)
    resume = json.dumps({"id": req["id"], "spawned": sorted(_spawned), **kept}, separators=(",", ":"))
    try:
        os.execv(sys.executable, [sys.executable, "-I", "-S", req["path"], str(sock.fileno()), "0", resume])
    except OSError as e:
        for fd in carried:
            os.set_inheritable(fd, False)
        signal.set_wakeup_fd(wake_w)
        sock.send(json.dumps({"id": req["id"], "error": f"cannot exec {req['path']}: {e.strerror}"}).encode())


def _set_pdeathsig(sock: socket.socket, req: dict) -> None:
    """Before the engine hands its workers to a new engine process: stop dying with this one (and
    again when that fails). The socket to the engine still ends every instance when it closes."""
    # A keeper (an engine said who it is) never dies with the engine: it starts a new one instead.
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL if req["on"] and KEEP.identity is None else 0)
    sock.send(json.dumps({"id": req["id"], "ok": True}).encode())


def _restart(pid: int, msg: dict, helper_pid: int) -> list[int]:
    """The approved restart of instance `pid`, which has just ended: fills msg["then"] and returns the
    new process's read ends, or does nothing (returns []) when the approval does not cover this end."""
    got = time.monotonic_ns()
    done = APPROVED.restart(pid, _born.get(pid), lambda req, fds: _start(req, fds, helper_pid))
    if done is None:
        return []
    new, out_r, err_r = done
    msg["then"] = {"pid": new, "t": [got, _born[new]]}
    KEEP.restarted(pid, new, out_r, err_r)
    return [out_r, err_r]


def _reap(helper_pid: int, wake_w: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid not in _spawned:
            if not SPARE.died(pid):
                KEEP.reaped_engine(pid, status)
            continue                            # a re-parented grandchild (or an engine): nobody to tell
        # A revoke the engine sent before it signalled this instance is queued by now, since the
        # signal ended it: act on what is queued before deciding on its end. Once per end, not once
        # per batch: while this loop reaps a burst of stops, the engine is still revoking and
        # signalling the later ones.
        _drain(helper_pid, wake_w)
        _spawned.discard(pid)
        msg = {"exit": pid, "status": status, "t": time.monotonic_ns()}
        fds = _restart(pid, msg, helper_pid) if pid in APPROVED.approved else []
        _born.pop(pid, None)
        try:
            if _sock is None:
                raise OSError("no engine")
            # (a new engine still adopting reads it from its queue once it has: after the inventory)
            socket.send_fds(_sock, [json.dumps(msg).encode()], fds)
        except OSError:
            KEEP.ended[pid] = status            # the next engine gets it, with the pipes still held
        else:
            KEEP.forget(pid)
        finally:
            for fd in fds:
                os.close(fd)


# ---- the keeper: a new engine when the engine dies (keeper.py keeps the books) ---------------------

def _engine_lost(poller: select.poll) -> None:
    """The engine's end closed without a "bye": it died. Start a new one (now, or after a back-off
    when the last one we started died before it adopted the workers)."""
    global _sock
    assert _sock is not None
    poller.unregister(_sock.fileno())
    _sock.close()
    _sock = None
    APPROVED.revoke_all()                       # the new engine arms its own approvals
    if KEEP.engine_died() and "control" in KEEP.held:
        poller.register(KEEP.held["control"], select.POLLIN)   # meanwhile `oxtui status` gets our word


def _launch_engine(poller: select.poll) -> None:
    """Fork and exec a new engine that inherits every held descriptor, and give it the inventory."""
    global _sock
    if "control" in KEEP.held:
        try:
            poller.unregister(KEEP.held["control"])
        except KeyError:
            pass
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    inventory, passed = KEEP.inventory(_spawned, os.getpid())
    try:
        pid = fork()
    except OSError as e:
        ours.close()
        theirs.close()
        assert KEEP.lost is not None
        KEEP.lost["last"] = f"fork failed: {e.strerror}"
        KEEP.relaunch_at = time.monotonic() + 30
        return
    if pid == 0:
        try:
            prctl(PR_SET_NAME, b"oxtui")
            KEEP.exec_engine(theirs, passed)
        finally:
            os._exit(CANNOT_START_EXIT)
    theirs.close()
    KEEP.launched(pid)
    _sock = ours
    poller.register(ours.fileno(), select.POLLIN)
    ours.send(json.dumps({"recover": inventory}).encode())


def _stop_without_engine() -> None:
    """`oxtui down` while no engine could start: the keeper ends every instance itself."""
    SPARE.drop()
    KEEP.stop_all(_spawned)
    stop_orphans()


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    engine_pid = int(sys.argv[2])
    if len(sys.argv) > 3:
        # exec'd in place by an upgrade (_reexec): the instances are still our children; the engine is
        # not our parent any more (it handed over), and our end of its socket says when it goes
        resume = json.loads(sys.argv[3])
        _spawned.update(resume["spawned"])
        for fd in [sock.fileno(), *KEEP.restore(resume)]:
            os.set_inheritable(fd, False)
        engine_pid = KEEP.engine_pid or 0
        sock.send(json.dumps({"id": resume["id"], "ok": True}).encode())
    elif os.getppid() != engine_pid:
        sys.exit(ORPHANED_EXIT)
    # No PDEATHSIG: the keeper outlives the engine (see above). The instances still die with the keeper.
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Ctrl-C in the engine's terminal, a hang-up, or a SIGTERM sent to the engine's whole process group
    # (`timeout`, `kill -- -PGID`) are the engine's business: it stops the instances gracefully.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    serve(sock, engine_pid)


if __name__ == "__main__":
    main()
