"""When the UI takes what the engine pushes (EngineClient.set_wake): a new snapshot at once, so a key's
effect is drawn as soon as the engine has it; new log lines at once after a quiet moment, then every
LOG_INTERVAL while they keep coming, or sooner with a snapshot (one frame draws both).

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
# A command's toast waits this long at most for the snapshot that shows the command's effect.
NOTE_WAIT = 0.1


class Pacer:
    def __init__(self, post: Callable[[str], None], take_snapshot: Callable[[], None],
                 take_logs: Callable[[], None], call_later: Callable[[float, Callable[[], None]], Any],
                 clock: Callable[[], float] = time.monotonic, interval: float = LOG_INTERVAL):
        """`post(what)` brings `what` to the UI thread (thread-safe); `call_later(delay, fn)` runs fn on the
        UI thread later and returns a handle with cancel()."""
        self.post, self.take_snapshot, self.take_logs = post, take_snapshot, take_logs
        self.call_later, self.clock, self.interval = call_later, clock, interval
        self._posted: set[str] = set()      # what was posted and not taken yet: posted once until taken
        self._logs_at = float("-inf")       # when log lines were last taken
        self._timer: Any = None             # a take of log lines waiting for the interval to pass
        self._held: list[Callable[[], None]] = []     # toasts waiting for a snapshot
        self._held_timer: Any = None

    def woken(self, what: str) -> None:
        """From the client's thread, as often as it likes (a logger at 2,000 lines a second wakes it for
        each batch): one wake-up of a kind waits at a time, its take takes everything there is. "finished"
        is taken as a snapshot is (the app looks at both there)."""
        kind = "logs" if what == "logs" else "snapshot"
        if kind in self._posted:
            return
        self._posted.add(kind)
        self.post(kind)

    def handle(self, what: str) -> None:
        """On the UI thread, for what `post` brought."""
        if what == "snapshot":
            self._posted.discard("snapshot")
            self.take_snapshot()
            if self._timer is not None:
                # Lines waiting for their turn go into this frame: a frame costs the UI thread several
                # milliseconds whatever it shows, and beside a chatty app a snapshot comes every second
                # (its CPU figure), so drawn apart the two made three frames a second instead of two.
                self.take_logs()
            self.say_held()
            return
        wait = self._logs_at + self.interval - self.clock()
        if wait <= 0 or what == "logs-due":
            self.take_logs()
        elif self._timer is None:
            self._timer = self.call_later(wait, lambda: self.post("logs-due"))

    def hold(self, say: Callable[[], None]) -> None:
        """A command's toast (`say()` shows it): shown with the next snapshot taken, the one that shows the
        command's effect, or NOTE_WAIT from now if none comes (the command changed nothing). Attached, the
        reply comes some 10 ms before the snapshot: a toast drawn at once was a frame of its own (7-12 ms of
        the UI thread) and pushed the new row back by a frame, 85 ms from a key to the screen against 45."""
        self._held.append(say)
        if self._held_timer is None:
            self._held_timer = self.call_later(NOTE_WAIT, self.say_held)

    def say_held(self) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        held, self._held = self._held, []
        for say in held:
            say()

    def logs_taken(self) -> None:
        """Log lines are being taken (by handle, or by a pull of everything): new ones wake the UI again."""
        self._posted.discard("logs")
        if self._timer is not None:      # a take due later is not needed any more; left to run, each
            self._timer.cancel()         # such timer would start a chain of takes of its own
            self._timer = None
        self._logs_at = self.clock()
