"""Start one instance: own session, stdout/stderr pipes, the socket as fd 3, dies with the keeper.

The fork itself happens in the spawner helper (forkserver.py), which can set PR_SET_PDEATHSIG,
place fd 3 and LISTEN_PID safely because it has no threads. This module makes the pipes and talks to
the helper (commandline.py decides the argv); exits come back from the helper as wait statuses.
The helper is also the keeper: it holds copies of what a new engine needs (hold, identity, the
read ends sent with each spawn) and starts one when this engine dies without saying "bye".
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..helper import forkserver
from .commandline import request
from .procgroup import kill_group

if TYPE_CHECKING:
    from ..oxfile.config import RunAs

PIPE_SIZE = 256 * 1024
HELPER_TIMEOUT = 5.0
# Spawn requests in flight to the helper at once. A burst (start or scale to 1000, a reload's surge)
# then costs one fork after another in the helper, not a round trip to the engine per instance.
SPAWN_WINDOW = 16
REPLACEMENT_TTL = 10.0     # s for a worker to take the restart the helper made for it (approval.py)
UNWANTED_GRACE = 10.0      # s an unwanted restart has to stop when no worker says otherwise (a stop_timeout)


class SpawnError(Exception):
    pass


class HelperGone(SpawnError):
    """Given to spawns in flight when the helper died: it is already dealt with (and a new helper may be
    running by the time they see it, which they must not end)."""


def _grow_pipe(fd: int) -> None:
    """A 256 KiB pipe (4x the default) lets a chatty child run ahead of the engine instead of blocking every 64 KiB."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass   # above /proc/sys/fs/pipe-max-size for this user: keep the default


@dataclass
class Child:
    pid: int
    stdout: int   # read ends, non-blocking
    stderr: int
    started: float
    timeline: dict[str, int] | None = None   # monotonic ns: spawn asked, helper got it, forked, pid back
    parent: int | None = None                # the helper that forked it (kill_group)


