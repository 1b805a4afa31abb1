"""The spawner: a small single-threaded helper process that forks every instance.

Why: an instance must die with its keeper (PR_SET_PDEATHSIG), start in its own session, find the
listening socket at fd 3 and know its own PID (LISTEN_PID) before exec. posix_spawn cannot call
prctl, and `setpriv --pdeathsig ... sh -c 'exec ...'` costs two extra execs per start (about 2 ms
of a 5 ms restart). preexec_fn is unsafe once the process has threads (the TUI's engine runs on
one). This helper has no threads, so it forks and does that set-up in the child safely, then
exec's the program directly. One interpreter start per engine, not per instance.

The fork itself is kept off a restart's path: the helper keeps one *spare* child, forked while
idle, that waits on its own socket. A request is handed to it (one message) and it only does the
set-up and exec; a new spare is forked once the helper has had 5 ms without a request, so a burst
(a scale to 1000) forks directly and a lone crash restart finds a spare ready.

The helper is also the keeper (s6-supervise's idea): it outlives the engine. It holds a copy of
everything a new engine needs to adopt the workers: the oxfile's lock, the control socket, each
listening socket, each instance's output pipes (read ends) and which slot it is. When the engine's
end closes without a "bye" (SIGKILL, the OOM killer, a crash of the TUI it ran in), the keeper starts
a new engine at once (`oxtui run --recover FD`) with those descriptors inherited; that engine adopts
every worker as `oxtui upgrade` does (recovery.py), with the history the old one kept on disk
(journal.py). An engine that dies before it has adopted is started again after 0.5, 1, 2 ... 30 s;
meanwhile the workers serve and their output waits in the pipes the keeper holds open. The
instances (and the spare) die with the keeper (PDEATHSIG): a SIGKILLed keeper leaves no orphan.
It is also a child subreaper: a daemonising grandchild is re-parented here, not to init, and is reaped.

    engine alive ──EOF, no bye──> lost: approvals revoked, exits kept ──> launch (fork, exec)
         ^                                                                   │
         └──────────── "adopted" <── new engine reads the inventory <────────┘
                                     (EOF before "adopted": back off, launch again)

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
  engine -> keeper: a spawn request's "tag" ({"group", "slot", "role"}) and "keep": n: its last n fds
                    are the instance's read ends, held for a new engine until its exit is reported
  engine -> keeper: {"cmd": "hold", "key"} with fds [fd] (lock, control, listen:NAME); {"cmd": "drop", "key"}
  engine -> keeper: {"cmd": "pipes", "pid", "tag"} with fds [stdout, stderr]: an adopted worker's read ends
  engine -> keeper: {"cmd": "identity", "pid", "argv", "cwd", "out"}: how to start a new engine
  engine -> keeper: {"cmd": "bye"} (a stop asked for: the end closing next means stop everything)
  keeper -> engine: {"recover": inventory}, first on a new engine's socket; engine -> keeper: {"cmd": "adopted"}
  engine -> keeper: {"cmd": "beat"} (systemd's watchdog: the keeper pings systemd while the engine beats)
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
else:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
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

SPARE_IDLE_MS = 5          # quiet time before a new spare is forked: never during a burst of spawns
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
    global _sock, _engine_pid
    _sock, _engine_pid = sock, engine_pid
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
        _watchdog()
        if _relaunch_at is not None and time.monotonic() >= _relaunch_at:
            _launch_engine(poller)
        if not events:
            if _spare is None:
                _fork_spare(helper_pid)
            continue
        for fd, _ in events:
            if fd == wake_r:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(helper_pid, wake_w)
                if _stop_signal["got"] and _sock is None:
                    _stop_without_engine()          # systemctl stop while no engine runs: the keeper stops
                    return
            elif _sock is None and fd == _held.get("control"):
                if _answer_in_its_stead():
                    return                      # `oxtui down` while no engine could start: all stopped
            elif _sock is not None and fd == _sock.fileno():
                try:
                    msg, fds, _flags, _addr = socket.recv_fds(_sock, MAX_MSG, MAX_FDS)
                except OSError:
                    msg, fds = b"", []
                if not msg:
                    if _stop_asked or _identity is None:
                        _drop_spare()
                        _stop_orphans()         # the engine closed its end: it is gone or done
                        return
                    _engine_lost(poller)
                    continue
                _on_request(_sock, json.loads(msg), fds, helper_pid, wake_w)
        _reap(helper_pid, wake_w)


_sock: socket.socket | None = None
_stop_signal = {"got": False}


def _poll_timeout_ms() -> int | None:
    waits = []
    if _spare is None:
        waits.append(_spare_wait_ms)
    if _relaunch_at is not None:
        waits.append(max(0, int((_relaunch_at - time.monotonic()) * 1000) + 1))
    if _beat["usec"]:
        waits.append(max(10, _beat["usec"] // 4000))
    return min(waits) if waits else None


def _on_request(sock: socket.socket, req: dict, fds: list[int], helper_pid: int, wake_w: int) -> None:
    global _identity, _stop_asked, _lost, _relaunch_at, _engine_pid
    cmd = req.get("cmd")
    if cmd == "pdeathsig":
        _set_pdeathsig(sock, req)
    elif cmd == "reexec":
        _reexec(sock, req, wake_w)
    elif cmd == "approve":
        _approve(req, fds)
    elif cmd == "revoke":
        _revoke(req["pid"])
    elif cmd == "hold":
        if fds:
            old = _held.get(req["key"])
            if old is not None and old != fds[0]:
                os.close(old)
            _held[req["key"]] = fds[0]
            for extra in fds[1:]:
                os.close(extra)
    elif cmd == "pipes":                        # an adopted worker's read ends (after an upgrade)
        if len(fds) == 2 and req["pid"] in _spawned:
            for fd in _pipes.pop(req["pid"], ()):
                os.close(fd)
            _pipes[req["pid"]] = (fds[0], fds[1])
            _tags[req["pid"]] = req.get("tag")
        else:
            for fd in fds:
                os.close(fd)
    elif cmd == "drop":
        old = _held.pop(req["key"], None)
        if old is not None:
            os.close(old)
    elif cmd == "identity":                     # (also from an engine that took over by a hand-over)
        _identity, _engine_pid = req, req.get("pid", _engine_pid)
        if req.get("watchdog_usec"):
            _beat["usec"], _beat["last"] = int(req["watchdog_usec"]), time.monotonic()
    elif cmd == "beat":
        _beat["last"] = time.monotonic()
    elif cmd == "bye":
        _stop_asked = True
    elif cmd == "adopted":
        for pid in _inventoried:                # the new engine holds their pipes and has their exits now
            _ended.pop(pid, None)
            _forget(pid)
        _inventoried.clear()
        _lost, _relaunch_at = None, None
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
# instance -> (its spawn request, its listening socket, min uptime s): the engine's leave to restart
# it here at once, without a round trip to the engine and back
_approved: dict[int, tuple[dict, int | None, float]] = {}
_sockets: dict[tuple[int, int], list[int]] = {}    # (st_dev, st_ino) -> [fd, approvals holding it]
_spare: tuple[int, socket.socket] | None = None     # (pid, our end of its socket)
_spare_wait_ms = SPARE_IDLE_MS

# The keeper's part: what a new engine needs when this one dies.
_held: dict[str, int] = {}                 # "lock", "control", "listen:NAME" -> fd
_pipes: dict[int, tuple[int, int]] = {}    # instance -> its read ends (stdout, stderr)
_tags: dict[int, dict] = {}                # instance -> {"group", "slot", "role"}
_ended: dict[int, int] = {}                # instance -> wait status, ended while no engine listened
_identity: dict | None = None              # how to start a new engine; None: an engine that cannot be replaced
_stop_asked = False                        # the engine said "bye": its end closing means stop
_lost: dict | None = None                  # the engine died: {"from_pid", "cause", "at", "attempts", "last"}
_relaunch_at: float | None = None          # CLOCK_MONOTONIC s of the next start of a new engine
_engine_pid: int | None = None
_engine_status: dict[int, int] = {}        # engines this keeper started and reaped -> wait status
_beat: dict = {"last": None, "usec": 0}    # systemd's watchdog relay (see _watchdog)
_inventoried: set[int] = set()             # ended instances listed to the engine being started
RELAUNCH_MAX = 30.0


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
        if len(held) == 2:
            _pipes[pid] = (held[0], held[1])
        if req.get("tag") is not None:
            _tags[pid] = req["tag"]
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
    carried = [sock.fileno(), *_held.values(), *(fd for p in _pipes.values() for fd in p)]
    for fd in carried:
        os.set_inheritable(fd, True)
    resume = json.dumps({"id": req["id"], "spawned": sorted(_spawned), "held": _held,
                         "pipes": {str(k): v for k, v in _pipes.items()}, "tags": {str(k): v for k, v in _tags.items()},
                         "identity": _identity, "bye": _stop_asked}, separators=(",", ":"))
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
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL if req["on"] and _identity is None else 0)
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
        _pipes[new] = (os.dup(out_r), os.dup(err_r))
        if pid in _tags:
            _tags[new] = _tags[pid]
        return [out_r, err_r]
    finally:
        _let_go_socket(listen)


def _reap(helper_pid: int, wake_w: int) -> None:
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
            elif _identity is not None or _lost is not None:
                _engine_status[pid] = status    # an engine this keeper started (or a grandchild: harmless)
                if len(_engine_status) > 64:
                    del _engine_status[next(iter(_engine_status))]
            continue                            # a re-parented grandchild: reaped, nobody to tell
        # A revoke the engine sent before it signalled this instance is queued by now, since the
        # signal ended it: act on what is queued before deciding on its end. Once per end, not once
        # per batch: while this loop reaps a burst of stops, the engine is still revoking and
        # signalling the later ones.
        _drain(helper_pid, wake_w)
        _spawned.discard(pid)
        msg = {"exit": pid, "status": status, "t": time.monotonic_ns()}
        fds = _restart(pid, status, msg, helper_pid) if pid in _approved else []
        _born.pop(pid, None)
        try:
            if _sock is None:
                raise OSError("no engine")
            # (a new engine still adopting reads it from its queue once it has: after the inventory)
            socket.send_fds(_sock, [json.dumps(msg).encode()], fds)
        except OSError:
            _ended[pid] = status                # the next engine gets it, with the pipes still held
        else:
            _forget(pid)
        finally:
            for fd in fds:
                os.close(fd)


def _forget(pid: int) -> None:
    """The engine knows of this instance's end: the keeper's copies of its pipes go."""
    for fd in _pipes.pop(pid, ()):
        os.close(fd)
    _tags.pop(pid, None)


# ---- the keeper: a new engine when the engine dies --------------------------------------------

def _engine_lost(poller: select.poll) -> None:
    """The engine's end closed without a "bye": it died. Start a new one (now, or after a back-off
    when the last one we started died before it adopted the workers)."""
    global _sock, _lost, _relaunch_at
    assert _sock is not None
    poller.unregister(_sock.fileno())
    _sock.close()
    _sock = None
    for pid in list(_approved):                 # the new engine arms its own approvals
        _revoke(pid)
    cause = _death_cause(_engine_pid)
    if _lost is None:
        _lost = {"from_pid": _engine_pid, "cause": cause, "at": time.time(), "attempts": 0, "last": None}
    else:
        _lost["last"] = cause                   # a new engine that died before it adopted
    _lost["attempts"] += 1
    n = _lost["attempts"]
    delay = 0.0 if n == 1 else min(RELAUNCH_MAX, 0.5 * 2 ** (n - 2))
    _relaunch_at = time.monotonic() + delay
    if delay and "control" in _held:            # meanwhile `oxtui status` gets the keeper's word
        poller.register(_held["control"], select.POLLIN)
    _say(f"oxtui keeper: the engine (pid {_engine_pid}) died ({cause}); "
         + ("starting a new one to adopt every worker" if n == 1 else
            f"the new engine died too; try {n} in {delay:g} s, the workers keep serving"))


def _death_cause(pid: int | None) -> str:
    """How the engine ended: its wait status when this keeper started it, else read from /proc while
    it is a zombie (its parent may reap it first: then the cause is not known)."""
    if pid is None:
        return "unknown"
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if pid in _engine_status:
            return _status_text(_engine_status.pop(pid))
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                return _status_text(status)
        except ChildProcessError:
            pass                                # not our child: the first engine, our parent
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return "unknown"
        if fields[0] in ("Z", "X") and len(fields) > 49:
            return _status_text(int(fields[49]))
        time.sleep(0.005)
    return "closed its socket"


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        try:
            return signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _launch_engine(poller: select.poll) -> None:
    """Fork and exec a new engine that inherits every held descriptor, and give it the inventory."""
    global _sock, _relaunch_at, _engine_pid
    assert _identity is not None and _lost is not None
    _relaunch_at = None
    if "control" in _held:
        try:
            poller.unregister(_held["control"])
        except KeyError:
            pass
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    live = sorted(_spawned)
    inventory = {"keeper_pid": os.getpid(), "held": dict(_held), **{k: _lost[k] for k in ("from_pid", "cause", "at",
                                                                                             "attempts")},
                 "workers": [{"pid": pid, "tag": _tags.get(pid), "pipes": list(_pipes.get(pid, (-1, -1))),
                              "status": _ended.get(pid)} for pid in live + sorted(_ended)]}
    passed = [*_held.values(), *(fd for p in _pipes.values() for fd in p), theirs.fileno()]
    _inventoried.clear()
    _inventoried.update(_ended)
    try:
        pid = fork()
    except OSError as e:
        ours.close()
        theirs.close()
        _lost["last"] = f"fork failed: {e.strerror}"
        _relaunch_at = time.monotonic() + RELAUNCH_MAX
        return
    if pid == 0:
        _be_engine(theirs, passed)
    theirs.close()
    _engine_pid = pid
    _sock = ours
    poller.register(ours.fileno(), select.POLLIN)
    ours.send(json.dumps({"recover": inventory}).encode())


def _be_engine(chan: socket.socket, passed: list[int]) -> None:
    """In the forked child: become `oxtui run --recover FD`. Never returns."""
    try:
        assert _identity is not None
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        prctl(PR_SET_NAME, b"oxtui")
        os.setsid()                             # not in the dead engine's terminal or process group
        for fd in passed:
            os.set_inheritable(fd, True)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        if _identity.get("out"):                # a background engine: its output to oxtui-engine.out
            out = os.open(_identity["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
        env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
        os.chdir(_identity["cwd"])
        argv = [*_identity["argv"], "--recover", str(chan.fileno())]
        os.execve(argv[0], argv, env)
    finally:
        os._exit(CANNOT_START_EXIT)


def _answer_in_its_stead() -> bool:
    """While no engine runs (a new one failed to start, and the next try waits), a client of the control
    socket gets the keeper's word instead of hanging in its queue: every request but one is answered
    with what runs, what failed and when the next try is; "shutdown" (`oxtui down`) is obeyed: every
    instance is stopped, the connection closes, and the keeper exits (returns True then)."""
    listener = socket.socket(fileno=os.dup(_held["control"]))
    listener.setblocking(False)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return False
            with conn:
                conn.settimeout(0.5)
                try:
                    for line in conn.makefile("rb"):
                        cmd = json.loads(line).get("cmd") if line.strip() else None
                        if cmd == "shutdown":
                            conn.sendall(b'{"ok": true, "result": null}\n')
                            _stop_without_engine()
                            return True
                        conn.sendall(json.dumps({"ok": False, "error": _why_no_engine(),
                                                 "keeper_pid": os.getpid()}).encode() + b"\n")
                except (OSError, ValueError):
                    pass
    finally:
        listener.close()                        # our dup only: the held listener stays open


def _why_no_engine() -> str:
    assert _lost is not None
    at = time.strftime("%H:%M:%S", time.localtime(_lost["at"]))
    wait = max(0.0, (_relaunch_at or time.monotonic()) - time.monotonic())
    out = (_identity or {}).get("out")
    last = _last_words(out) if out else ""
    return (f"no engine answers right now: the keeper (pid {os.getpid()}) keeps {len(_spawned)} worker(s) running; "
            f"the engine (pid {_lost['from_pid']}) died ({_lost['cause']}) at {at}, and {_lost['attempts'] - 1} new "
            f"engine(s) could not start ({_lost['last']}" + (f": {last}" if last else "") + f"); next try in "
            f"{wait:.0f} s" + (f"; see {out}" if out else ""))


def _last_words(path: str) -> str:
    """The last line a failed new engine wrote (not the keeper's own lines)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    said = [line.strip() for line in lines if line.strip() and "oxtui keeper:" not in line]
    return said[-1] if said else ""


def _watchdog() -> None:
    """Under systemd the keeper is the unit's main process and speaks for the watchdog: WATCHDOG=1
    while the engine beats (or while the keeper itself is bringing up a new one). An engine silent for
    3/4 of WatchdogSec is hung: SIGKILL, and a new engine takes over without restarting any app."""
    usec = _beat["usec"]
    if not usec:
        return
    now = time.monotonic()
    last = _beat["last"] or now
    if _sock is not None and _lost is None and now - last > usec * 0.75 / 1e6 and _engine_pid is not None:
        _say(f"oxtui keeper: the engine (pid {_engine_pid}) has not answered for {now - last:.1f} s "
             "(WatchdogSec): SIGKILL, a new engine takes over")
        _engine_status.pop(_engine_pid, None)
        try:
            os.kill(_engine_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _beat["last"] = now
        _beat["killed"] = _engine_pid
        return
    if now - _beat.get("sent", 0.0) >= usec / 2e6 and (now - last <= usec * 0.75 / 1e6 or _lost is not None):
        _notify(b"WATCHDOG=1")
        _beat["sent"] = now


def _notify(message: bytes) -> None:
    where = os.environ.get("NOTIFY_SOCKET")
    if not where:
        return
    addr = "\0" + where[1:] if where.startswith("@") else where
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message, addr)
    except OSError:
        pass


def _say(line: str) -> None:
    """Where the new engine's own output goes (oxtui-engine.out, or the journal under systemd)."""
    out = (_identity or {}).get("out")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600) if out else 2
        try:
            os.write(fd, (time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n").encode())
        finally:
            if fd != 2:
                os.close(fd)
    except OSError:
        pass


def _on_stop_signal(*_: object) -> None:
    """SIGTERM to the keeper as the unit's main process (systemctl stop, KillMode=mixed): the engine
    stops everything gracefully; with no engine running, the keeper does it (the wakeup fd acts)."""
    _stop_signal["got"] = True
    if _sock is not None and _engine_pid is not None and _lost is None:
        try:
            os.kill(_engine_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _stop_without_engine() -> None:
    """Stop every instance as the engine would (its stop_signal to its group, its stop_timeout, then
    SIGKILL), for `systemctl stop` or `oxtui down` while no engine runs."""
    _drop_spare()
    deadline = time.monotonic()
    for pid in list(_spawned):
        tag = _tags.get(pid) or {}
        try:
            os.killpg(pid, tag.get("stop_signal", signal.SIGTERM))
        except OSError:
            pass
        deadline = max(deadline, time.monotonic() + tag.get("stop_timeout", 10.0))
    while _spawned and time.monotonic() < deadline:
        for pid in list(_spawned):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    _spawned.discard(pid)
            except ChildProcessError:
                _spawned.discard(pid)
        time.sleep(0.02)
    for pid in list(_spawned):
        try:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
        _spawned.discard(pid)
    _stop_orphans()


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
    global _identity, _stop_asked
    sock = socket.socket(fileno=int(sys.argv[1]))
    engine_pid = int(sys.argv[2])
    if len(sys.argv) > 3:
        # exec'd in place by an upgrade (_reexec): the instances are still our children; the engine is
        # not our parent any more (it handed over), and our end of its socket says when it goes
        resume = json.loads(sys.argv[3])
        _spawned.update(resume["spawned"])
        _held.update(resume.get("held") or {})
        _pipes.update({int(k): (v[0], v[1]) for k, v in (resume.get("pipes") or {}).items()})
        _tags.update({int(k): v for k, v in (resume.get("tags") or {}).items()})
        _identity, _stop_asked = resume.get("identity"), bool(resume.get("bye"))
        for fd in [sock.fileno(), *_held.values(), *(fd for p in _pipes.values() for fd in p)]:
            os.set_inheritable(fd, False)
        engine_pid = (_identity or {}).get("pid") or 0
        sock.send(json.dumps({"id": resume["id"], "ok": True}).encode())
    elif os.getppid() != engine_pid:
        sys.exit(ORPHANED_EXIT)
    # No PDEATHSIG: the keeper outlives the engine (see above). The instances still die with the keeper.
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Ctrl-C in the engine's terminal, a hang-up, or a SIGTERM sent to the engine's whole process group
    # (`timeout`, `kill -- -PGID`) are the engine's business: it stops the instances gracefully. Only
    # as systemd's main process (identity "systemd") does the keeper act on SIGTERM: it passes it on.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *a: _on_stop_signal() if (_identity or {}).get("systemd") else None)
    serve(sock, engine_pid)


if __name__ == "__main__":
    main()
