"""A UI attached to an engine in another process (`oxtui up`, a TUI whose terminal hung up, or a
TUI in another terminal), through the control socket.

One long-lived `attach` connection brings snapshots (at most 10 a second) and every new log batch;
a reader thread keeps the latest of each, so the UI pulls exactly as it does from an embedded
engine. Each command gets a connection of its own, so a reload's progress never holds up the feed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..batchqueue import BatchQueue
from ..protocol import LogBatch, Reply, Snapshot, error, ok
from .connection import Client, ControlError, NoEngine
from .link import LOG_BUFFER_BYTES, Wake, Waker

ATTACH_LOG_LINES = 2000
REATTACH_TIMEOUT = 20.0      # a hand-over's new engine answers within its own start-up time


class RemoteEngine:
    """An `EngineClient` over the control socket; `CanDetach`."""

    attached = True

    def __init__(self, oxfile: Path, path: Path | None = None, log_lines: int = ATTACH_LOG_LINES):
        """`path`: the control socket when it is not this user's (the fleet bridge run by root)."""
        self.oxfile, self.path, self.log_lines = oxfile, path, log_lines
        self.finished = threading.Event()
        self._snapshot: Snapshot | None = None
        self._logs = BatchQueue(LOG_BUFFER_BYTES)
        self._client: Client | None = None
        self._stop_callbacks: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._detached = False
        self._wake = Waker()

    def connect(self, timeout: float = 10.0) -> None:
        """Attach; raises NoEngine when nothing answers for this oxfile, ControlError when refused."""
        self._attach(timeout)
        threading.Thread(target=self._read, name="oxtui attach", daemon=True).start()

    def _attach(self, timeout: float) -> None:
        client = Client(self.oxfile, timeout=timeout, path=self.path)
        try:
            client.send({"cmd": "attach", "logs": self.log_lines})
            first = next(client.replies(), None)
        except (OSError, ValueError) as e:
            client.close()
            raise NoEngine(f"the engine for {self.oxfile} did not answer ({e})") from None
        if first is None or not first.get("ok"):
            client.close()
            raise ControlError((first or {}).get("error", "the engine closed the connection"))
        before = self._snapshot
        self._snapshot = first["result"]["snapshot"]
        if before is None or before["engine_pid"] != self._snapshot["engine_pid"]:
            for raw in first["result"]["logs"]:      # a new engine's ring: lines we have not seen
                self._logs.add(LogBatch.from_wire(raw))
        client.sock.settimeout(None)
        self._client = client

    def detach(self) -> None:
        """Leave the engine running; only this connection closes."""
        self._detached = True
        if self._client is not None:
            try:
                self._client.sock.shutdown(2)
            except OSError:
                pass

    # ---- the client interface ---------------------------------------------------------------

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def take_logs(self) -> tuple[list[LogBatch], int]:
        return self._logs.take()

    def set_wake(self, fn: Wake | None) -> None:
        self._wake.fn = fn

    def command(self, req: dict[str, Any], done: Callable[[Reply], object] | None = None,
                progress: Callable[[str], None] | None = None) -> None:
        def run() -> None:
            try:
                with Client(self.oxfile, timeout=None, path=self.path) as c:
                    reply: Reply = ok(c.call(req, progress))
            except ControlError as e:
                reply = error(str(e))
            except (NoEngine, OSError, ValueError) as e:
                reply = error(f"lost the engine ({e})")
            if done is not None:
                done(reply)

        threading.Thread(target=run, name=f"oxtui {req.get('cmd')}", daemon=True).start()

    def shutdown(self, done: Callable[[], object]) -> None:
        """Stop the engine and every worker; `done` runs once the engine has closed its socket."""
        with self._lock:
            if self.finished.is_set():
                done()
                return
            self._stop_callbacks.append(done)
        self.command({"cmd": "shutdown"})

    # ---- the reader thread --------------------------------------------------------------------

    def _read(self) -> None:
        try:
            while True:
                assert self._client is not None
                try:
                    for msg in self._client.replies():
                        if "snapshot" in msg:
                            self._snapshot = msg["snapshot"]
                            self._wake("snapshot")
                        elif "batch" in msg:
                            self._logs.add(LogBatch.from_wire(msg["batch"]))
                            self._wake("logs")
                        elif "dropped" in msg:
                            self._logs.drop(msg["dropped"])
                            self._wake("logs")
                except (OSError, ValueError):
                    pass
                self._client.close()
                # The connection ended. After a move to the background (q, b) a new engine serves the
                # same socket: carry on with it. An engine that stopped no longer answers at all.
                if self._detached or self._stop_callbacks:
                    return
                try:
                    self._attach(REATTACH_TIMEOUT)
                except (NoEngine, ControlError):
                    return
                self._wake("snapshot")
                self._wake("logs")
        finally:
            with self._lock:
                self.finished.set()
                callbacks, self._stop_callbacks = self._stop_callbacks, []
            for fn in callbacks:
                fn()
            self._wake("finished")
