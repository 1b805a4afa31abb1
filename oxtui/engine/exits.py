"""Why an instance ended: the cause of an exit record, its note and event line (`account`), and the kernel's
OOM counters (pure but for /proc).

    crash      it exited on its own with a non-zero code
    not_found  exit 127: the shell (or the spawner) did not find the program
    killed     a signal ended it that oxtui did not send to stop it (`kill -9`, `oxtui kill`, a crash by SIGSEGV)
    oom        SIGKILLed while the kernel's OOM-kill counter moved: certain when the instance's cgroup
               counts kills (cgroup v2's memory.events, v1's memory.oom_control), "probably" when only the
               machine-wide /proc/vmstat can tell
    max_memory oxtui replaced it: its RSS passed max_memory
    health     oxtui replaced it: health checks failed, or it was not ready in time
    reload     a rolling reload drained it (or dropped a replacement that failed)
    stopped    stopped on request (stop, restart, scale down, shutdown), or it exited 0 on its own (a task
               that ended as it should; a server that ended cleanly is started again, and its note says so)
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..protocol import ExitCause, WorkerState


def _cgroup_oom_file(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> str | None:
    """The file that counts OOM kills in the cgroup the instances start in (the engine's own):
    cgroup v2's memory.events, or where memory is still a v1 controller (a hybrid host), its
    memory.oom_control. Both count a kill by any OOM killer, the machine's included."""
    try:
        with open(proc_cgroup) as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    for _, controllers, path in lines:
        if controllers == "":
            events = os.path.join(root + path, "memory.events")
            if os.path.exists(events):
                return events
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):
            control = os.path.join(root, "memory" + path, "memory.oom_control")
            if os.path.exists(control):
                return control
    return None


_CGROUP_OOM = _cgroup_oom_file()


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
    return _counter(_CGROUP_OOM, "oom_kill"), _counter("/proc/vmstat", "oom_kill")


def classify(code: int | None, signal: str | None, why: str | None, stop_cause: ExitCause | None,
             oom_before: tuple[int | None, int | None], oom_after: tuple[int | None, int | None],
             task_done: bool = False) -> tuple[ExitCause, str | None]:
    """(cause, a note or None). `why`: None for an exit on its own, "stop" for a stop oxtui asked for,
    else the restart reason oxtui gave; `stop_cause` says which kind of stop or restart it was."""
    if why is not None:
        return (stop_cause or "stopped"), None
    if code == 127:
        return "not_found", None
    if signal == "SIGKILL" or code == 137:      # 137: a shell whose child was SIGKILLed (`npm start`, `sh -c`)
        cg_before, cg_after = oom_before[0], oom_after[0]
        if cg_before is not None and cg_after is not None:
            # the cgroup's own count is certain, and no other cgroup's OOM kill can move it
            if cg_after > cg_before:
                return "oom", "killed by the kernel's OOM killer (its cgroup counted the kill)"
        else:
            vm = [a - b for a, b in zip(oom_after[1:], oom_before[1:]) if a is not None and b is not None]
            if vm and vm[0] > 0:
                return "oom", "probably killed by the kernel's OOM killer (/proc/vmstat oom_kill moved meanwhile)"
    if signal:
        return "killed", None
    if code == 0:
        return "stopped", "exited 0" if task_done else "exited 0 on its own; restart = \"always\" starts it again"
    return "crash", None


class Account(NamedTuple):
    """What an ended process leaves: its exit record's cause and note, the event line, the worker's reason."""

    cause: ExitCause
    note: str | None
    event: str
    reason: str | None      # the worker's new reason; None keeps the one it has (a stop asked for)


def account(pid: int, uptime: float, code: int | None, sig: str | None, why: str | None, stop_cause: ExitCause | None,
            oom_before: tuple[int | None, int | None], task_done: bool, tail: list[str], program: str) -> Account:
    """`why` as for classify(); `tail`: the last lines it wrote (a missing program says so there)."""
    how = f"signal {sig}" if sig else f"code {code}"
    cause, note = classify(code, sig, why, stop_cause, oom_before, oom_counters(), task_done)
    unrunnable = cannot_run(code, tail, program) if why is None else None
    if why is None:
        note = unrunnable or note
        reason = unrunnable or f"exited with {how}"
        text = f"pid {pid} exited with {how} after {uptime:.1f}s" + (f" ({reason})" if code in (126, 127) else "")
        return Account(cause, note, text, reason)
    if why == "stop":
        return Account(cause, note, f"pid {pid} stopped ({how})", None)
    return Account(cause, why, f"pid {pid} restarted: {why}", why)


def cannot_run(code: int | None, tail: list[str], program: str) -> str | None:
    """Why the program never ran, from the shell's codes: not found (127), not executable (126)."""
    if code == 127:
        return f"command not found: {program}"
    if code == 126 and any("ermission denied" in line for line in tail[-3:]):
        return f"cannot run {program}: permission denied (make it executable: chmod +x {program})"
    return None


def restarts_after(mode: str, code: int | None, sig: str | None) -> bool:
    """Whether an exit on its own is followed by a start, by the process's `restart` mode."""
    if mode == "always":
        return True
    return mode == "on-failure" and (code != 0 or sig is not None)


def state_after_exit(mode: str, role: str | None, code: int | None, sig: str | None, why: str | None) -> WorkerState:
    """Where a worker whose process is gone stands while its last output drains: never `running`.
    `why` is not None for a stop or a restart oxtui asked for; a `role` is a reload's surge or canary."""
    if why is not None:
        return WorkerState.STOPPING
    if role is not None:
        return WorkerState.EXITED             # a failed release: never retried
    if not restarts_after(mode, code, sig):
        return WorkerState.COMPLETED if code == 0 and sig is None else WorkerState.FAILED
    return WorkerState.BACKOFF                # to be restarted (or parked as errored)
