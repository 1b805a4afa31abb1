"""Signalling an instance's process group, and ending what an instance leaves in it.

Every instance starts its own session (setsid in the spawner's child), so its pgid is its pid and
a stop reaches whatever it started too. The catch is the number itself: after the instance is gone
it is free, and pids come round within seconds on a busy machine (an app that starts a thread per
request takes one per request), so a signal sent to a number must never land on whatever took it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time


def kill_group(pgid: int, sig: int, parent: int | None = None) -> None:
    """Signal an instance's process group (its pgid is its pid). Just after the spawn it may not have
    called setsid yet, so there is no such group: then the process itself gets the signal (the
    spawner lets stop signals through from the fork on, so it is not lost), but only while it is
    still a process and a child of `parent`, the helper that forked it. No group may also mean the
    instance is gone and its number taken: pids come round within seconds where apps start a thread
    per request, and kill(2) of another process's thread id ends that whole process."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        signal_process(pgid, sig, parent)
    except PermissionError:
        pass


def signal_process(pid: int, sig: int, parent: int | None) -> bool:
    """Signal process `pid` alone, only while it is still a process forked by `parent` (`k`, `oxtui
    kill`, and kill_group before setsid): the engine hears of an exit a moment after it, and by then
    the number may be another process's (or a thread's). False when it is not, is gone, or `parent`
    is not known."""
    if parent is None or _process_parent(pid) != parent:
        return False
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def still_child_of(pid: int, parent: int | None) -> bool:
    """Process `pid` still exists (a zombie counts: not yet reaped) as `parent`'s child."""
    return parent is not None and _process_parent(pid) == parent


def _process_parent(pid: int) -> int | None:
    """The parent of process `pid`, or None when `pid` is no process (gone, or a thread's id)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        if int(fields[b"Tgid"]) != pid:
            return None
        return int(fields[b"PPid"])
    except (OSError, KeyError, ValueError):
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


async def end_group(pgid: int, grace: float) -> None:
    """After an instance's main process is gone, end whatever it left in its process group: at once,
    or after `grace` seconds (a stop gives the rest of the group its stop_timeout)."""
    deadline = time.monotonic() + grace
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            kill_group(pgid, signal.SIGKILL)
            break
        await asyncio.sleep(0.05)