class Spawner:
    """The engine's end of the spawner helper: spawn() forks an instance, exited() reports its end."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None      # a helper started by the engine we took over from
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0
        self._waiters: dict[int, asyncio.Future[int]] = {}
        self._replies: dict[int, asyncio.Future[dict]] = {}   # request id -> the helper's answer
        self._window = asyncio.Semaphore(SPAWN_WINDOW)
        self._early: dict[int, int] = {}       # exits reported before anyone asked
        self.replacements: dict[int, Child] = {}  # pid -> what the helper started at once when it ended (approve)
        self.approvals = True       # the helper takes approve/revoke (false for an older one we adopted)
        self.exit_times: dict[int, tuple[int, int]] = {}   # pid -> (helper reaped it, engine heard), ns
        self.on_new_helper: list = []   # called once a helper started to replace a dead one (re-arm the keeper)
        self._replaced = False          # a helper died: the next one started replaces it

    def ensure(self) -> None:
        """Start the helper now (it holds the lock and sockets from the start, not from the first spawn)."""
        if self._sock is None:
            self._start_helper()

    # ---- the keeper's messages (keeperlink.py says what) --------------------------------------------

    def ask(self, msg: dict) -> None:
        """Like tell, and wait until the helper has acted on it (at most HELPER_TIMEOUT s)."""
        if self._sock is None:
            return
        self._next_id += 1
        try:
            self._send(self._sock, json.dumps({**msg, "id": self._next_id}).encode(), [])
            self._wait_reply(self._sock, self._next_id)
        except (OSError, SpawnError):
            pass        # the helper is gone: _readable sees it and deals with it

    def tell(self, msg: dict, fds: list[int] | None = None) -> None:
        """identity, pipes, bye, adopted, beat (forkserver.py's protocol)."""
        self._tell(msg, fds)

    def _tell(self, msg: dict, fds: list[int] | None = None) -> None:
        if self._sock is None:
            return
        try:
            self._send(self._sock, json.dumps(msg).encode(), fds or [])
        except (OSError, SpawnError):
            pass        # the helper is gone: _readable sees it and deals with it

    def _start_helper(self) -> socket.socket:
        self.approvals = True
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(forkserver.__file__)), str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=False)
        theirs.close()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ours.fileno(), self._readable)
        self._sock = ours
        if self._replaced:
            for fn in self.on_new_helper:
                fn()
        return ours

    # ---- handing the helper to another engine process --------------------------------------------

    @property
    def helper_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else self._adopted_pid

    def release(self) -> tuple[int, int] | None:
        """Stop the helper dying with this process; returns (our socket's fd, the helper's pid)."""
        if self._sock is None:
            return None
        self._set_pdeathsig(False)
        pid = self.helper_pid
        assert pid is not None
        return self._sock.fileno(), pid

    def quiet(self) -> bool:
        """No exit reported that nobody has taken yet."""
        return not self._early and not self.replacements

    def rearm(self) -> None:
        """The hand-over failed: the helper dies with this process again."""
        if self._sock is not None:
            self._set_pdeathsig(True)

    def _set_pdeathsig(self, on: bool) -> None:
        assert self._sock is not None
        self._next_id += 1
        self._sock.send(json.dumps({"id": self._next_id, "cmd": "pdeathsig", "on": on}).encode())
        self._wait_reply(self._sock, self._next_id)

    def adopt(self, fd: int, pid: int, approvals: bool = False) -> None:
        """Take over the helper of the engine we replace (its socket was inherited as `fd`).
        It is not our child: it exits when our end closes, and its new parent reaps it.
        `approvals`: it runs this program already (a keeper that started us after a crash)."""
        self._sock = socket.socket(fileno=fd)
        self._adopted_pid = pid
        self.approvals = approvals      # else: until we know it runs our program (Engine.adopt)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)

    def upgrade_helper(self) -> str | None:
        """Have the adopted helper exec this oxtui's helper program in place (an upgrade: its pid and
        children stay); None when it did, else why not (it then goes on with its old program)."""
        if self._sock is None:
            return None
        self._next_id += 1
        path = str(Path(forkserver.__file__))
        try:
            self._sock.send(json.dumps({"id": self._next_id, "cmd": "reexec", "path": path}).encode())
            reply = self._wait_reply(self._sock, self._next_id)
        except (OSError, SpawnError) as e:
            return str(e)
        return reply.get("error")

    async def spawn(self, command: str, cwd: str, env: dict[str, str], listen_fd: int | None = None,
                    run_as: RunAs | None = None, tag: dict | None = None) -> Child:
        """Start the instance; raises SpawnError when the helper cannot fork it. Up to SPAWN_WINDOW
        spawns are in flight at once; their answers come back through _readable. `tag` ({"group",
        "slot", "role"}) tells a new engine which worker it is, should this engine die."""
        async with self._window:
            sock = self._sock or self._start_helper()
            assert self._loop is not None
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            _grow_pipe(out_w)
            self._next_id += 1
            rid = self._next_id
            asked = time.monotonic_ns()
            req = {"id": rid, **request(command, cwd, env, listen_fd, run_as), "tag": tag, "keep": 2}
            # the read ends go last: the keeper holds copies of them, the instance never sees them
            fds = [out_w, err_w] + ([listen_fd] if listen_fd is not None else []) + [out_r, err_r]
            fut: asyncio.Future[dict] = self._loop.create_future()
            self._replies[rid] = fut
            try:
                try:
                    self._send(sock, json.dumps(req).encode(), fds)
                finally:
                    os.close(out_w)      # in flight, the helper's copies hold the pipes open
                    os.close(err_w)
                reply = await asyncio.wait_for(asyncio.shield(fut), HELPER_TIMEOUT)
            except asyncio.CancelledError:
                # Stopped while the helper forks: whatever it started must not run unwatched.
                fut.add_done_callback(functools.partial(self._end_abandoned, out_r, err_r))
                raise
            except (OSError, SpawnError, TimeoutError) as e:
                self._replies.pop(rid, None)
                for fd in (out_r, err_r):
                    os.close(fd)
                if not isinstance(e, HelperGone):
                    self._helper_gone()
                raise SpawnError(f"the spawner helper failed: {str(e) or f'no answer within {HELPER_TIMEOUT:g}s'}") from None
        if "error" in reply:
            for fd in (out_r, err_r):
                os.close(fd)
            raise SpawnError(reply["error"])
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        got, forked = reply.get("t") or (0, 0)
        timeline = {"spawn_asked": asked, "helper_got_request": got, "forked": forked,
                    "engine_got_pid": reply["engine_got_pid"]}
        return Child(pid=reply["pid"], stdout=out_r, stderr=err_r, started=time.monotonic(), timeline=timeline,
                     parent=self.helper_pid)

    def approve(self, pid: int, command: str, cwd: str, env: dict[str, str], listen_fd: int | None,
                run_as: RunAs | None, min_uptime: float) -> bool:
        """Let the helper restart instance `pid` as this spawn at once when it ends (after `min_uptime`
        s), and tell us after: the restart then costs a reap and a fork, not two hops between
        processes. Must be revoked before we signal it ourselves."""
        msg = {"cmd": "approve", "pid": pid, "spawn": request(command, cwd, env, listen_fd, run_as),
               "min_uptime": min_uptime}
        return self._send_now(msg, [listen_fd] if listen_fd is not None else [])

    def revoke(self, pid: int) -> None:
        # Not sent (the helper's queue full): a restart it still makes is ended when it is reported
        # (Approval.discard, _expire), or dies with the helper.
        self._send_now({"cmd": "revoke", "pid": pid}, [])

    def _send_now(self, msg: dict, fds: list[int]) -> bool:
        """Send without ever waiting: approvals are an optimisation, and a helper that stopped reading
        must not hold up the engine's loop for them."""
        if self._sock is None or not self.approvals:
            return False
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            self._sock.sendmsg([json.dumps(msg).encode()], ancillary, socket.MSG_DONTWAIT)
        except OSError:
            return False
        return True

    @staticmethod
    def _send(sock: socket.socket, data: bytes, fds: list[int]) -> None:
        # The socket blocks: a helper that stops reading (SIGSTOPped) with its queue full must not
        # hang the engine's loop.
        if not select.select([], [sock], [], HELPER_TIMEOUT)[1]:
            raise SpawnError(f"the helper took no request within {HELPER_TIMEOUT:g}s")
        socket.send_fds(sock, [data], fds)

    def _on_reply(self, msg: dict) -> None:
        msg["engine_got_pid"] = time.monotonic_ns()
        fut = self._replies.pop(msg["id"], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _end_abandoned(self, out_r: int, err_r: int, fut: asyncio.Future[dict]) -> None:
        """The spawn's caller was cancelled: close its pipes and kill what the helper started (its exit
        is then reported to nobody: a throwaway waiter takes it)."""
        for fd in (out_r, err_r):
            os.close(fd)
        if fut.cancelled() or fut.exception() is not None or "pid" not in fut.result():
            return
        pid = fut.result()["pid"]
        kill_group(pid, signal.SIGKILL, self.helper_pid)
        if self._loop is not None and pid not in self._early:
            self._waiters[pid] = self._loop.create_future()
        self._early.pop(pid, None)

    def _wait_reply(self, sock: socket.socket, want: int) -> dict:
        # The helper answers within a fork; exits that arrive first are dispatched on the way.
        while True:
            # A helper that stops answering (SIGSTOPped, swapped out) must not hang the engine's loop.
            if not select.select([sock], [], [], HELPER_TIMEOUT)[0]:
                raise SpawnError(f"no answer within {HELPER_TIMEOUT:g}s")
            data, fds = forkserver.recv_with_fds(sock, 2)
            if not data:
                raise SpawnError("the helper exited")
            msg = json.loads(data)
            if msg.get("id") == want:
                return msg
            self._handle(msg, fds)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data, fds = forkserver.recv_with_fds(sock, 2, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._helper_gone()
                return
            self._handle(json.loads(data), fds)

    def _handle(self, msg: dict, fds: list[int]) -> None:
        """An exit report (with the pipes of its approved restart), or the answer to a spawn request."""
        if "exit" in msg and msg.get("then") and len(fds) == 2:
            then = msg["then"]
            for fd in fds:
                os.set_blocking(fd, False)
            heard = time.monotonic_ns()
            self.replacements[msg["exit"]] = Child(
                pid=then["pid"], stdout=fds[0], stderr=fds[1], started=time.monotonic(),
                timeline={"spawn_asked": msg.get("t") or 0, "helper_got_request": then["t"][0],
                          "forked": then["t"][1], "engine_got_pid": heard}, parent=self.helper_pid)
            if self._loop is not None:
                self._loop.call_later(REPLACEMENT_TTL, self._expire, msg["exit"], then["pid"])
            fds = []
        for fd in fds:
            os.close(fd)
        if "exit" in msg:
            self._dispatch(msg["exit"], msg["status"], msg.get("t"))
        elif "id" in msg:
            self._on_reply(msg)

    def _expire(self, old: int, pid: int) -> None:
        """A restart the helper made that no worker took (its worker was cancelled meanwhile): end it,
        so it neither runs unsupervised nor holds up a hand-over (quiet())."""
        child = self.replacements.get(old)
        if child is not None and child.pid == pid:
            del self.replacements[old]
            self.end_unwanted(child)

    def end_unwanted(self, child: Child, sig: int = signal.SIGTERM, grace: float | None = None) -> None:
        """End a restart the helper made that the engine does not want, as a stop would: `sig`, then
        SIGKILL after `grace` s. Not SIGKILL at once: it may have begun to serve on the shared socket
        by now, and a SIGKILL drops what it has accepted. Its pipes stay open until it is gone (a
        write to a closed pipe could end it mid-request too); its exit is then reported to nobody."""
        kill_group(child.pid, sig, child.parent)
        fut = self.exited(child.pid)
        grace = UNWANTED_GRACE if grace is None else grace
        late = (self._loop.call_later(grace, kill_group, child.pid, signal.SIGKILL, child.parent)
                if self._loop else None)

        def gone(_: object) -> None:
            if late is not None:
                late.cancel()
            for fd in (child.stdout, child.stderr):
                os.close(fd)
        fut.add_done_callback(gone)

    def _dispatch(self, pid: int, status: int, reaped: int | None = None) -> None:
        # when the helper reaped it and when the engine heard: the first steps of a restart's timeline
        self.exit_times[pid] = (reaped or 0, time.monotonic_ns())
        if len(self.exit_times) > 4096:           # never read back (no restart followed): forget the oldest
            del self.exit_times[next(iter(self.exit_times))]
        fut = self._waiters.pop(pid, None)
        if fut is None:
            self._early[pid] = status          # it ended before anyone asked
        elif not fut.done():
            fut.set_result(status)

    def _helper_gone(self) -> None:
        """The helper died or stopped answering: end it (its instances die with it, by PDEATHSIG),
        report them killed, and start a new helper at the next spawn."""
        self._replaced = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        elif self._adopted_pid is not None:
            try:
                os.kill(self._adopted_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._disconnect()
        for child in self.replacements.values():     # they died with the helper
            for fd in (child.stdout, child.stderr):
                os.close(fd)
        self.replacements.clear()
        killed = 0x09   # wait status of a SIGKILLed process
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_result(killed)
        self._waiters.clear()
        for rfut in self._replies.values():
            if not rfut.done():
                rfut.set_exception(HelperGone("the helper exited"))
        self._replies.clear()

    def _disconnect(self) -> None:
        """Close our end (the helper exits when it sees that) and reap the helper."""
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        self._adopted_pid = None

    def exited(self, pid: int) -> asyncio.Future[int]:
        """A future for the wait status of instance `pid`."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if pid in self._early:
            fut.set_result(self._early.pop(pid))
        else:
            self._waiters[pid] = fut
        return fut

    def ended_meanwhile(self, pid: int, status: int) -> None:
        """An instance that ended while no engine listened (the keeper kept its wait status)."""
        self._dispatch(pid, status)

    def close(self) -> None:
        """After every instance has stopped."""
        self._disconnect()
        self._early.clear()


def describe_status(status: int) -> tuple[int | None, str | None]:
    """waitpid status -> (exit code, signal name)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return None, signal.Signals(sig).name
        except ValueError:
            return None, f"SIG{sig}"
    return os.waitstatus_to_exitcode(status), None
