"""The engine's metrics loop: CPU and memory of every live instance, on a timer of its own.

/proc is read on a worker thread (metrics.py), never on the loop. A sample every second while
someone looks (a TUI, a `status` in the last 5 s); with nobody looking, every 5 s where something
needs the figures on its own (a max_memory to enforce, a Prometheus exporter to feed), else once a
minute: a `status` then samples first (`fresh()`), so what it prints is never older than a second.
Past 500 workers every N/500 s. After each sample: max_memory is enforced, freed heap pages go back
(heap.py), and the engine is told (its observers and viewers get a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..protocol import WorkerState
from .heap import Trimmer
from .metrics import Sampler, Usage

if TYPE_CHECKING:
    from .worker import Worker

METRICS_INTERVAL = 1.0
# With nobody looking (no UI, no recent status), sample less often: an idle engine with 64 workers
# then costs a quarter of the CPU. max_memory is still enforced, within this many seconds.
METRICS_IDLE_INTERVAL = 5.0
# Nobody looking and nothing needing the figures: the CPU seconds still add up (Prometheus-style
# counters, `status` totals), and an unwatched engine with 64 workers wakes 12 times less.
METRICS_UNNEEDED_INTERVAL = 60.0
FRESH_WAIT = 2.0      # a status waits at most this long for a sample (a stuck /proc never blocks it)
# Past this many workers a sample comes less often than every second: N / this seconds (2 s at
# 1000). A sample costs about 10 µs of /proc reading per process, and each one makes a snapshot that
# a viewer re-reads; with 1000 workers and a TUI, this halves engine + TUI CPU. htop's default is 1.5 s.
WORKERS_PER_SECOND = 500
LOOKED_AT_RECENTLY = 5.0


class Sampling:
    def __init__(self, live: Callable[[], list[Worker]], sampled: Callable[[], None], log: Callable[[str], None],
                 needed: Callable[[], bool] = lambda: True):
        """`live()`: the workers with a live process; `sampled()`: called after each sample; `needed()`:
        whether something uses the figures while nobody looks (max_memory, an exporter)."""
        self.live, self.sampled, self.log, self.needed = live, sampled, log, needed
        self.sampled_at = float("-inf")     # monotonic
        self._running = False
        self._fresh = asyncio.Event()
        self.usage = Usage(0.0, 0)          # the engine's own
        self.viewers = 0                    # UIs showing live metrics (embedded TUI, attached TUIs)
        self._looked_at = time.monotonic() - LOOKED_AT_RECENTLY
        self._wake = asyncio.Event()

    def watched(self) -> bool:
        return self.viewers > 0 or time.monotonic() - self._looked_at < LOOKED_AT_RECENTLY

    def looked_at(self, viewer: int = 0) -> None:
        """Someone wants fresh metrics (a status request, or a UI arriving or leaving: +1/-1)."""
        was = self.watched()
        self.viewers += viewer
        self._looked_at = time.monotonic()
        if not was:
            self._wake.set()     # out of the idle interval now, not in up to 5 s

    async def fresh(self) -> None:
        """Return once the figures are at most a second old: sample now if they are older."""
        if not self._running or time.monotonic() - self.sampled_at <= METRICS_INTERVAL:
            return
        self._fresh.clear()
        self._wake.set()
        try:
            await asyncio.wait_for(self._fresh.wait(), FRESH_WAIT)
        except TimeoutError:
            pass

    async def run(self) -> None:
        sampler, trimmer = Sampler(), Trimmer()
        self._running = True
        try:
            while True:
                workers = [w for w in self.live() if w.pid is not None]
                pids = [w.pid for w in workers if w.pid is not None]
                try:
                    per_pid, self.usage = await asyncio.to_thread(_sample_and_trim, sampler, trimmer, pids)
                except Exception as e:  # a /proc oddity must never end the metrics loop
                    self.log(f"metrics sampling failed: {e}")
                    per_pid = {}
                for w in workers:
                    u = per_pid.get(w.pid) if w.pid is not None else None
                    if u is None:
                        continue
                    w.cpu_percent, w.rss_bytes, w.tree = u.cpu_percent, u.rss_bytes, u.tree
                    w.cpu_seconds += u.cpu_seconds
                    limit = w.cfg.max_memory
                    if limit is not None and u.rss_bytes > limit and w.state == WorkerState.RUNNING:
                        w.restart(f"memory {u.rss_bytes / 2**20:.0f} MiB over max_memory {limit / 2**20:.0f} MiB",
                                  "max_memory")
                self.sampled_at = time.monotonic()
                self.sampled()
                self._fresh.set()
                self._wake.clear()
                try:
                    interval = METRICS_INTERVAL if self.watched() else \
                        METRICS_IDLE_INTERVAL if self.needed() else METRICS_UNNEEDED_INTERVAL
                    await asyncio.wait_for(self._wake.wait(), max(interval, len(pids) / WORKERS_PER_SECOND))
                except TimeoutError:
                    pass
        finally:
            self._running = False     # cancelled (the engine stops): a status no longer waits for a sample


def _sample_and_trim(sampler: Sampler, trimmer: Trimmer, pids: list[int]) -> tuple[dict[int, Usage], Usage]:
    """On the sampler's thread: read /proc, then give freed heap pages back when it is time (heap.py)."""
    sample = sampler.sample(pids)
    trimmer.maybe_trim()
    return sample
