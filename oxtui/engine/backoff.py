"""Restart policy: exponential backoff with jitter, and the crash-loop window.

Pure logic with an injected clock and random source so it is unit-tested without processes.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A run that lasted this long proves the program can stay up: the backoff starts over.
STABLE_UPTIME = 10.0


@dataclass
class RestartPolicy:
    base: float = 0.1            # delay before the second restart in a row
    cap: float = 15.0            # the delay never grows past this
    max_restarts: int = 10       # this many crashes ...
    window: float = 60.0         # ... within this many seconds = crash loop
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    streak: int = 0
    crashes: deque[float] = field(default_factory=deque)

    @classmethod
    def of(cls, cfg: Any) -> RestartPolicy:
        """The policy a process's oxfile settings give (backoff, backoff_max, max_restarts, restart_window)."""
        return cls(base=cfg.backoff, cap=cfg.backoff_max, max_restarts=cfg.max_restarts, window=cfg.restart_window)

    def on_exit(self, uptime: float) -> float | None:
        """Record an unplanned exit after `uptime` seconds of running.

        Returns the delay before the restart, or None for a crash loop (park as errored).
        """
        now = self.clock()
        self.crashes.append(now)
        while self.crashes and self.crashes[0] <= now - self.window:
            self.crashes.popleft()
        if len(self.crashes) >= self.max_restarts:
            return None
        if uptime >= STABLE_UPTIME:
            self.streak = 0
        delay = self.delay_for(self.streak)
        self.streak += 1
        return delay

    def delay_for(self, streak: int) -> float:
        """The first restart is immediate; then base, 2*base, 4*base ... up to cap, with jitter.

        Jitter takes up to a quarter off so a fleet that crashed together does not restart in lockstep.
        """
        if streak <= 0:
            return 0.0
        raw = min(self.cap, self.base * (2 ** (streak - 1)))
        return raw * (0.75 + 0.25 * self.rand())

    def reset(self) -> None:
        self.streak = 0
        self.crashes.clear()
