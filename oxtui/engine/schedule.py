"""When a scheduled process next runs (pure): `every` ticks from an anchor, `cron` through croniter.

`every = "30s"` ticks at anchor + 30 s, + 60 s, ... (the engine's start), so a slow run shifts no
later tick; a tick missed while the previous run was still going is skipped, never queued.
`cron` is read in `timezone` (default: the machine's), with croniter's handling of DST changes.
"""

from __future__ import annotations

import math
from datetime import datetime

from ..config import ScheduleConfig


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
