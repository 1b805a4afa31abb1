"""Human-readable numbers shared by the CLI and the TUI (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

SPARK = "▁▂▃▄▅▆▇█"


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def human_duration(s: float | None, coarse: bool = False) -> str:
    """12s, 4m05s, 3h07m, 2d04h. coarse drops the seconds past the first minute, so a grid of idle
    workers does not have to redraw every row every second."""
    if s is None:
        return "-"
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m" if coarse else f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def sparkline(values: Iterable[float | None], width: int, top: float | None = None, relative: bool = False) -> str:
    """The last `width` values as block characters.

    Scaled from 0 to `top` (default: their maximum), or with relative=True from their minimum to
    their maximum, which shows a memory trend that a 0-based scale would flatten.
    """
    vals = list(values)[-width:]
    nums = [v for v in vals if v is not None]
    if not nums:
        return " " * width
    high = top if top else max(nums)
    low = min(nums) if relative else 0.0
    span = high - low
    if relative:
        # Flat memory stays low; only a growth of a quarter or more reaches the top.
        span = max(span, 0.25 * high)
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(SPARK[0])
        else:
            out.append(SPARK[min(len(SPARK) - 1, max(0, int((v - low) / span * (len(SPARK) - 1) + 0.5)))])
    return "".join(out).rjust(width)


EXIT_WORDS = {"oom": "oom", "max_memory": "memory", "health": "health", "reload": "reload", "stopped": "stopped"}


def last_exit(worker: dict, now: float | None = None, width: int = 13, verbose: bool = False) -> str:
    """The LAST EXIT cell, from the exit record that survives restarts: "oom 2m ago", "127 not found",
    "code 1 5s ago", "SIGKILL 2m"; "-" before any exit."""
    import time
    rec = worker.get("last_exit")
    if not rec:
        from .protocol import last_exit_text
        return "127 not found" if worker.get("exit_code") == 127 else (last_exit_text(worker) or "-")  # type: ignore
    cause = rec["cause"]
    if cause == "not_found":
        return "127 not found"
    if cause in ("crash", "killed"):
        word = rec["signal"] or f"code {rec['code']}"
    elif cause == "stopped" and rec.get("note") == "exited 0":
        word = "exit 0"           # a task that ended as it should
    else:
        word = EXIT_WORDS.get(cause, cause)
    ago = human_duration(max(0.0, (time.time() if now is None else now) - rec["at"]), coarse=True)
    if verbose:      # `oxtui status`: the cause by its name, then how
        how = rec["signal"] or f"code {rec['code']}"
        return f"{cause} ({how}) {ago} ago"
    text = f"{word} {ago} ago"
    return text if len(text) <= width else f"{word} {ago}"


def hint(verb: str, oxfile: object, *rest: str) -> str:
    """A command line to paste from any folder: it names the oxfile by its absolute path."""
    import shlex
    return " ".join(["oxtui", verb, *rest, "-c", shlex.quote(str(oxfile))])


def clock(ts: float | None) -> str:
    """12:30:00 today, "29 Nov 09:00" another day."""
    import time
    if ts is None:
        return "-"
    local, now = time.localtime(ts), time.localtime()
    same_day = local[:3] == now[:3]
    return time.strftime("%H:%M:%S" if same_day else "%d %b %H:%M", local)


def depends_text(p: Mapping[str, Any]) -> str:
    """"after migrate (completed_successfully), db (ready)", or "" without depends_on."""
    deps = p.get("depends_on") or {}
    return "after " + ", ".join(f"{n} ({c})" for n, c in deps.items()) if deps else ""


def schedule_text(p: Mapping[str, Any]) -> str:
    """"every 30s · next 12:30:00 · last completed 12:29:30", or "" when not scheduled."""
    s = p.get("schedule")
    if not s:
        return ""
    parts = [s["text"], f"next {clock(s.get('next_run'))}"]
    last = s.get("last_run")
    if last:
        parts.append(f"last {last['result']} {clock(last['at'])}"
                     + (f" ({last['reason']})" if last.get("reason") and last["result"] != "running" else ""))
    return " · ".join(parts)


def in_start_order(processes: list) -> list:
    """The snapshot's processes, dependencies before their dependents (otherwise the oxfile's order)."""
    from .oxfile.graph import levels
    lv = levels({p["name"]: list(p.get("depends_on") or {}) for p in processes})
    return sorted(processes, key=lambda p: lv.get(p["name"], 0))


FIRST_TO_HAND_OVER = "0.2.0rc2"     # the first release whose engine can be upgraded without an app restarted


def _version_key(v: str) -> tuple[float, ...] | None:
    """Versions are X.Y.Z with an optional rcN, which comes before X.Y.Z itself."""
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)(?:rc(\d+))?", v)
    return None if m is None else (*(float(x) for x in m.groups()[:3]), float(m.group(4) or "inf"))


def older(version: str | None) -> bool:
    """An engine's version is older than the oxtui installed here."""
    from . import __version__
    ours, theirs = _version_key(__version__), _version_key(version or "")
    return ours is not None and theirs is not None and theirs < ours


