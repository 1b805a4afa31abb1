"""The keeper: what the spawner helper (forkserver.py) holds so that the apps outlive the engine.

s6's division of labour: the process that holds the workload is tiny and outlives everything clever
above it. The helper already is every instance's parent; as the keeper it also holds a copy of
everything a new engine needs to adopt them: the oxfile's lock, the control socket, each listening
socket, each instance's output pipes (read ends, so no worker blocks for good or gets EPIPE while no
engine reads) and which slot each instance is. The engine says how to start a new engine (identity),
and "bye" when a stop is asked for.

    engine alive ──EOF, no bye──> lost: approvals revoked, exits kept ──> launch (fork, exec)
         ^                                                                   │
         └──────────── "adopted" <── new engine reads the inventory <────────┘
                                     (EOF before "adopted": back off 0.5, 1, 2 ... 30 s, then again)

While it backs off, the keeper answers the control socket in the engine's stead (`oxtui status` says
what failed and when the next try is; `oxtui down` is obeyed). Under systemd it watches the engine's
beats: an engine silent for 3/4 of WatchdogSec is hung, and is SIGKILLed and replaced before systemd's
watchdog would fail the unit (keeperlink.py says why the engine, not the keeper, is MAINPID).

Its messages, on the helper's socket (forkserver.py's protocol), one JSON message per packet:
  engine -> keeper: a spawn request's "tag" ({"group", "slot", "role"}) and "keep": n: its last n fds
                    are the instance's read ends, held for a new engine until its exit is reported
  engine -> keeper: {"cmd": "hold", "key"} with fds [fd] (lock, control, listen:NAME); {"cmd": "drop", "key"}
  engine -> keeper: {"cmd": "pipes", "pid", "tag"} with fds [stdout, stderr]: an adopted worker's read ends
  engine -> keeper: {"cmd": "identity", "pid", "argv", "cwd", "out"}: how to start a new engine
  engine -> keeper: {"cmd": "bye"} (a stop asked for: the end closing next means stop everything)
  keeper -> engine: {"recover": inventory}, first on a new engine's socket; engine -> keeper: {"cmd": "adopted"}
  engine -> keeper: {"cmd": "beat"} (under systemd's watchdog: the engine's loop still runs)

This runs inside the helper (`python -I -S`): the standard library only, and nothing that allocates
much (the helper's spare is forked from it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable

RELAUNCH_MAX = 30.0
KEEPER_MESSAGES = ("hold", "drop", "pipes", "identity", "beat", "bye", "adopted")


class Keeper:
    def __init__(self) -> None:
        self.held: dict[str, int] = {}                 # "lock", "control", "listen:NAME" -> fd
        self.pipes: dict[int, tuple[int, int]] = {}    # instance -> its read ends (stdout, stderr)
        self.tags: dict[int, dict] = {}                # instance -> {"group", "slot", "role", "stop_*"}
        self.ended: dict[int, int] = {}                # instance -> wait status, ended while no engine listened
        self.inventoried: set[int] = set()             # the ended ones listed to the engine being started
        self.identity: dict | None = None              # how to start a new engine; None: cannot be replaced
        self.stop_asked = False                        # "bye": the engine's end closing means stop
        self.engine_pid: int | None = None
        self.engine_status: dict[int, int] = {}        # engines this keeper started and reaped -> wait status
        self.lost: dict | None = None                  # {"from_pid", "cause", "at", "attempts", "last"}
        self.relaunch_at: float | None = None          # CLOCK_MONOTONIC s of the next start of an engine
        self.beat = {"last": 0.0, "usec": 0, "sent": 0.0}
        self.ooms = oom_kills()                        # the kernel's OOM kills so far (/proc/vmstat)

    @property
    def replaces_engines(self) -> bool:
        """The engine's end closing means "start a new one" (not "stop everything")."""
        return self.identity is not None and not self.stop_asked

    # ---- what the engine tells it -----------------------------------------------------------------

    def handle(self, req: dict, fds: list[int], live: set[int]) -> None:
        """One of KEEPER_MESSAGES (forkserver.py's protocol)."""
        cmd = req["cmd"]
        if cmd == "hold" and fds:
            old = self.held.get(req["key"])
            if old is not None and old != fds[0]:
                os.close(old)
            self.held[req["key"]] = fds.pop(0)
        elif cmd == "drop":
            old = self.held.pop(req["key"], None)
            if old is not None:
                os.close(old)
        elif cmd == "pipes" and len(fds) == 2 and req["pid"] in live:     # an adopted worker's (an upgrade)
            self.forget(req["pid"])
            self.pipes[req["pid"]] = (fds.pop(0), fds.pop(0))
            self.tags[req["pid"]] = req.get("tag") or {}
        elif cmd == "identity":                 # (also from an engine that took over by a hand-over)
            self.identity, self.engine_pid = req, req.get("pid", self.engine_pid)
            self.ooms = oom_kills()
            if req.get("watchdog_usec"):
                self.beat.update(usec=int(req["watchdog_usec"]), last=time.monotonic())
        elif cmd == "beat":
            self.beat["last"] = time.monotonic()
        elif cmd == "bye":
            self.stop_asked = True
        elif cmd == "adopted":
            for pid in self.inventoried:        # the new engine holds their pipes and has their exits now
                self.ended.pop(pid, None)
                self.forget(pid)
            self.inventoried.clear()
            self.lost = self.relaunch_at = None
        for fd in fds:                          # whatever came that nothing above took
            os.close(fd)

    # ---- instances ----------------------------------------------------------------------------------

    def spawned(self, pid: int, read_ends: list[int], tag: dict | None) -> None:
        if len(read_ends) == 2:
            self.pipes[pid] = (read_ends[0], read_ends[1])
        else:
            for fd in read_ends:
                os.close(fd)
        if tag is not None:
            self.tags[pid] = tag

    def restarted(self, old: int, new: int, out_r: int, err_r: int) -> None:
        """The helper restarted `old` as approved: copies of the new one's read ends, and its tag."""
        self.pipes[new] = (os.dup(out_r), os.dup(err_r))
        if old in self.tags:
            self.tags[new] = self.tags[old]

    def forget(self, pid: int) -> None:
        """The engine knows of this instance's end: the keeper's copies of its pipes go."""
        for fd in self.pipes.pop(pid, ()):
            os.close(fd)
        self.tags.pop(pid, None)

    def reaped_engine(self, pid: int, status: int) -> None:
        """A child that is no instance: an engine this keeper started (or a re-parented grandchild)."""
        if self.identity is not None or self.lost is not None:
            self.engine_status[pid] = status
            if len(self.engine_status) > 64:
                del self.engine_status[next(iter(self.engine_status))]

    # ---- when the engine dies -------------------------------------------------------------------------

    def engine_died(self) -> float:
        """Bookkeeping of a death (the first, or a new engine's before it adopted); returns the delay
        before the next engine is started."""
        cause = self.death_cause(self.engine_pid)
        if self.lost is None:
            self.lost = {"from_pid": self.engine_pid, "cause": cause, "at": time.time(), "attempts": 0, "last": None}
        else:
            self.lost["last"] = cause
        self.lost["attempts"] += 1
        n = self.lost["attempts"]
        delay = 0.0 if n == 1 else min(RELAUNCH_MAX, 0.5 * 2 ** (n - 2))
        self.relaunch_at = time.monotonic() + delay
        self.say(f"oxtui keeper: the engine (pid {self.engine_pid}) died ({cause}); "
                 + ("starting a new one to adopt every worker" if n == 1 else
                    f"the new engine died too; try {n} in {delay:g} s, the workers keep serving"))
        return delay

    def death_cause(self, pid: int | None) -> str:
        """How the engine ended: its wait status when this keeper started it, else read from /proc while
        it is a zombie (its parent may reap it first: then the cause is not known)."""
        if pid is None:
            return "unknown"
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if pid in self.engine_status:
                return status_text(self.engine_status.pop(pid))
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
                if got == pid:
                    return status_text(status)
            except ChildProcessError:
                pass                            # not our child: the first engine, our parent
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                # Reaped by its parent (init, or systemd) before we could look: a catchable signal or an
                # exception would have been said first, so it was SIGKILL or a crash in C.
                oom = oom_kills() > self.ooms
                return "no word: the kernel's OOM killer ran" if oom else "no word: SIGKILL or a crash"
            if fields[0] in ("Z", "X") and len(fields) > 49:
                return status_text(int(fields[49]))     # field 52, exit_code: the wait status
            time.sleep(0.005)
        return "closed its socket"

    def inventory(self, live: set[int], keeper_pid: int) -> tuple[dict, list[int]]:
        """What a new engine is told (the first message on its socket), and the fds it must inherit."""
        assert self.lost is not None
        self.inventoried = set(self.ended)
        workers = [{"pid": pid, "tag": self.tags.get(pid), "pipes": list(self.pipes.get(pid, (-1, -1))),
                    "status": self.ended.get(pid)} for pid in sorted(live) + sorted(self.ended)]
        inv = {"keeper_pid": keeper_pid, "held": dict(self.held), "workers": workers,
               **{k: self.lost[k] for k in ("from_pid", "cause", "at", "attempts")}}
        return inv, [*self.held.values(), *(fd for p in self.pipes.values() for fd in p)]

    def exec_engine(self, chan: socket.socket, passed: list[int]) -> None:
        """In the forked child: become `oxtui run --recover FD`, every fd in `passed` inherited."""
        assert self.identity is not None
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()                             # not in the dead engine's terminal or process group
        for fd in [*passed, chan.fileno()]:
            os.set_inheritable(fd, True)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        if self.identity.get("out"):            # a background engine: its output to oxtui-engine.out
            out = os.open(self.identity["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(out, 1)
            os.dup2(out, 2)
        env = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
        os.chdir(self.identity["cwd"])
        argv = [*self.identity["argv"], "--recover", str(chan.fileno())]
        os.execve(argv[0], argv, env)

    def launched(self, pid: int) -> None:
        self.engine_pid, self.relaunch_at = pid, None

    def timeout_ms(self) -> list[int]:
        """How soon the helper's loop must wake for the keeper (a start due, the watchdog)."""
        waits = []
        if self.relaunch_at is not None:
            waits.append(max(0, int((self.relaunch_at - time.monotonic()) * 1000) + 1))
        if self.beat["usec"]:
            waits.append(max(10, int(self.beat["usec"]) // 4000))
        return waits

    # ---- systemd's watchdog ---------------------------------------------------------------------------

    def watchdog(self, engine_connected: bool) -> None:
        """An engine silent for 3/4 of WatchdogSec is hung: SIGKILL, and a new engine takes over with no app
        restarted, before systemd's watchdog fails the unit. While the keeper brings the new one up, it
        pings systemd itself (NotifyAccess=all), so the watchdog sees no hole."""
        usec = self.beat["usec"]
        if not usec:
            return
        now = time.monotonic()
        silent = now - (self.beat["last"] or now)
        if engine_connected and self.lost is None and not self.stop_asked and silent > usec * 0.75 / 1e6 \
                and self.engine_pid is not None:
            self.say(f"oxtui keeper: the engine (pid {self.engine_pid}) has not answered for {silent:.1f} s "
                     "(WatchdogSec): SIGKILL, a new engine takes over")
            try:
                os.kill(self.engine_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.beat["last"] = now
            return
        if self.lost is not None and now - self.beat["sent"] >= usec / 4e6:
            notify(b"WATCHDOG=1")
            self.beat["sent"] = now

    # ---- in the engine's stead, while none runs -------------------------------------------------------

    def answer_in_its_stead(self, live: set[int], stop_everything: Callable[[], None]) -> bool:
        """A client of the control socket gets the keeper's word instead of hanging in its queue: every
        request but one is answered with what runs, what failed and when the next try is; "shutdown"
        (`oxtui down`) is obeyed: every instance stopped, then the connection closes (returns True)."""
        listener = socket.socket(fileno=os.dup(self.held["control"]))
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
                            if line.strip() and json.loads(line).get("cmd") == "shutdown":
                                conn.sendall(b'{"ok": true, "result": null}\n')
                                stop_everything()
                                return True
                            conn.sendall(json.dumps({"ok": False, "error": self.why_no_engine(len(live)),
                                                     "keeper_pid": os.getpid()}).encode() + b"\n")
                    except (OSError, ValueError):
                        pass
        finally:
            listener.close()                    # our dup only: the held listener stays open

    def why_no_engine(self, workers: int) -> str:
        assert self.lost is not None
        at = time.strftime("%H:%M:%S", time.localtime(self.lost["at"]))
        wait = max(0.0, (self.relaunch_at or time.monotonic()) - time.monotonic())
        out = (self.identity or {}).get("out")
        last = last_words(out) if out else ""
        return (f"no engine answers right now: the keeper (pid {os.getpid()}) keeps {workers} worker(s) running; "
                f"the engine (pid {self.lost['from_pid']}) died ({self.lost['cause']}) at {at}, and "
                f"{self.lost['attempts'] - 1} new engine(s) could not start ({self.lost['last']}"
                + (f": {last}" if last else "") + f"); next try in {wait:.0f} s" + (f"; see {out}" if out else ""))

    def say(self, line: str) -> None:
        """Where the new engine's own output goes (oxtui-engine.out, or the journal under systemd)."""
        out = (self.identity or {}).get("out")
        try:
            fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600) if out else 2
            try:
                os.write(fd, (time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n").encode())
            finally:
                if fd != 2:
                    os.close(fd)
        except OSError:
            pass

    def stop_all(self, live: set[int]) -> None:
        """Stop every instance as the engine would (its stop_signal to its group, its stop_timeout, then
        SIGKILL): for `systemctl stop` or `oxtui down` while no engine runs."""
        deadline = time.monotonic()
        for pid in list(live):
            tag = self.tags.get(pid) or {}
            try:
                os.killpg(pid, tag.get("stop_signal", signal.SIGTERM))
            except OSError:
                pass
            deadline = max(deadline, time.monotonic() + tag.get("stop_timeout", 10.0))
        end_children(live, deadline, groups=True)

    # ---- across an upgrade (the helper exec's the new program in place) -------------------------------

    def carried(self) -> tuple[dict, list[int]]:
        return ({"held": self.held, "pipes": {str(k): v for k, v in self.pipes.items()},
                 "tags": {str(k): v for k, v in self.tags.items()}, "identity": self.identity,
                 "bye": self.stop_asked},
                [*self.held.values(), *(fd for p in self.pipes.values() for fd in p)])

    def restore(self, resume: dict) -> list[int]:
        self.held.update(resume.get("held") or {})
        self.pipes.update({int(k): (v[0], v[1]) for k, v in (resume.get("pipes") or {}).items()})
        self.tags.update({int(k): v for k, v in (resume.get("tags") or {}).items()})
        if resume.get("identity"):
            self.handle({"cmd": "identity", **resume["identity"]}, [], set())
        self.stop_asked = bool(resume.get("bye"))
        return [*self.held.values(), *(fd for p in self.pipes.values() for fd in p)]


def status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        try:
            return signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def oom_kills() -> int:
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def notify(message: bytes) -> None:
    """A datagram to systemd ($NOTIFY_SOCKET: a path, or an abstract name written with '@')."""
    where = os.environ.get("NOTIFY_SOCKET")
    if not where:
        return
    addr = "\0" + where[1:] if where.startswith("@") else where
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message, addr)
    except OSError:
        pass


def last_words(path: str) -> str:
    """The last line a failed new engine wrote (not the keeper's own lines)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    said = [line.strip() for line in lines if line.strip() and "oxtui keeper:" not in line]
    return said[-1] if said else ""


def stop_orphans(grace: float = 2.0) -> None:
    """Daemons that escaped their instance's process group were re-parented here: end them too,
    so stopping oxtui leaves nothing running. SIGTERM, then SIGKILL after a grace period."""
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
    end_children(set(orphans), time.monotonic() + grace, groups=False)


def end_children(pids: set[int], deadline: float, groups: bool) -> None:
    """Reap these children as they end until `deadline`, then SIGKILL what is left (each one's whole
    process group with `groups`) and reap it; `pids` is emptied."""
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    pids.discard(pid)
            except ChildProcessError:
                pids.discard(pid)
        time.sleep(0.02)
    for pid in list(pids):
        try:
            (os.killpg if groups else os.kill)(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
        pids.discard(pid)
