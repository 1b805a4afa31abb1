"""The control socket: a Unix socket (0600, in a 0700 folder) speaking JSON lines.

Request:  {"cmd": "scale", "name": "api", "n": 4}
Replies:  zero or more {"progress": "..."} or {"log": [...]} lines, then {"ok": true, "result": ...}
          or {"ok": false, "error": "..."}. A connection may send several requests in turn.
Bad input (not JSON, not an object, too long) gets an error reply; it never reaches the engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from .. import __version__
from ..batchqueue import BatchQueue
from ..protocol import LogBatch, encode, error, ok
from ..runtime import socket_path
from .errors import CommandError, UsageError
from .logquery import LogQuery, Named

if TYPE_CHECKING:
    from ..protocol import Snapshot
    from .events import EventHub
    from .logs import LogHub


class ControlHost(Named, Protocol):
    """All the control socket uses of its engine (Engine satisfies it: mypy checks that, as a test)."""

    logs: LogHub
    events: EventHub
    embedded: bool          # inside a TUI: that TUI moves it, not `oxtui upgrade`
    background: bool

    async def execute(self, req: dict[str, Any], progress: Callable[[str], None] | None = None) -> Any: ...
    def snapshot(self) -> Snapshot: ...
    def looked_at(self, viewer: int = 0) -> None: ...
    def on_change(self, fn: Callable[[], None], after_commands: bool = False) -> Callable[[], None]: ...
    def hand_over(self, background: bool = True) -> int: ...
    async def until_it_can_hand_over(self, progress: Callable[[str], None] | None, limit: float) -> None: ...

MAX_REQUEST = 64 * 1024
FEED_MAX_BYTES = 8 * 1024 * 1024
PUSH_INTERVAL = 0.1
UPGRADE_WAIT = 120.0       # for a reload or a worker's start to finish before an upgrade
ANSWER_WAIT = 10.0         # for the answers being sent to be read, before an upgrade cuts them


class ControlServer:
    def __init__(self, engine: ControlHost, oxfile: Path):
        self.engine = engine
        self.path = socket_path(oxfile)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._answering = 0      # commands between their request and the end of their answer

    async def start(self, inherited: socket.socket | None = None) -> None:
        """Bind the socket, or serve one inherited from the engine we took over from."""
        if inherited is not None:
            self._server = await asyncio.start_unix_server(self._serve, sock=inherited, limit=MAX_REQUEST)
            return
        # The engine holds the oxfile's lock, so whatever socket file is here belongs to a dead engine.
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST)
        os.chmod(self.path, 0o600)

    def listener_fd(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].fileno()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(writer, error(f"request longer than {MAX_REQUEST} bytes"))
                    return
                if not line:
                    return
                if not line.endswith(b"\n"):
                    await _send(writer, error("request must end with a newline"))
                    return
                await self._answer(line, reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _answer(self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            await _send(writer, error("request is not valid JSON"))
            return
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            await _send(writer, error('request must be an object like {"cmd": "status"}'))
            return
        if req["cmd"] == "logs" and req.get("follow"):
            await self._follow(req, writer)
            return
        if req["cmd"] == "events" and req.get("follow"):
            await self._follow_events(req, writer)
            return
        if req["cmd"] == "attach":
            await self._attach(req, reader, writer)
            return
        if req["cmd"] == "upgrade":
            await self._upgrade(writer)
            return

        def progress(text: str) -> None:
            writer.write(encode({"progress": text}))

        self._answering += 1
        try:
            try:
                result = await self.engine.execute(req, progress)
            except CommandError as e:
                await _send(writer, error(str(e), usage=isinstance(e, UsageError)))
                return
            except Exception as e:  # a bug in one command must not take the engine down
                await _send(writer, error(f"internal error: {type(e).__name__}: {e}"))
                return
            await _send(writer, ok(result))
        finally:
            self._answering -= 1

    async def _upgrade(self, writer: asyncio.StreamWriter) -> None:
        """`oxtui upgrade`: hand over to a new engine process of the oxtui installed now (handover.py),
        then answer and end this process at once."""
        engine = self.engine
        if engine.embedded:
            await _send(writer, error("this engine runs inside a TUI: press q, then b there; the background "
                                      "engine it becomes can be upgraded"))
            return

        def progress(text: str) -> None:
            writer.write(encode({"progress": text}))
        try:
            await self._until_quiet(writer, progress)
            pid = engine.hand_over(background=engine.background)
        except CommandError as e:
            await _send(writer, error(f"not upgraded, nothing changed: {e}", retry=getattr(e, "soon", False)))
            return
        # Everything is the new engine's now. Not one more callback of this loop may run (it would read
        # the helper's socket and the workers' pipes): answer through the socket as it is, then go.
        reply = encode(ok({"old_pid": os.getpid(), "old_version": __version__, "new_pid": pid}))
        raw = writer.get_extra_info("socket")
        with socket.socket(fileno=os.dup(raw.fileno())) as s:
            s.settimeout(5)
            try:
                s.sendall(reply)
            except OSError:
                pass
        os._exit(0)

    async def _until_quiet(self, writer: asyncio.StreamWriter, progress: Callable[[str], None]) -> None:
        """Wait until nothing is half done and every other command has been answered: a connection is
        this process's, so an answer the hand-over cuts is lost (a reload's, the instant after the
        reload ends). A client that does not read its answer holds the upgrade up ANSWER_WAIT s at most.
        Returns with nothing left to run in between: the caller hands over at once."""
        now = time.monotonic()
        deadline, answers_by = now + UPGRADE_WAIT, now + ANSWER_WAIT
        said = False
        while True:
            await writer.drain()
            # returns without yielding to the loop when nothing is half done
            await self.engine.until_it_can_hand_over(progress, max(0.0, deadline - time.monotonic()))
            if not self._answering or time.monotonic() > answers_by:
                return
            if not said:
                progress(f"waiting: {self._answering} other command(s) being answered")
                said = True
            await asyncio.sleep(0.05)

    async def _follow(self, req: dict, writer: asyncio.StreamWriter) -> None:
        try:
            first = await self.engine.execute({**req, "follow": False})
        except CommandError as e:
            await _send(writer, error(str(e), usage=isinstance(e, UsageError)))
            return
        with LogFeed(self.engine.logs, LogQuery.of(self.engine, {**req, "since": None})) as feed:
            await _send(writer, ok(first))
            while True:
                batches, dropped = await feed.get()
                if dropped:
                    writer.write(encode({"dropped": dropped}))
                writer.write(b"".join(encode({"log": [b.seq, b.ts, b.source, b.stream, line]})
                                      for b in batches for line in b.lines))
                await writer.drain()

    async def _follow_events(self, req: dict, writer: asyncio.StreamWriter) -> None:
        try:
            first = await self.engine.execute({**req, "follow": False})
        except CommandError as e:
            await _send(writer, error(str(e), usage=isinstance(e, UsageError)))
            return
        name = req.get("name")
        queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=10_000)

        def on_event(ev: dict) -> None:
            if name in (None, "all") or ev["process"] == name:
                try:
                    queue.put_nowait(ev)
                except asyncio.QueueFull:     # a reader that stopped reading loses events, never the engine
                    pass
        hub = self.engine.events
        hub.subscribers.append(on_event)
        try:
            await _send(writer, ok(first))
            while True:
                ev = await queue.get()
                writer.write(encode({"event": ev}))
                while not queue.empty():
                    writer.write(encode({"event": queue.get_nowait()}))
                await writer.drain()
        finally:
            hub.subscribers.remove(on_event)

    async def _attach(self, req: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A UI attached over the socket: the snapshot whenever it changes (at most 10 a second) and
        every new log batch, on one connection, until the UI or the engine goes away."""
        n = req.get("logs", 2000)
        n = n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 2000
        changed = asyncio.Event()
        nudge = asyncio.Event()             # a command is done: its effect goes out whatever the cap says
        unlisten = self.engine.on_change(changed.set)
        unnudge = self.engine.on_change(nudge.set, after_commands=True)
        self.engine.looked_at(+1)
        try:
            with LogFeed(self.engine.logs, None) as feed:
                recent = self.engine.logs.recent()
                kept, count = [], 0
                for b in reversed(recent):
                    if count >= n:
                        break
                    kept.append(b)
                    count += b.count
                await _send(writer, ok({"snapshot": self.engine.snapshot(),
                                        "logs": [b.to_wire() for b in reversed(kept)]}))
                logs = asyncio.ensure_future(feed.get())
                dirty = asyncio.ensure_future(changed.wait())
                nudged = asyncio.ensure_future(nudge.wait())
                gone = asyncio.ensure_future(reader.read(1))     # the UI says nothing more: EOF = detached
                loop = asyncio.get_running_loop()
                # Each kind goes at once after a quiet moment, then at most 10 times a second. Apart: a
                # chatty logger must not hold a key's effect (a snapshot) back until the logs' next turn.
                sent = {"snapshot": float("-inf"), "logs": float("-inf")}
                try:
                    while True:
                        ready = {"snapshot": dirty, "logs": logs}
                        due = [sent[k] + PUSH_INTERVAL for k, f in ready.items() if f.done()]
                        if dirty.done() and nudged.done():
                            due.append(0.0)
                        timeout = max(0.0, min(due) - loop.time()) if due else None
                        if timeout != 0.0:
                            await asyncio.wait([f for f in (logs, dirty, gone, nudged) if not f.done()],
                                               timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                        if gone.done():
                            return
                        now = loop.time()
                        if dirty.done() and (now >= sent["snapshot"] + PUSH_INTERVAL or nudged.done()):
                            sent["snapshot"] = now
                            changed.clear()
                            nudge.clear()
                            nudged = asyncio.ensure_future(nudge.wait())
                            writer.write(encode({"snapshot": self.engine.snapshot()}))
                            dirty = asyncio.ensure_future(changed.wait())
                        if logs.done() and now >= sent["logs"] + PUSH_INTERVAL:
                            sent["logs"] = now
                            batches, dropped = logs.result()
                            if dropped:
                                writer.write(encode({"dropped": dropped}))
                            writer.write(b"".join(encode({"batch": b.to_wire()}) for b in batches))
                            logs = asyncio.ensure_future(feed.get())
                        await writer.drain()
                finally:
                    logs.cancel()
                    dirty.cancel()
                    nudged.cancel()
                    gone.cancel()
        finally:
            unnudge()
            unlisten()
            self.engine.looked_at(-1)


class LogFeed:
    """New log batches for one connection (a BatchQueue plus a wake-up for the connection's task)."""

    def __init__(self, hub: Any, query: LogQuery | None):
        self.hub, self.query = hub, query
        self._queue = BatchQueue(FEED_MAX_BYTES)
        self._wake = asyncio.Event()

    def __enter__(self) -> Self:
        self.hub.subscribers.append(self._on_batch)
        return self

    def __exit__(self, *exc: object) -> None:
        self.hub.subscribers.remove(self._on_batch)

    def _on_batch(self, batch: LogBatch) -> None:
        if self.query is None or self.query.wants(batch):
            self._queue.add(batch)
            self._wake.set()

    async def get(self) -> tuple[list[LogBatch], int]:
        """Everything queued since the last call (waits for at least one batch or drop)."""
        await self._wake.wait()
        self._wake.clear()
        return self._queue.take()


async def _send(writer: asyncio.StreamWriter, obj: Any) -> None:
    writer.write(encode(obj))
    await writer.drain()
