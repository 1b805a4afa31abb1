"""CPU and memory of each instance's whole process tree, and of the engine itself.

Sampled on a timer of its own in a worker thread: /proc reads never run on the event loop, and
supervision never waits for them. One read of /proc/PID/stat per process per tick gives the
parent (to build every tree), the CPU ticks and the RSS at once; psutil's per-process calls would
read two files per process and rescan /proc for every tree, which costs a percent of a core at 64
workers. psutil still measures the engine itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import NamedTuple

import psutil

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Member(NamedTuple):
    """One process of an instance's tree, when there is more than one (a gunicorn master and its
    workers, npm and its node): what the details screen lists."""
    pid: int
    ppid: int
    command: str          # its command line, shortened
    cpu_percent: float
    rss_bytes: int


@dataclass(frozen=True)
class Usage:
    cpu_percent: float   # percent of one core, summed over the tree (can pass 100 on several cores)
    rss_bytes: int
    cpu_seconds: float = 0.0   # an instance: CPU time since the previous sample; the engine: its total
    tree: tuple[Member, ...] = ()     # an instance whose tree has more than one process: each of them


class ProcStat(NamedTuple):
    ppid: int
    start: int           # start time in ticks: tells a reused PID from the process we measured before
    cpu_ticks: int
    rss_bytes: int


def read_all() -> dict[int, ProcStat]:
    # os.open/os.read, not open(): a buffered file object costs an fstat, an ioctl and two
    # allocations per process. With 1000 workers this loop is most of the sampler's cost, and this
    # form halves it (8 ms instead of 15 ms a sample, measured with 1075 processes).
    procs: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            stat = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split(None, 22)
        if len(fields) < 22:
            continue
        # fields[0] is field 3 (state) of proc(5): ppid=4, utime=14, stime=15, starttime=22, rss=24
        procs[int(entry)] = ProcStat(int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]),
                                     int(fields[21]) * PAGE)
    return procs


class Sampler:
    """Remembers each process's CPU ticks between ticks to turn them into a percentage."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, int], int] = {}    # (pid, start) -> cpu ticks at the previous sample
        self._commands: dict[tuple[int, int], str] = {}    # (pid, start) -> command line, read once
        self._last_time = time.monotonic()
        self.engine = psutil.Process()
        self.engine.cpu_percent(None)

    def sample(self, roots: list[int]) -> tuple[dict[int, Usage], Usage]:
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-6)
        self._last_time = now
        out: dict[int, Usage] = {}
        seen: dict[tuple[int, int], int] = {}
        if roots:
            procs = read_all()
            kids: dict[int, list[int]] = {}
            for pid, st in procs.items():
                kids.setdefault(st.ppid, []).append(pid)
            last = self._last
            for root in roots:
                cpu_ticks, rss = 0.0, 0
                members: list[tuple[int, ProcStat, float]] = []
                for pid, st in _tree(root, procs, kids):
                    key = (pid, st.start)
                    before = last.get(key)
                    ticks = 0.0 if before is None else st.cpu_ticks - before
                    cpu_ticks += ticks
                    seen[key] = st.cpu_ticks
                    rss += st.rss_bytes
                    members.append((pid, st, ticks))
                tree = tuple(Member(pid, st.ppid, self._command(pid, st.start), round(ticks / TICKS / elapsed * 100, 1),
                                    st.rss_bytes) for pid, st, ticks in members) if len(members) > 1 else ()
                out[root] = Usage(round(cpu_ticks / TICKS / elapsed * 100, 1), rss, cpu_ticks / TICKS, tree)
        self._last = seen
        self._commands = {k: v for k, v in self._commands.items() if k in seen}
        times = self.engine.cpu_times()
        engine = Usage(round(self.engine.cpu_percent(None), 1), self.engine.memory_info().rss,
                       round(times.user + times.system, 2))
        return out, engine

    def _command(self, pid: int, start: int) -> str:
        """The command line of a process in a tree of several, read once per process (not per tick)."""
        key = (pid, start)
        if key not in self._commands:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    raw = f.read(512)
            except OSError:
                raw = b""
            self._commands[key] = raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120] or "?"
        return self._commands[key]


def _tree(root: int, procs: dict[int, ProcStat], kids: dict[int, list[int]]):
    """(pid, stat) of `root` and its descendants."""
    if root not in kids:                 # most workers have no children: no walk
        if root in procs:
            yield root, procs[root]
        return
    stack, visited = [root], set()
    while stack:
        pid = stack.pop()
        st = procs.get(pid)
        if st is None or pid in visited:
            continue
        visited.add(pid)
        stack.extend(kids.get(pid, ()))
        yield pid, st
