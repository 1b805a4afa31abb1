"""CPU and memory of each instance's whole process tree, and of the engine itself.

Sampled on a timer of its own in a worker thread: /proc reads never run on the event loop, and
supervision never waits for them. One scan of /proc per tick builds the parent map for every tree
(psutil's children() would rescan /proc once per instance).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Usage:
    cpu_percent: float   # percent of one core, summed over the tree (can pass 100 on several cores)
    rss_bytes: int


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


class Sampler:
    """Keeps psutil.Process objects between ticks so cpu_percent measures the interval since the last."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self.engine = psutil.Process()
        self.engine.cpu_percent(None)

    def sample(self, roots: list[int]) -> tuple[dict[int, Usage], Usage]:
        kids = _children_map() if roots else {}
        seen: set[int] = set()
        out: dict[int, Usage] = {}
        for root in roots:
            cpu, rss = 0.0, 0
            stack = [root]
            while stack:
                pid = stack.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                stack.extend(kids.get(pid, ()))
                proc = self._procs.get(pid)
                try:
                    if proc is None:
                        proc = self._procs[pid] = psutil.Process(pid)
                        proc.cpu_percent(None)   # first call only starts the interval
                    else:
                        cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    self._procs.pop(pid, None)
            out[root] = Usage(round(cpu, 1), rss)
        for pid in list(self._procs):
            if pid not in seen:
                del self._procs[pid]
        engine = Usage(round(self.engine.cpu_percent(None), 1), self.engine.memory_info().rss)
        return out, engine
