"""The near end of a fleet link: one `ssh HOST oxtui _bridge` per host, and what runs over it.

    connecting ──> up (hello read; pinged every PING_EVERY s: the round trip)
        ^             │ the ssh process ends (a dead link: ServerAlive gives up, sshd went away)
        └── retrying in 1, 2, 4 ... 30 s  <── unreachable since HH:MM:SS (why, from ssh's own words)

The user's own OpenSSH client does it all: keys, agent, ~/.ssh/config, ProxyJump, known_hosts and
ControlMaster work as in their shell. It never asks anything (BatchMode=yes: no prompt can hang a
TUI; a host that wants a password or whose key is unknown is reported with what to do), host keys
are checked as the user's configuration says (never weakened), and keep-alives find a dead link.

Each host has a thread that reads its bridge's lines and hands each to the request it answers; a
slow or dead host therefore never holds up another.
"""

from __future__ import annotations

import functools
import itertools
import json
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from .bridge import PROTOCOL
from .fleetfile import Host

HELLO_TIMEOUT = 20.0
PING_EVERY = 5.0
BACKOFF = (1, 2, 4, 8, 15, 30)
SSH_OPTIONS = ("-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2",
               "-o", "ConnectTimeout=10", "-C")


class LinkDown(Exception):
    """The host cannot be reached (or its oxtui cannot bridge); the message says why and what to do."""


def ssh_argv(host: Host) -> list[str]:
    return ["ssh", *SSH_OPTIONS, *host.ssh_options, host.ssh, "--", f"{shlex.quote(host.oxtui)} _bridge"]


