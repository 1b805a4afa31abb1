"""Why an instance ended: the cause of an exit record, and the kernel's OOM counters (pure but for /proc).

    crash      it exited on its own with a non-zero code (or 0 where it should have kept running)
    not_found  exit 127: the shell (or the spawner) did not find the program
    killed     a signal ended it that oxtui did not send to stop it (`kill -9`, `oxtui kill`, a crash by SIGSEGV)
    oom        SIGKILLed while the kernel's OOM-kill counter moved: certain when the instance's cgroup
               counted it (memory.events), "probably" when only the machine-wide /proc/vmstat did
    max_memory oxtui replaced it: its RSS passed max_memory
    health     oxtui replaced it: health checks failed, or it was not ready in time
    reload     a rolling reload drained it (or dropped a replacement that failed)
    stopped    stopped on request (stop, restart, scale down, shutdown), or a task that exited 0
"""

from __future__ import annotations

import os

CAUSES = ("crash", "not_found", "killed", "oom", "max_memory", "health", "reload", "stopped")
# Exits that mean trouble: the notifications' "crash" event covers all of these.
UNEXPECTED = frozenset({"crash", "not_found", "killed", "oom", "max_memory", "health"})
TAIL_LINES = 20


def _cgroup_events_path() -> str | None:
    """memory.events of the cgroup the instances start in (the engine's own, cgroup v2)."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    path = "/sys/fs/cgroup" + line[3:].strip()
                    events = os.path.join(path, "memory.events")
                    return events if os.path.exists(events) else None
    except OSError:
        pass
    return None


_CGROUP_EVENTS = _cgroup_events_path()


def _counter(path: str | None, key: str) -> int | None:
    # Read at every start and exit of every instance: one os.read and a bytes search, not a text file
    # iterated line by line (that was 0.5 ms a call for /proc/vmstat, most of starting 1000 instances).
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = b"\n" + os.read(fd, 65536)
        finally:
            os.close(fd)
        at = data.find(b"\n" + key.encode() + b" ")
        if at < 0:
            return None
        return int(data[at + len(key) + 2:data.find(b"\n", at + 1)])
    except (OSError, ValueError):
        return None


def oom_counters() -> tuple[int | None, int | None]:
    """(the cgroup's oom_kill count, the machine's oom_kill count from /proc/vmstat)."""
    return _counter(_CGROUP_EVENTS, "oom_kill"), _counter("/proc/vmstat", "oom_kill")


def classify(code: int | None, signal: str | None, why: str | None, stop_cause: str | None,
             oom_before: tuple[int | None, int | None], oom_after: tuple[int | None, int | None],
             task_done: bool = False) -> tuple[str, str | None]:
    """(cause, a note or None). `why`: None for an exit on its own, "stop" for a stop oxtui asked for,
    else the restart reason oxtui gave; `stop_cause` says which kind of stop or restart it was."""
    if why is not None:
        return (stop_cause or "stopped"), None
    if code == 127:
        return "not_found", None
    if signal == "SIGKILL":
        cg = [a - b for a, b in zip(oom_after[:1], oom_before[:1]) if a is not None and b is not None]
        if cg and cg[0] > 0:
            return "oom", "killed by the kernel's OOM killer (the cgroup's memory.events counted it)"
        vm = [a - b for a, b in zip(oom_after[1:], oom_before[1:]) if a is not None and b is not None]
        if vm and vm[0] > 0:
            return "oom", "probably killed by the kernel's OOM killer (/proc/vmstat oom_kill moved meanwhile)"
    if signal:
        return "killed", None
    if code == 0 and task_done:
        return "stopped", "exited 0"
    return "crash", None
