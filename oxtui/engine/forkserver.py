"""The spawner: a small single-threaded helper process that forks every instance.

Why: an instance must die with the engine (PR_SET_PDEATHSIG), start in its own session, find the
listening socket at fd 3 and know its own PID (LISTEN_PID) before exec. posix_spawn cannot call
prctl, and `setpriv --pdeathsig ... sh -c 'exec ...'` costs two extra execs per start (about 2 ms
of a 5 ms restart). preexec_fn is unsafe once the process has threads (the TUI's engine runs on
one). This helper has no threads, so it forks and does that set-up in the child safely, then
exec's the program directly. One interpreter start per engine, not per instance.

The fork itself is kept off a restart's path: the helper keeps one *spare* child, forked while
idle, that waits on its own socket. A request is handed to it (one message) and it only does the
set-up and exec; a new spare is forked once the helper has had 5 ms without a request, so a burst
(a scale to 1000) forks directly and a lone crash restart finds a spare ready.

The helper dies with the engine (its own PDEATHSIG, checked after set-up) and the instances (and
the spare) die with the helper. It is also a child subreaper: a daemonising grandchild is
re-parented here, not to init, and is reaped.

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
  engine -> helper: {"id", "cmd": "reexec", "path": forkserver.py}  ->  {"id", "ok": true} from the new program
                    (an upgrade: the helper exec's the installed oxtui's helper in place, keeping its pid,
                    its socket and its children; its spare, a copy of the old program, is ended first)
The helper ends its instances and exits when every holder of the engine's end has closed it.

This file runs as a script (`python -I -S forkserver.py FD`): it imports only the standard library,
which keeps the helper small and its fork cheap. Without `site` too: the .pth files of a venv (an
editable install's finder, setuptools' distutils hack) cost 1.2 MB in the helper, and in its spare.
"""

from __future__ import annotations

import array
import fcntl
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
    from .forkchild import (CANNOT_START_EXIT, ORPHANED_EXIT, PR_SET_CHILD_SUBREAPER, PR_SET_NAME,
                            PR_SET_PDEATHSIG, become_instance, fork, prctl)
else:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    from forkchild import (CANNOT_START_EXIT, ORPHANED_EXIT, PR_SET_CHILD_SUBREAPER, PR_SET_NAME,  # type: ignore[no-redef]
                           PR_SET_PDEATHSIG, become_instance, fork, prctl)

SPARE_IDLE_MS = 5          # quiet time before a new spare is forked: never during a burst of spawns
MAX_MSG = 1 << 20


