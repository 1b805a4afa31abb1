"""When a scheduled process next runs (pure): `every` ticks from an anchor, `cron` through croniter.

`every = "30s"` ticks at anchor + 30 s, + 60 s, ... (the engine's start), so a slow run shifts no
later tick; a tick missed while the previous run was still going is skipped, never queued.
`cron` is read in `timezone` (default: the machine's), with croniter's handling of DST changes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..oxfile.config import ScheduleConfig


def next_run(sched: ScheduleConfig, after: float, anchor: float) -> float:
    """The first tick strictly after `after` (epoch seconds)."""
    if sched.every is not None:
        k = math.floor((after - anchor) / sched.every) + 1
        return anchor + k * sched.every
    from croniter import croniter
    tz = None
    if sched.timezone:
        from zoneinfo import ZoneInfo
        tz = ZoneInfo(sched.timezone)
    start = datetime.fromtimestamp(after, tz).astimezone(tz)
    return float(croniter(sched.cron, start).get_next(float))


class Scheduler:
    """One process's timetable: waits for each tick on the wall clock and calls `on_tick`; `next_run`
    and `last_run` are what status shows. `anchor` is where `every` counts from (the engine's start, or
    the start of the engine it took over from, so a hand-over shifts no tick)."""

    def __init__(self, sched: ScheduleConfig, on_tick: Callable[[], None], changed: Callable[[], None],
                 anchor: float | None = None, owed_since: float | None = None):
        self.sched, self.on_tick, self.changed = sched, on_tick, changed
        self.anchor = time.time() if anchor is None else anchor
        # A taken-over timetable: the old engine's loop was frozen during the hand-over, so a tick that
        # fell inside it (the first after `owed_since`) is run at once instead of lost; one, never a queue.
        self._owed_since = owed_since
        self.next_run: float | None = None
        self.last_run: dict[str, Any] | None = None
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="schedule")

    def stop(self) -> None:
        self._task.cancel()
        self.next_run = None

    async def _loop(self) -> None:
        while True:
            since, self._owed_since = self._owed_since, None
            self.next_run = next_run(self.sched, time.time() if since is None else since, self.anchor)
            self.changed()
            # Short sleeps on the wall clock: a clock step (NTP, suspend) never leaves a tick hours late.
            while (left := self.next_run - time.time()) > 0:
                await asyncio.sleep(min(left, 30.0))
            self.on_tick()