def hands_over(version: str | None) -> bool:
    """An engine of this version can move to another version without restarting an app (`upgrade`)."""
    theirs, first = _version_key(version or ""), _version_key(FIRST_TO_HAND_OVER)
    return theirs is not None and first is not None and theirs >= first


# A line that says what went wrong: "OSError: [Errno 98] Address already in use" (Python's last line),
# "Error: listen EADDRINUSE: address already in use 127.0.0.1:3101" (Node's, which ends its report
# with its version instead), "npm ERR! ...", "fatal: ...", "panic: ...".
_EXPLAINS = re.compile(r"^\s*(?:[\w.]*(?:Error|Exception)\b[^:]*:|npm ERR!|(?:fatal|FATAL|panic|ERROR|error)\b)")
_NOISE = re.compile(r"^\s*(?:at\s|Node\.js v\d|\^+$|\}$|\w+: .*,$)")   # frames, banners, an error's fields
BINDS_THE_PORT = re.compile(r"EADDRINUSE|Address already in use|Errno 98\b")


def explaining_line(tail: list[str]) -> str:
    """Of a process's last lines, the one that explains its exit: the last error line, else the last
    line that is not a stack frame or a runtime's version banner, else ""."""
    lines = [line.strip() for line in tail if line.strip()]
    for pattern in (_EXPLAINS, BINDS_THE_PORT):
        for line in reversed(lines):
            if pattern.search(line) and not _NOISE.match(line):
                return line
    quiet = [line for line in lines if not _NOISE.match(line)]
    return quiet[-1] if quiet else (lines[-1] if lines else "")


def fd3_hint(listen: str | None) -> str:
    """What to tell a process given `listen` that binds the port itself (EADDRINUSE, or an app such
    as Express 5 that swallows the error and exits 0)."""
    return (f"the app binds {listen} itself, which oxtui holds for it: serve the socket oxtui passes as "
            "fd 3 instead (Node: server.listen({fd: 3}); uvicorn --fd 3; gunicorn takes it by itself)")


SHORT_CELLS = 9        # the grid's STATE column (tui/columns.py), where `short` texts go


def count_text(p: Mapping[str, Any], up_word: str = "running", short: bool = False) -> str:
    """How many of a process run, in a word a person reads right: "2/2 running" for a server; for a task
    (which ends by design) "done", "failed", "1/1 running", "next 12:30:00" (a schedule not run yet),
    "waiting" (for its depends_on), never "0/1" as if it were an outage. `short` (the grid's 9 cells,
    whose worker row says when): "scheduled" for "next 12:30:00", and "done" for "done, next ..."."""
    from .protocol import WorkerState, slot_workers
    workers = slot_workers(p)    # type: ignore[arg-type]
    n = p["instances"]
    states = [w["state"] for w in workers]
    live = sum(1 for s in states if s in (WorkerState.STARTING, WorkerState.RUNNING))
    if not p.get("task"):
        count = f"{sum(1 for s in states if s == WorkerState.RUNNING)}/{n}"
        # The grid's 9 cells: "16/16 up", but "1000/1000" whole rather than "1000/100…"
        return count if short and len(count) + 1 + len(up_word) > SHORT_CELLS else f"{count} {up_word}"
    sched = p.get("schedule")
    later = f"next {clock(sched['next_run'])}" if sched and sched.get("next_run") else ""
    if live:
        return f"{live}/{n} running"
    if any(s in (WorkerState.FAILED, WorkerState.ERRORED, WorkerState.BACKOFF) for s in states):
        return "failed" + (f", {later}" if later and not short else "")
    if n and states.count(WorkerState.COMPLETED) == n:
        return "done" + (f", {later}" if later and not short else "")
    if later and short:
        return "scheduled"
    if later:
        return later
    if any(s == WorkerState.WAITING for s in states):
        return "waiting"
    return f"{states.count(WorkerState.COMPLETED)}/{n} done"


def live_text(result: dict) -> str:
    """A deploy's or rollback's outcome: "20261207T101500Z-1a2b3c4 is live (was ...)"."""
    return f"{result['release']} is live" + (f" (was {result['before']})" if result.get("before") else "")