def recv_with_fds(sock: socket.socket, maxfds: int, flags: int = 0) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it. (socket.recv_fds ignores its flags before Python
    3.12: MSG_DONTWAIT would block.)"""
    fds = array.array("i")
    msg, ancdata, _flags, _addr = sock.recvmsg(MAX_MSG, socket.CMSG_LEN(maxfds * fds.itemsize), flags)
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


def serve(sock: socket.socket) -> None:
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
            events = poller.poll(_spare_wait_ms if _spare is None else None)
        except InterruptedError:
            continue
        if not events:
            _fork_spare(helper_pid)
            continue
        for fd, _ in events:
            if fd == wake_r:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(sock, helper_pid, wake_w)
            else:
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MSG, 3)
                except OSError:
                    return
                if not msg:
                    _drop_spare()
                    _stop_orphans()             # the engine closed its end: it is gone or done
                    return
                _on_request(sock, json.loads(msg), fds, helper_pid, wake_w)
        _reap(sock, helper_pid, wake_w)


def _on_request(sock: socket.socket, req: dict, fds: list[int], helper_pid: int, wake_w: int) -> None:
    if req.get("cmd") == "pdeathsig":
        _set_pdeathsig(sock, req)
    elif req.get("cmd") == "reexec":
        _reexec(sock, req, wake_w)
    elif req.get("cmd") == "approve":
        _approve(req, fds)
    elif req.get("cmd") == "revoke":
        _revoke(req["pid"])
    elif "argv" in req:
        _spawn(sock, req, fds, helper_pid)
    else:
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"id": req.get("id"), "error": f"unknown request {req.get('cmd')!r}"}).encode())


def _drain(sock: socket.socket, helper_pid: int, wake_w: int) -> None:
    """Act on every request already queued, without waiting for more."""
    while True:
        try:
            msg, fds = recv_with_fds(sock, 3, socket.MSG_DONTWAIT)
        except OSError:
            return
        if not msg:
            return                              # the engine has gone: serve() sees it next
        _on_request(sock, json.loads(msg), fds, helper_pid, wake_w)


_spawned: set[int] = set()     # instances; other children are orphans adopted as subreaper
_born: dict[int, int] = {}     # instance -> CLOCK_MONOTONIC ns of its fork, for approvals' min_uptime
# instance -> (its spawn request, its listening socket, min uptime s): the engine's leave to restart
# it here at once, without a round trip to the engine and back
_approved: dict[int, tuple[dict, int | None, float]] = {}
_sockets: dict[tuple[int, int], list[int]] = {}    # (st_dev, st_ino) -> [fd, approvals holding it]
_spare: tuple[int, socket.socket] | None = None     # (pid, our end of its socket)
_spare_wait_ms = SPARE_IDLE_MS


def _fork_spare(helper_pid: int) -> None:
    global _spare, _spare_wait_ms
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = fork()
    except OSError:
        ours.close()
        theirs.close()
        _spare_wait_ms = 1000                   # out of processes: try again later, not 200 times a second
        return
    if pid == 0:
        _be_spare(theirs, helper_pid)
    theirs.close()
    _spare, _spare_wait_ms = (pid, ours), SPARE_IDLE_MS


def _be_spare(conn: socket.socket, helper_pid: int) -> None:
    """In a spare child: wait for one request, then become that instance. Never returns."""
    try:
        signal.set_wakeup_fd(-1)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != helper_pid:
            os._exit(ORPHANED_EXIT)
        prctl(PR_SET_NAME, b"oxtui-spare")     # so `ps` tells it from the helper
        # The engine's socket and the wake-up pipe are the helper's: holding them would keep the
        # engine from seeing the helper's end close.
        keep = conn.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 20)
        msg, fds, _flags, _addr = socket.recv_fds(conn, MAX_MSG, 3)
        if not msg:
            os._exit(0)                         # the helper dropped us (shutting down)
        become_instance(json.loads(msg), fds, helper_pid)
    except BaseException:
        os._exit(CANNOT_START_EXIT)


def _take_spare() -> tuple[int, socket.socket] | None:
    global _spare
    spare, _spare = _spare, None
    return spare


def _drop_spare() -> None:
    spare = _take_spare()
    if spare is not None:
        spare[1].close()                        # EOF: it exits by itself
        try:
            os.kill(spare[0], signal.SIGKILL)
            os.waitpid(spare[0], 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _hand_to_spare(req: dict, fds: list[int]) -> int | None:
    """The spare's pid once it holds the request, or None (no spare, or it has died)."""
    spare = _take_spare()
    if spare is None:
        return None
    pid, conn = spare
    try:
        socket.send_fds(conn, [json.dumps(req).encode()], fds)
    except OSError:
        return None                             # it died: _reap collects it as an orphan
    finally:
        conn.close()
    return pid


def _start(req: dict, fds: list[int], helper_pid: int) -> int:
    """A new instance: the request handed to the spare, or a fork (the child never returns from here).
    Raises OSError when neither works."""
    pid = _hand_to_spare(req, fds) or fork()
    if pid == 0:
        become_instance(req, fds, helper_pid)
    _spawned.add(pid)
    _born[pid] = time.monotonic_ns()
    return pid


def _spawn(sock: socket.socket, req: dict, fds: list[int], helper_pid: int) -> None:
    got = time.monotonic_ns()
    try:
        pid = _start(req, fds, helper_pid)
    except OSError as e:
        reply = {"id": req["id"], "error": f"fork failed: {e.strerror}"}
    else:
        # CLOCK_MONOTONIC is the machine's: these times line up with the engine's (the restart timeline)
        reply = {"id": req["id"], "pid": pid, "t": [got, _born[pid]]}
    for fd in fds:
        os.close(fd)
    sock.send(json.dumps(reply).encode())


def _reexec(sock: socket.socket, req: dict, wake_w: int) -> None:
    """Become the helper program at req["path"] (the oxtui installed now): same pid, same children.
    When the exec fails, this program carries on as it was and says why."""
    _drop_spare()
    for pid in list(_approved):                 # the new program starts with none: the engine arms again
        _revoke(pid)
    signal.set_wakeup_fd(-1)
    os.set_inheritable(sock.fileno(), True)
    resume = json.dumps({"id": req["id"], "spawned": sorted(_spawned)})
    try:
        os.execv(sys.executable, [sys.executable, "-I", "-S", req["path"], str(sock.fileno()), "0", resume])
    except OSError as e:
        os.set_inheritable(sock.fileno(), False)
        signal.set_wakeup_fd(wake_w)
        sock.send(json.dumps({"id": req["id"], "error": f"cannot exec {req['path']}: {e.strerror}"}).encode())


