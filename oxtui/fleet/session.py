"""The fleet as the TUI sees it: every host's link, and every engine on it as an `EngineClient`
(client/link.py), the same interface an attached TUI uses, so the keys work as they do on one host.

Each engine is watched through its host's bridge: the snapshot arrives once and then as differences
(delta.py), log lines as they come. The engines of a host are listed again every LIST_EVERY seconds
(one started, one stopped). Nothing here waits on a host: every answer comes on that host's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ..batchqueue import BatchQueue
from ..client.link import LOG_BUFFER_BYTES, Wake, Waker
from ..protocol import LogBatch, Reply, Snapshot, error
from . import delta
from .fleetfile import Host
from .link import HostLink

LIST_EVERY = 5.0


class BridgedEngine:
    """An `EngineClient` for one engine behind a host's bridge; `CanDetach`."""

    attached = True

    def __init__(self, link: HostLink, oxfile: str, wake: Waker | None = None):
        """`wake`: the session's, shared by every engine of the fleet (the fleet view takes them all at once)."""
        self.link, self.oxfile = link, oxfile
        self._wake = wake or Waker()
        self.finished = threading.Event()
        self._keyed: dict[str, Any] | None = None
        self._snapshot: Snapshot | None = None
        self._logs = BatchQueue(LOG_BUFFER_BYTES)
        self._watch: int | None = None

    def watch(self) -> None:
        self._watch = self.link.request({"watch": self.oxfile}, self._on_watch)

    def _on_watch(self, m: dict[str, Any]) -> None:
        if "snapshot" in m:
            self._keyed = m["snapshot"]
        elif "delta" in m and self._keyed is not None:
            self._keyed = delta.patch(self._keyed, m["delta"])
        if ("snapshot" in m or "delta" in m) and self._keyed is not None:
            self._snapshot = cast(Snapshot, delta.unkeyed(self._keyed))
            self._wake("snapshot")
        for raw in m.get("batches", ()):
            self._logs.add(LogBatch.from_wire(raw))
        if m.get("dropped"):
            self._logs.drop(m["dropped"])
        if m.get("batches") or m.get("dropped"):
            self._wake("logs")
        if m.get("gone") or m.get("end"):
            self.finished.set()
            self._wake("finished")

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def take_logs(self) -> tuple[list[LogBatch], int]:
        return self._logs.take()

    def set_wake(self, fn: Wake | None) -> None:
        self._wake.fn = fn

    def command(self, req: dict[str, Any], done: Callable[[Reply], object] | None = None,
                progress: Callable[[str], None] | None = None) -> None:
        answered = [False]

        def on(m: dict[str, Any]) -> None:
            reply = m.get("msg") or {}
            if "progress" in reply and progress is not None:
                progress(reply["progress"])
            elif "ok" in reply and not answered[0]:
                answered[0] = True
                if done is not None:
                    done(reply)     # type: ignore[arg-type]
            elif m.get("end") and not answered[0]:
                answered[0] = True
                if done is not None:
                    done(error(f"{self.link.host.name}: {m.get('lost') or 'no answer'}"))
        self.link.request({"engine": self.oxfile, "req": req}, on)

    def shutdown(self, done: Callable[[], object]) -> None:
        self.command({"cmd": "shutdown"}, lambda reply: done())

    def detach(self) -> None:
        if self._watch is not None:
            self.link.cancel(self._watch)


class FleetHost:
    """One host: its link, and its engines by oxfile."""

    def __init__(self, host: Host, wake: Waker | None = None):
        self.host = host
        self.wake = wake or Waker()
        self.link = HostLink(host)
        self.link.on_up = self._relist
        self.engines: dict[str, BridgedEngine] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.host.name

    def start(self) -> None:
        threading.Thread(target=self.link.run_forever, name=f"fleet {self.name}", daemon=True).start()
        threading.Thread(target=self._list_now_and_then, daemon=True).start()

    def _list_now_and_then(self) -> None:
        while not self.link._closed.wait(LIST_EVERY):
            if self.link.state == "up":
                self._relist()

    def _relist(self) -> None:
        def on(m: dict[str, Any]) -> None:
            if "engines" not in m:
                return
            found = {e["oxfile"] for e in m["engines"] if e.get("answering") and e.get("oxfile")}
            with self._lock:
                for oxfile in list(self.engines):
                    if oxfile not in found or self.engines[oxfile].finished.is_set():
                        self.engines.pop(oxfile).detach()
                for oxfile in sorted(found - set(self.engines)):
                    view = self.engines[oxfile] = BridgedEngine(self.link, oxfile, self.wake)
                    view.watch()
        self.link.request({"list": True}, on)

    def views(self) -> list[BridgedEngine]:
        with self._lock:
            return [self.engines[k] for k in sorted(self.engines)] if self.link.state == "up" else []

    def close(self) -> None:
        self.link.close()


class FleetSession:
    def __init__(self, hosts: list[Host]):
        self.wake = Waker()
        self.hosts = [FleetHost(h, self.wake) for h in hosts]
        self.finished = threading.Event()       # never set: a fleet view ends when its person leaves

    def set_wake(self, fn: Wake | None) -> None:
        """Every engine's news, of every host, wakes the fleet view (see EngineClient.set_wake)."""
        self.wake.fn = fn

    def start(self) -> None:
        for h in self.hosts:
            h.start()

    def close(self) -> None:
        for h in self.hosts:
            h.close()

    def host(self, name: str) -> FleetHost | None:
        return next((h for h in self.hosts if h.name == name), None)


def engine_label(oxfile: str) -> str:
    """An engine in the grid: its oxfile's folder (and file, when not oxfile.toml)."""
    p = Path(oxfile)
    return p.parent.name if p.name == "oxfile.toml" else f"{p.parent.name}/{p.name}"


def host_line(h: FleetHost, now: float | None = None) -> str:
    """"up · 12 ms" or "unreachable since 12:04:31 (3 tries), retrying in 8 s: <why>"."""
    link = h.link
    now = time.time() if now is None else now
    if link.state == "up":
        return "up" + (f" · {link.rtt * 1000:.0f} ms" if link.rtt is not None else "")
    if link.since is None:
        return "connecting…"
    if link.state == "unreachable":
        left = max(0, round((link.retry_at or now) - now))
        then = f"retrying in {left} s"
    else:
        then = "connecting again…"
    tries = f" ({link.tries} {'try' if link.tries == 1 else 'tries'})" if link.tries else ""
    return (f"unreachable since {time.strftime('%H:%M:%S', time.localtime(link.since))}{tries}, {then}"
            + (f": {link.reason}" if link.reason else ""))


def down_cells(h: FleetHost) -> tuple[str, str]:
    """A host that is not up, in two grid cells: ("since 12:04", "retry in 8 s")."""
    link = h.link
    since = time.strftime("since %H:%M", time.localtime(link.since)) if link.since else ""
    if link.state != "unreachable" or link.retry_at is None:
        return since, "connecting…"
    return since, f"retry in {max(0, round(link.retry_at - time.time()))} s"
