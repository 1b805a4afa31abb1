"""The engine's event stream: starts, exits (with their records), crash loops, reloads, scaling, applies.

Each event is one JSON-able dict with at least `seq`, `at`, `event`, `process`, `instance`, `pid` and
`text` (the line people read). The last HISTORY events are kept for `oxtui events` and new readers;
subscribers (the notifier, `oxtui events -f` connections) get each one as it happens, on the
engine's loop: they must only queue it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

HISTORY = 1000


class EventHub:
    def __init__(self) -> None:
        self.seq = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.subscribers: list[Callable[[dict[str, Any]], None]] = []

    def publish(self, event: str, process: str, instance: int | None = None, pid: int | None = None,
                text: str = "", at: float | None = None, **fields: Any) -> dict[str, Any]:
        """`at`: when it happened, if not now (an exit event carries its exit record's time)."""
        self.seq += 1
        ev = {"seq": self.seq, "at": round(time.time(), 3) if at is None else at, "event": event, "process": process,
              "instance": instance, "pid": pid, "text": text, **fields}
        self.history.append(ev)
        for fn in list(self.subscribers):
            fn(ev)
        return ev

    def recent(self, name: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.history if e["seq"] > after and (name in (None, "all") or e["process"] == name)]
