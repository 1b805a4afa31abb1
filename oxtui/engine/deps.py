"""Whether a process's `depends_on` conditions hold, from its dependencies' workers.

    started                 every instance has been started (running, starting, or a task that ended)
    ready                   every instance is ready (a task that completed counts)
    healthy                 every instance is ready and its [health] check has passed at least once
    completed               every instance of the task has ended, whatever its exit
    completed_successfully  every instance of the task exited 0

A condition either holds, waits (it may still hold: the dependency is starting, stopped, scaled
to 0), or is blocked: it cannot hold until a person acts (the task failed, the dependency is in
a crash loop). Only the start of an instance is gated: a dependency going down later never stops
its dependents, as with docker compose and process-compose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..protocol import WorkerState

if TYPE_CHECKING:
    from .worker import Worker


class Dependency(Protocol):
    """What a condition reads of the process it depends on (a ProcessGroup)."""

    name: str
    target: int
    workers: dict[int, Worker]

S = WorkerState
STARTED = frozenset({S.STARTING, S.RUNNING, S.STOPPING, S.BACKOFF, S.COMPLETED, S.FAILED})
ENDED = frozenset({S.COMPLETED, S.FAILED})


@dataclass(frozen=True)
class Verdict:
    holds: bool
    waiting: tuple[str, ...] = ()      # "migrate (completed_successfully)"
    blocked: str | None = None         # why it never will, until someone acts

    @property
    def reason(self) -> str | None:
        if self.blocked:
            return self.blocked
        return f"waiting for {', '.join(self.waiting)}" if self.waiting else None


def _one(dep: Dependency, cond: str) -> tuple[bool, str | None, str | None]:
    """(holds, what it waits on, blocked reason)."""
    workers = [dep.workers[s] for s in sorted(dep.workers) if s < dep.target]
    if not workers:
        return False, f"{dep.name} ({cond}: it has 0 instances)", None
    states = [w.state for w in workers]
    errored = next((w for w in workers if w.state == S.ERRORED), None)
    if errored is not None:
        return False, None, f"{errored.label} is errored ({errored.reason}); fix it, then `oxtui restart {dep.name}`"
    if cond == "started":
        holds = all(s in STARTED for s in states)
    elif cond == "ready":
        holds = all(s == S.COMPLETED or (s == S.RUNNING and w.ready.is_set()) for s, w in zip(states, workers))
    elif cond == "healthy":
        holds = all(s == S.RUNNING and w.health_passed for s, w in zip(states, workers))
    elif cond == "completed":
        holds = all(s in ENDED for s in states)
    else:   # completed_successfully
        failed = next((w for w in workers if w.state == S.FAILED), None)
        if failed is not None:
            return False, None, (f"{failed.label} failed ({failed.exit_text}); fix it, then "
                                 f"`oxtui start {dep.name}`")
        holds = all(s == S.COMPLETED for s in states)
    if holds:
        return True, None, None
    shown = ", ".join(sorted({str(s) for s in states}))
    return False, f"{dep.name} ({cond}; now {shown})", None


def verdict(depends_on: tuple[tuple[str, str], ...], groups: Mapping[str, Dependency]) -> Verdict:
    waiting: list[str] = []
    for name, cond in depends_on:
        dep = groups.get(name)
        if dep is None:         # removed by an apply since: nothing left to wait for
            continue
        holds, on, blocked = _one(dep, cond)
        if blocked:
            return Verdict(False, blocked=f"blocked: {blocked}")
        if not holds:
            waiting.append(on or name)
    return Verdict(not waiting, tuple(waiting))
