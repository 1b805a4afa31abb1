"""What a hand-over carries besides file descriptors: the history that status, the TUI and `oxtui
events` show, so moving an engine (q then b, `oxtui upgrade`) loses nothing a person looks at.

    engine   the event history and its sequence, each process's ring of recent log lines
    process  its exit records and counters (exits by cause, reload results), how the last reload
             ended, its schedule's anchor (so `every` ticks on as before) and last run
    worker   its last exit, readiness and health notes, CPU time, release, and the crash-loop
             window (an engine moved in the middle of a crash loop does not forget it)

The description carries its FORMAT. 1 is what oxtui 0.1.0 wrote (descriptors and worker states,
no history); a newer engine reads every format up to its own, and one that meets a newer format
refuses before anything changes (handover.py), so the old engine carries on.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from ..protocol import LogBatch
from .reload import Carried

if TYPE_CHECKING:
    from .api import EngineApi
    from .group import ProcessGroup
    from .worker import Worker

FORMAT = 2


def engine_history(engine: EngineApi) -> dict[str, Any]:
    return {"events": {"seq": engine.events.seq, "history": list(engine.events.history)},
            "logs": {"seq": engine.logs.seq,
                     "rings": {name: [b.to_wire() for b in log.ring] for name, log in engine.logs.logs.items()}}}


def restore_engine(engine: EngineApi, data: dict[str, Any]) -> None:
    events = data["events"]
    engine.events.history.extend(events["history"])
    engine.events.seq = max(engine.events.seq, events["seq"])
    logs = data["logs"]
    for name, ring in logs["rings"].items():
        log = engine.logs.open(name)
        for raw in ring:
            log.keep(LogBatch.from_wire(raw))
    engine.logs.seq = max(engine.logs.seq, logs["seq"])


def group_history(g: ProcessGroup) -> dict[str, Any]:
    return {"exits": list(g.exits), "exit_causes": dict(g.exit_causes), "reload_results": dict(g.reload_results),
            "last_reload_seconds": g.last_reload_seconds,
            "reload": g.reload.snapshot() if g.reload is not None and not g.reload.active else None,
            "schedule": {"anchor": g.schedule.anchor, "last_run": g.schedule.last_run} if g.schedule else None}


def restore_group(g: ProcessGroup, data: dict[str, Any]) -> None:
    g.exits.extend(data["exits"])
    g.exit_causes = Counter(data["exit_causes"])
    g.reload_results = Counter(data["reload_results"])
    g.last_reload_seconds = data["last_reload_seconds"]
    if data["reload"] is not None:
        g.reload = Carried(data["reload"])
    if data["schedule"] is not None:
        g.carried_schedule = data["schedule"]


def worker_history(w: Worker) -> dict[str, Any]:
    return {"last_exit": w.last_exit, "checks": list(w.checks), "cpu_seconds": w.cpu_seconds, "release": w.release,
            "health_passed": w.health_passed,
            "policy": {"streak": w.policy.streak, "crashes": list(w.policy.crashes)}}


def restore_worker(w: Worker, data: dict[str, Any]) -> None:
    w.last_exit = data["last_exit"]
    w.checks = deque(data["checks"], maxlen=w.checks.maxlen)
    w.cpu_seconds = data["cpu_seconds"]
    w.release = data["release"]
    w.health_passed = data["health_passed"]
    w.policy.streak = data["policy"]["streak"]
    w.policy.crashes.extend(data["policy"]["crashes"])
