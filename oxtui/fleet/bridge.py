"""`oxtui _bridge`: the far end of a fleet link, run by `ssh HOST oxtui _bridge`.

It speaks to every engine of its user (root: every user's) over their control sockets and carries
them over its stdin and stdout as JSON lines, each tagged with the id of the request it answers:

    -> {"id", "ping": t}                    <- {"id", "pong": t}
    -> {"id", "list": true}                 <- {"id", "engines": [... as `oxtui ls --json` ...]}
    -> {"id", "engine": OXFILE, "req": {}}  <- {"id", "msg": {...}} per reply line, then {"id", "end": true}
    -> {"id", "watch": OXFILE}              <- {"id", "snapshot": keyed} once, then {"id", "delta": patch} as soon
                                               as the engine pushes a change (a state, a pid), and for CPU and
                                               memory alone at most every WATCH_EVERY s; {"id", "batches": [...]}
                                               of new log lines, at most every LOGS_EVERY s; {"id", "gone": true}
                                               when the engine stops
    -> {"id", "cancel": ID}                 ends the stream ID
    first line, unasked: {"bridge": PROTOCOL, "version", "host", "user"}

Only what changes crosses the link: a snapshot goes once, then its differences (delta.py). It ends
when its stdin does (the SSH connection is gone), leaving every engine as it was.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from .. import __version__
from ..client.connection import Client, ControlError, NoEngine
from ..client.discover import engines, sockets_of
from ..client.remote import RemoteEngine
from ..protocol import encode
from . import delta

PROTOCOL = 1
WATCH_EVERY = 1.0          # figures (CPU, memory) at most once a second; any other change goes at once
LOGS_EVERY = 0.1
LOG_HISTORY = 300          # lines of each engine's recent past a new watcher gets


class Bridge:
    def __init__(self, out: BinaryIO):
        self.out = out
        self._lock = threading.Lock()
        self._streams: dict[int, threading.Event] = {}
        self._wakes: dict[int, threading.Event] = {}      # a watch's wake-up: set by its engine, or to stop
        self._clients: dict[int, Client] = {}

    def send(self, obj: Any) -> None:
        data = encode(obj)
        with self._lock:
            try:
                self.out.write(data)
                self.out.flush()
            except (BrokenPipeError, ValueError):
                os._exit(0)          # the link is gone: nothing to tell anyone

    def serve(self, inp: BinaryIO) -> int:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
        self.send({"bridge": PROTOCOL, "version": __version__, "host": socket.gethostname(), "user": user})
        for line in inp:
            try:
                msg = json.loads(line)
                rid = msg["id"]
            except (ValueError, KeyError, TypeError):
                continue
            if "ping" in msg:
                self.send({"id": rid, "pong": msg["ping"]})
            elif "cancel" in msg:
                self._cancel(msg["cancel"])
            else:
                threading.Thread(target=self._handle, args=(rid, msg), daemon=True).start()
        for rid in list(self._streams):
            self._cancel(rid)
        return 0

    def _cancel(self, rid: int) -> None:
        stop = self._streams.pop(rid, None)
        if stop is not None:
            stop.set()
        woke = self._wakes.pop(rid, None)
        if woke is not None:
            woke.set()
        client = self._clients.pop(rid, None)
        if client is not None:
            try:
                client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _handle(self, rid: int, msg: dict[str, Any]) -> None:
        try:
            if msg.get("list"):
                self.send({"id": rid, "engines": engines()})
            elif "watch" in msg:
                self._watch(rid, Path(msg["watch"]))
            elif "engine" in msg:
                self._call(rid, Path(msg["engine"]), msg.get("req") or {})
        except Exception as e:      # one request's trouble never ends the bridge
            self.send({"id": rid, "msg": {"ok": False, "error": f"bridge: {type(e).__name__}: {e}"}})
        self.send({"id": rid, "end": True})

    def _socket(self, oxfile: Path) -> Path | None:
        found = sockets_of(oxfile)
        return found[0] if found else None

    def _call(self, rid: int, oxfile: Path, req: dict[str, Any]) -> None:
        sock = self._socket(oxfile)
        if sock is None:
            self.send({"id": rid, "msg": {"ok": False, "error": f"no engine is running for {oxfile}", "noengine": True}})
            return
        streaming = req.get("follow") or req.get("cmd") == "attach"
        try:
            with Client(oxfile, timeout=None, path=sock) as client:
                self._clients[rid] = client
                client.send(req)
                for reply in client.replies():
                    self.send({"id": rid, "msg": reply})
                    if "ok" in reply and not (streaming and reply["ok"]):
                        break
        except NoEngine as e:
            self.send({"id": rid, "msg": {"ok": False, "error": str(e), "noengine": True}})
        except (ControlError, OSError, ValueError):
            pass           # cancelled, or the engine went away mid-stream
        finally:
            self._clients.pop(rid, None)

    def _watch(self, rid: int, oxfile: Path) -> None:
        stop = self._streams[rid] = threading.Event()
        # Woken by the engine's push (RemoteEngine.set_wake), not polled: a key's effect on a far host went
        # out at the next tick of a 0.1 s poll, 50 ms later on average, on top of the link's round trip.
        woke = self._wakes[rid] = threading.Event()
        sock = self._socket(oxfile)
        remote = RemoteEngine(oxfile, path=sock, log_lines=LOG_HISTORY)
        remote.set_wake(lambda _what: woke.set())
        try:
            remote.connect()
        except (NoEngine, ControlError, OSError) as e:
            self.send({"id": rid, "gone": True, "error": str(e)})
            return
        sent: dict[str, Any] | None = None
        last_snap: Any = None
        next_snap = next_logs = 0.0
        due: float | None = None          # when something held back (figures, log lines) is to go
        woke.set()                        # the first snapshot, and the lines the engine had
        try:
            while not stop.is_set():
                woke.wait(None if due is None else max(0.0, due - time.monotonic()))
                woke.clear()
                if stop.is_set():
                    break
                due = None
                if time.monotonic() >= next_logs:
                    batches, dropped = remote.take_logs()
                    if batches or dropped:
                        self.send({"id": rid, "batches": [b.to_wire() for b in batches], "dropped": dropped})
                        next_logs = time.monotonic() + LOGS_EVERY
                else:
                    due = next_logs       # lines wait their turn (a chatty app: one message per LOGS_EVERY)
                snap = remote.snapshot()
                if snap is not None and snap is not last_snap:
                    last_snap = snap
                    now = delta.keyed(snap)
                    change = delta.diff(sent, now) if sent is not None else None
                    if sent is None:
                        self.send({"id": rid, "snapshot": now})
                        sent, next_snap = now, time.monotonic() + WATCH_EVERY
                    elif change and (time.monotonic() >= next_snap or not delta.only_metrics(change)):
                        self.send({"id": rid, "delta": change})
                        sent, next_snap = now, time.monotonic() + WATCH_EVERY
                    elif change:     # figures only: they go at next_snap or with the next change
                        due = next_snap if due is None else min(due, next_snap)
                        last_snap = None          # (`sent` stays what the far end has; looked at again then)
                if remote.finished.is_set():
                    self.send({"id": rid, "gone": True})
                    return
        finally:
            remote.detach()


def main() -> int:
    """`oxtui _bridge`: for `ssh HOST oxtui _bridge` only."""
    return Bridge(sys.stdout.buffer).serve(sys.stdin.buffer)