def explain(host: Host, stderr: str, code: int | None) -> str:
    """ssh's last words, with what to do about them."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1].rstrip(".") if lines else f"ssh exited with {code}"
    if "Permission denied" in last:
        return (f"{last}: BatchMode never types a password; give it a key (ssh-copy-id {host.ssh}, or "
                "IdentityFile in ~/.ssh/config or ssh_options)")
    if "Host key verification failed" in last or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return (f"{last}: its host key is unknown or changed; check it and accept it once with `ssh {host.ssh}` "
                "(oxtui never skips the check)")
    if "unknown command '_bridge'" in stderr or "invalid choice" in stderr:
        return f"its oxtui ({host.oxtui}) has no fleet bridge: install oxtui 0.2.0 or later there"
    if code == 127 or "not found" in last:
        return f"{last}: no oxtui at {host.oxtui!r} there; install it, or set oxtui = \"/path/to/oxtui\" for this host"
    return last


class HostLink:
    """One host's bridge. `connect()` for one-off use (the CLI); `run_forever()` on a thread for the TUI."""

    def __init__(self, host: Host):
        self.host = host
        self.state = "connecting"          # connecting, up, unreachable
        self.reason: str | None = None
        self.since: float | None = None    # wall clock: when it became unreachable (kept through its retries)
        self.tries = 0                     # failed tries since it was last up: the next wait is BACKOFF[tries]
        self.retry_at: float | None = None
        self.rtt: float | None = None      # seconds
        self.hello: dict[str, Any] = {}
        self.bytes_in = 0
        self.on_up: Callable[[], None] | None = None
        self._stderr_tail = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count(1)
        self._handlers: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._gone = threading.Event()        # the bridge's output ended: the link is down

    # ---- the connection -----------------------------------------------------------------------

    def connect(self) -> None:
        """Start ssh and read the bridge's hello; raises LinkDown with the reason."""
        proc = subprocess.Popen(ssh_argv(self.host), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        hello = _read_hello(proc)
        if hello is None:
            proc.kill()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise LinkDown(explain(self.host, err, proc.wait()))
        if hello.get("bridge") != PROTOCOL:
            proc.kill()
            proc.wait()
            raise LinkDown(f"its oxtui {hello.get('version', '?')} bridges with protocol {hello.get('bridge')}, this "
                           f"one with {PROTOCOL}: install the same oxtui release on both")
        # up, and with it a good connection: the next outage starts from the shortest wait (tries)
        self._proc, self.hello, self.state, self.reason, self.since, self.tries = proc, hello, "up", None, None, 0
        self._gone.clear()
        threading.Thread(target=self._read, args=(proc,), name=f"fleet {self.host.name}", daemon=True).start()
        self._stderr_tail = ""
        threading.Thread(target=self._drain, args=(proc,), daemon=True).start()

    def run_forever(self) -> None:
        """Connect, and again with backoff whenever the link drops, until close()."""
        while not self._closed.is_set():
            try:
                self.connect()
                if self.on_up is not None:
                    self.on_up()
                while self._proc is not None and not self._closed.is_set():
                    started = time.monotonic()
                    self.request({"ping": time.time()}, functools.partial(self._pong, started))
                    if self._gone.wait(PING_EVERY):
                        break
                reason = "the connection dropped" if not self._closed.is_set() else None
            except LinkDown as e:
                reason = str(e)
            except OSError as e:
                reason = f"cannot run ssh: {e}"
            if self._closed.is_set():
                return
            if reason == "the connection dropped" and self._proc is not None:
                reason = self._last_words(self._proc)
            self._down(reason or "the connection dropped")
            wait = BACKOFF[min(self.tries, len(BACKOFF) - 1)]
            self.tries += 1
            self.retry_at = time.time() + wait
            self._closed.wait(wait)
            self.state = "connecting"

    def _last_words(self, proc: subprocess.Popen[bytes]) -> str:
        try:
            code = proc.wait(2)
        except subprocess.TimeoutExpired:
            return "the connection dropped"
        return explain(self.host, self._stderr_tail, code) if self._stderr_tail else "the connection dropped"

    def _pong(self, started: float, _reply: dict[str, Any]) -> None:
        self.rtt = time.monotonic() - started

    def _down(self, reason: str) -> None:
        if self.since is None:             # a new outage (a failed retry is the same one)
            self.since = time.time()
        self.state, self.reason, self.rtt = "unreachable", reason, None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
        with self._lock:
            handlers, self._handlers = self._handlers, {}
        for fn in handlers.values():
            fn({"end": True, "lost": reason})

    def close(self) -> None:
        self._closed.set()
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()       # the bridge ends with its stdin
            except OSError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---- requests -----------------------------------------------------------------------------

    def request(self, body: dict[str, Any], on_msg: Callable[[dict[str, Any]], None]) -> int:
        """Send one request; on_msg gets every message answering it (the last one has "end")."""
        rid = next(self._ids)
        proc = self._proc
        if proc is None or proc.stdin is None:
            on_msg({"end": True, "lost": self.reason or "not connected"})
            return rid
        with self._lock:
            self._handlers[rid] = on_msg
            try:
                proc.stdin.write(json.dumps({"id": rid, **body}).encode() + b"\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._handlers.pop(rid, None)
                on_msg({"end": True, "lost": "the connection dropped"})
        return rid

    def cancel(self, rid: int) -> None:
        with self._lock:
            self._handlers.pop(rid, None)
        self.request({"cancel": rid}, lambda m: None)

    def call(self, body: dict[str, Any], timeout: float | None = None,
             on_msg: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Send and wait for the end; the messages in order (raises LinkDown when the link drops)."""
        got: list[dict[str, Any]] = []
        done = threading.Event()

        def take(m: dict[str, Any]) -> None:
            if m.get("end"):
                if "lost" in m:
                    got.append(m)
                done.set()
                return
            got.append(m)
            if on_msg is not None:
                on_msg(m)
        self.request(body, take)
        if not done.wait(timeout):
            raise LinkDown("no answer in time")
        if got and "lost" in got[-1]:
            raise LinkDown(got[-1]["lost"])
        return got

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        """ssh's stderr once connected (why it gave up, in the end): read so it never fills up."""
        if proc.stderr is not None:
            for line in proc.stderr:
                self._stderr_tail = (self._stderr_tail + line.decode(errors="replace"))[-2000:]

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.bytes_in += len(line)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            rid = msg.pop("id", None)
            with self._lock:
                fn = self._handlers.get(rid) if rid is not None else None
                if fn is not None and msg.get("end"):
                    del self._handlers[rid]
            if fn is not None:
                fn(msg)
        if self._proc is proc:
            self._gone.set()


def _read_hello(proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    result: list[dict[str, Any] | None] = [None]

    def read() -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        try:
            result[0] = json.loads(line) if line else None
        except ValueError:
            result[0] = None
    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(HELLO_TIMEOUT)
    return result[0] if not t.is_alive() else None


