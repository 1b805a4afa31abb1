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
from pathlib import Path
from typing import Any

from ..runtime import socket_path
from .group import CommandError

MAX_REQUEST = 64 * 1024


class ControlServer:
    def __init__(self, engine: Any, oxfile: Path):
        self.engine = engine
        self.path = socket_path(oxfile)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        # The engine holds the oxfile's lock, so whatever socket file is here belongs to a dead engine.
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST)
        os.chmod(self.path, 0o600)

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
                    await _send(writer, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
                    return
                if not line:
                    return
                if not line.endswith(b"\n"):
                    await _send(writer, {"ok": False, "error": "request must end with a newline"})
                    return
                await self._answer(line, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            await _send(writer, {"ok": False, "error": "request is not valid JSON"})
            return
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            await _send(writer, {"ok": False, "error": 'request must be an object like {"cmd": "status"}'})
            return
        if req["cmd"] == "logs" and req.get("follow"):
            await self._follow(req, writer)
            return

        def progress(text: str) -> None:
            writer.write(_encode({"progress": text}))

        try:
            result = await self.engine.execute(req, progress)
        except CommandError as e:
            await _send(writer, {"ok": False, "error": str(e)})
            return
        except Exception as e:  # a bug in one command must not take the engine down
            await _send(writer, {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"})
            return
        await _send(writer, {"ok": True, "result": result})

    async def _follow(self, req: dict, writer: asyncio.StreamWriter) -> None:
        try:
            first = await self.engine.execute({**req, "follow": False})
        except CommandError as e:
            await _send(writer, {"ok": False, "error": str(e)})
            return
        names = {g.name for g in self.engine.targets(req.get("name"))} if req.get("name") not in (None, "all") else None
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=10_000)
        dropped = 0

        def on_batch(batch: Any) -> None:
            nonlocal dropped
            if names is not None and batch.process not in names:
                return
            try:
                queue.put_nowait(batch)
            except asyncio.QueueFull:
                dropped += batch.count   # a slow reader loses lines on screen, never in the files

        self.engine.logs.subscribers.append(on_batch)
        try:
            await _send(writer, {"ok": True, "result": first})
            while True:
                batch = await queue.get()
                if dropped:
                    writer.write(_encode({"dropped": dropped}))
                    dropped = 0
                writer.write(b"".join(_encode({"log": [batch.seq, batch.ts, batch.source, batch.stream, line]})
                                      for line in batch.lines))
                await writer.drain()
        finally:
            self.engine.logs.subscribers.remove(on_batch)


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def _send(writer: asyncio.StreamWriter, obj: Any) -> None:
    writer.write(_encode(obj))
    await writer.drain()
