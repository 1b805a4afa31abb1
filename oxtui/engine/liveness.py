"""When a new process counts as ready, and whether a running one is still alive ([ready], [health]).

    starting ──> ready.log matched (or 1 s alive without [ready]) ──> running ──> health probes
       │                                                                 │ `failures` in a row
       └─ not ready within ready.timeout ──> restarted (cause "health") <─┘

Each runs as a task of its own per worker: one slow probe never delays another worker or the
worker's own supervision. They act on the worker only through the few methods named in `Live`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from ..protocol import ExitCause, Health, WorkerState
from . import checks

if TYPE_CHECKING:
    from ..oxfile.config import ProcessConfig
    from .spawn import Child

# With no [ready] table an instance counts as ready after this long alive.
DEFAULT_READY_AFTER = 1.0


class Live(Protocol):
    cfg: ProcessConfig
    state: WorkerState
    ready: asyncio.Event
    health: Health | None
    health_passed: bool

    def current(self) -> Child | None: ...
    def mark_ready(self) -> None: ...
    def note(self, text: str) -> None: ...
    def restart(self, reason: str, cause: ExitCause = "health") -> None: ...
    def changed(self) -> None: ...
    def probe_env(self) -> dict[str, str]: ...


async def become_ready(worker: Live, child: Child) -> None:
    """Wait for readiness of this process (ready.log is matched by the output's callback)."""
    ready = worker.cfg.ready
    alive = time.monotonic() - child.started      # more than 0 for a process taken over while starting
    if ready is None or ready.log is None:
        await asyncio.sleep(max(0.0, DEFAULT_READY_AFTER - alive))
        if worker.current() is child:
            worker.mark_ready()
        return
    try:
        await asyncio.wait_for(worker.ready.wait(), max(0.0, ready.timeout - alive))
    except TimeoutError:
        if worker.current() is child and not worker.ready.is_set():
            worker.note(f"pid {child.pid} not ready within {ready.timeout:g}s")
            worker.restart(f"not ready within {ready.timeout:g}s (no output matched ready.log)")


async def health_loop(worker: Live, child: Child) -> None:
    health = worker.cfg.health
    assert health is not None
    failures = 0
    worker.health = Health(ok=True, failures=0, threshold=health.failures, reason=None)
    env = worker.probe_env()
    while worker.current() is child and worker.state == WorkerState.RUNNING:
        await asyncio.sleep(health.interval)
        if worker.current() is not child or worker.state != WorkerState.RUNNING:
            return
        reason = await checks.probe(health, str(worker.cfg.cwd), env)
        if reason is None:
            failures = 0
            if not worker.health_passed:
                worker.health_passed = True
                worker.note("health ok")
                worker.changed()
            elif worker.health is not None and not worker.health["ok"]:
                worker.note("health ok again")
            worker.health = Health(ok=True, failures=0, threshold=health.failures, reason=None)
            continue
        failures += 1
        worker.note(f"health FAIL {failures}/{health.failures}: {reason}")
        worker.health = Health(ok=False, failures=failures, threshold=health.failures, reason=reason)
        worker.changed()
        if failures >= health.failures:
            worker.restart(f"health check failed {failures} times in a row ({reason})")
            return
