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
The helper ends its instances and exits when every holder of the engine's end has closed it.

This file runs as a script (`python -I forkserver.py FD`): it imports only the standard library,
which keeps the helper small and its fork cheap.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
SPARE_IDLE_MS = 5          # quiet time before a new spare is forked: never during a burst of spawns
MAX_MSG = 1 << 20
NOT_FOUND_EXIT = 127
CANNOT_START_EXIT = 126
ORPHANED_EXIT = 125
# Signals this helper (or Python) sets to SIG_IGN; everything else is already default after exec.
RESET_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)
# The helper ignores these (they are the engine's business); a forked child must not, from its
# first instruction: the engine may stop an instance before it has exec'd.
STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def _fork() -> int:
    """fork() with the stop signals blocked across it: the child sets them back to default before it
    unblocks them, so one sent in between is held, then acted on, never ignored."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    if pid == 0:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pid

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int | bytes) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def _child(req: dict, fds: list[int], helper_pid: int) -> None:
    """In the forked child: never returns."""
    try:
        os.setsid()
        # Lift the received fds out of 0-3 first, so the dup2s below never overwrite one another.
        fds = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        keep = 3
        if req.get("listen"):
            os.dup2(fds[2], 3)
            keep = 4
        os.closerange(keep, 1 << 20)
        if "uid" in req:
            # Groups first, uid last: once the uid is not root, the others cannot change any more.
            try:
                os.setgroups(req["groups"])
                os.setgid(req["gid"])
                os.setuid(req["uid"])
            except OSError as e:
                os.write(2, f"oxtui: cannot run as uid {req['uid']} gid {req['gid']}: {e.strerror}\n".encode())
                os._exit(CANNOT_START_EXIT)
        # After the uid change: the kernel clears the parent-death signal when credentials change.
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != helper_pid:        # the helper died between fork and prctl
            os._exit(ORPHANED_EXIT)
        # Handlers vanish at exec by themselves; ignored signals would be inherited.
        for sig in RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        env = req["env"]
        if req.get("listen"):
            env["LISTEN_PID"] = str(os.getpid())
        try:
            os.chdir(req["cwd"])
        except OSError as e:
            os.write(2, f"oxtui: cannot enter {req['cwd']}: {e.strerror}\n".encode())
            os._exit(CANNOT_START_EXIT)
        argv = req["argv"]
        try:
            # The engine resolved the program on PATH already; execvpe is the fallback.
            if req.get("path"):
                os.execve(req["path"], argv, env)
            os.execvpe(argv[0], argv, env)
        except FileNotFoundError:
            os.write(2, f"oxtui: {argv[0]}: not found\n".encode())
            os._exit(NOT_FOUND_EXIT)
        except OSError as e:
            os.write(2, f"oxtui: {argv[0]}: {e.strerror}\n".encode())
            os._exit(CANNOT_START_EXIT)
    except BaseException:
        os._exit(CANNOT_START_EXIT)


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
                _reap(sock)
            else:
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MSG, 3)
                except OSError:
                    return
                if not msg:
                    _drop_spare()
                    _stop_orphans()             # the engine closed its end: it is gone or done
                    return
                req = json.loads(msg)
                if req.get("cmd") == "pdeathsig":
                    _set_pdeathsig(sock, req)
                else:
                    _spawn(sock, req, fds, helper_pid)
        _reap(sock)


_spawned: set[int] = set()     # instances; other children are orphans adopted as subreaper
_spare: tuple[int, socket.socket] | None = None     # (pid, our end of its socket)
_spare_wait_ms = SPARE_IDLE_MS


def _fork_spare(helper_pid: int) -> None:
    global _spare, _spare_wait_ms
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = _fork()
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
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != helper_pid:
            os._exit(ORPHANED_EXIT)
        _prctl(PR_SET_NAME, b"oxtui-spare")     # so `ps` tells it from the helper
        # The engine's socket and the wake-up pipe are the helper's: holding them would keep the
        # engine from seeing the helper's end close.
        keep = conn.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 20)
        msg, fds, _flags, _addr = socket.recv_fds(conn, MAX_MSG, 3)
        if not msg:
            os._exit(0)                         # the helper dropped us (shutting down)
        _child(json.loads(msg), fds, helper_pid)
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


def _spawn(sock: socket.socket, req: dict, fds: list[int], helper_pid: int) -> None:
    got = time.monotonic_ns()
    try:
        pid = _hand_to_spare(req, fds) or _fork()
    except OSError as e:
        reply = {"id": req["id"], "error": f"fork failed: {e.strerror}"}
    else:
        if pid == 0:
            _child(req, fds, helper_pid)
        _spawned.add(pid)
        # CLOCK_MONOTONIC is the machine's: these times line up with the engine's (the restart timeline)
        reply = {"id": req["id"], "pid": pid, "t": [got, time.monotonic_ns()]}
    for fd in fds:
        os.close(fd)
    sock.send(json.dumps(reply).encode())


def _set_pdeathsig(sock: socket.socket, req: dict) -> None:
    """Before the engine hands its workers to a new engine process: stop dying with this one (and
    again when that fails). The socket to the engine still ends every instance when it closes."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL if req["on"] else 0)
    sock.send(json.dumps({"id": req["id"], "ok": True}).encode())


def _reap(sock: socket.socket) -> None:
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
        _spawned.discard(pid)
        try:
            sock.send(json.dumps({"exit": pid, "status": status, "t": time.monotonic_ns()}).encode())
        except OSError:
            return


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
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != engine_pid:
        sys.exit(ORPHANED_EXIT)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Ctrl-C in the engine's terminal, a hang-up, or a SIGTERM sent to the engine's whole process group
    # (`timeout`, `kill -- -PGID`) are the engine's business: it stops the instances gracefully. The
    # helper goes when the engine does (PDEATHSIG); dying first would SIGKILL every instance.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    serve(sock)


if __name__ == "__main__":
    main()
