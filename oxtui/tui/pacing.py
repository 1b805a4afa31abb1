"""When the UI takes what the engine pushes (EngineClient.set_wake): a new snapshot at once, so a key's
effect is drawn as soon as the engine has it; new log lines at once after a quiet moment, then at most
every LOG_INTERVAL while they keep coming.

Why the logs wait: each take scrolls the whole pane, and a repaint costs the UI thread several
milliseconds whatever it shows; at 200 lines a second every take is a new page that nobody reads
line by line, and ten pages a second cost a tenth of a core. Pure: no Textual, a clock and a timer
are given, so the policy is tested with a fake clock (tests/test_pacing.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

LOG_INTERVAL = 0.5


class Pacer:
    def __init__(self, post: Callable[[str], None], take_snapshot: Callable[[], None],
                 take_logs: Callable[[], None], call_later: Callable[[float, Callable[[], None]], Any],
                 clock: Callable[[], float] = time.monotonic, interval: float = LOG_INTERVAL):
        """`post(what)` brings `what` to the UI thread (thread-safe); `call_later(delay, fn)` runs fn on the
        UI thread later and returns a handle with cancel()."""
        self.post, self.take_snapshot, self.take_logs = post, take_snapshot, take_logs
        self.call_later, self.clock, self.interval = call_later, clock, interval
        self._snapshot_posted = False
        self._logs_at = float("-inf")       # when log lines were last taken
        self._timer: Any = None             # a take of log lines waiting for the interval to pass

    def woken(self, what: str) -> None:
        """From the client's thread. One snapshot wake-up waits at a time (its take takes the newest);
        the client itself wakes for logs once until they are taken."""
        if what == "snapshot":
            if self._snapshot_posted:
                return
            self._snapshot_posted = True
        self.post(what)

    def handle(self, what: str) -> None:
        """On the UI thread, for what `post` brought."""
        if what not in ("logs", "logs-due"):
            self._snapshot_posted = False
            self.take_snapshot()
            return
        wait = self._logs_at + self.interval - self.clock()
        if wait <= 0 or what == "logs-due":
            self.take_logs()
        elif self._timer is None:
            self._timer = self.call_later(wait, lambda: self.post("logs-due"))

    def logs_taken(self) -> None:
        """Log lines are being taken (by handle, or by a pull of everything)."""
        if self._timer is not None:      # a take due later is not needed any more; left to run, each
            self._timer.cancel()         # such timer would start a chain of takes of its own
            self._timer = None
        self._logs_at = self.clock()