def _set_pdeathsig(sock: socket.socket, req: dict) -> None:
    """Before the engine hands its workers to a new engine process: stop dying with this one (and
    again when that fails). The socket to the engine still ends every instance when it closes."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL if req["on"] else 0)
    sock.send(json.dumps({"id": req["id"], "ok": True}).encode())


def _approve(req: dict, fds: list[int]) -> None:
    _revoke(req["pid"])
    listen = _hold_socket(fds[0]) if fds else None
    if req["pid"] not in _spawned:              # it has ended already: its exit went the usual way
        _let_go_socket(listen)
        return
    _approved[req["pid"]] = (req["spawn"], listen, req["min_uptime"])


def _revoke(pid: int) -> None:
    approval = _approved.pop(pid, None)
    if approval is not None:
        _let_go_socket(approval[1])


def _hold_socket(fd: int) -> int:
    """One fd per listening socket however many approvals hold it (1000 instances share one)."""
    st = os.fstat(fd)
    held = _sockets.setdefault((st.st_dev, st.st_ino), [fd, 0])
    if held[0] != fd:
        os.close(fd)
    held[1] += 1
    return held[0]


def _let_go_socket(fd: int | None) -> None:
    for key, held in list(_sockets.items()):
        if held[0] == fd:
            held[1] -= 1
            if held[1] == 0:
                os.close(fd)
                del _sockets[key]


def _restart(pid: int, status: int, msg: dict, helper_pid: int) -> list[int]:
    """The approved restart of instance `pid`, which has just ended: fills msg["then"] and returns the
    new process's read ends, or does nothing (returns []) when the approval does not cover this end."""
    req, listen, min_uptime = _approved.pop(pid)
    try:
        born = _born.get(pid)
        uptime = (time.monotonic_ns() - born) / 1e9 if born is not None else 0.0
        if uptime < min_uptime:
            return []
        try:
            os.killpg(pid, signal.SIGKILL)      # what is left of its group, as the engine ends it after a crash
        except OSError:
            pass
        got = time.monotonic_ns()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            fcntl.fcntl(out_w, fcntl.F_SETPIPE_SZ, 256 * 1024)    # as the engine's spawn does (spawn.py)
        except OSError:
            pass
        fds = [out_w, err_w] + ([listen] if listen is not None else [])
        try:
            new = _start(req, fds, helper_pid)
        except OSError:
            os.close(out_r)
            os.close(err_r)
            return []
        finally:
            os.close(out_w)
            os.close(err_w)
        msg["then"] = {"pid": new, "t": [got, _born[new]]}
        return [out_r, err_r]
    finally:
        _let_go_socket(listen)


def _reap(sock: socket.socket, helper_pid: int, wake_w: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid not in _spawned:
            if _spare is not None and pid == _spare[0]:
                _take_spare()[1].close()        # the spare died unused: the next request forks
            continue                            # a re-parented grandchild: reaped, nobody to tell
        # A revoke the engine sent before it signalled this instance is queued by now, since the
        # signal ended it: act on what is queued before deciding on its end. Once per end, not once
        # per batch: while this loop reaps a burst of stops, the engine is still revoking and
        # signalling the later ones.
        _drain(sock, helper_pid, wake_w)
        _spawned.discard(pid)
        msg = {"exit": pid, "status": status, "t": time.monotonic_ns()}
        fds = _restart(pid, status, msg, helper_pid) if pid in _approved else []
        _born.pop(pid, None)
        try:
            socket.send_fds(sock, [json.dumps(msg).encode()], fds)
        except OSError:
            return
        finally:
            for fd in fds:
                os.close(fd)


def _stop_orphans(grace: float = 2.0) -> None:
    """Daemons that escaped their instance's process group were re-parented here: end them too,
    so stopping oxtui leaves nothing running. SIGTERM, then SIGKILL after a grace period."""
    import time
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            orphans = [int(p) for p in f.read().split()]
    except OSError:
        return
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while orphans and time.monotonic() < deadline:
        for pid in list(orphans):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    orphans.remove(pid)
            except ChildProcessError:
                orphans.remove(pid)
        time.sleep(0.02)
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    engine_pid = int(sys.argv[2])
    if len(sys.argv) > 3:
        # exec'd in place by an upgrade (_reexec): the instances are still our children; the engine is
        # not our parent any more (it handed over), and our end of its socket says when it goes
        resume = json.loads(sys.argv[3])
        _spawned.update(resume["spawned"])
        os.set_inheritable(sock.fileno(), False)
        sock.send(json.dumps({"id": resume["id"], "ok": True}).encode())
    else:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != engine_pid:
            sys.exit(ORPHANED_EXIT)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Ctrl-C in the engine's terminal, a hang-up, or a SIGTERM sent to the engine's whole process group
    # (`timeout`, `kill -- -PGID`) are the engine's business: it stops the instances gracefully. The
    # helper goes when the engine does (PDEATHSIG); dying first would SIGKILL every instance.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    serve(sock)


if __name__ == "__main__":
    main()
