"""The contract between the engine and every view: one place for the snapshot's shape, worker states,
log batches and their wire form, and command replies.

The engine produces these; the CLI, the TUI (embedded or attached), the printer and `oxtui up` read
them. Nothing here imports the engine or psutil, so a view that only talks to a running engine
(`oxtui status`, `oxtui logs`, an attached TUI) never loads either.

The snapshot types are TypedDicts: they are the JSON objects `oxtui status --json` prints, so the
public shape and the typed one cannot drift apart.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Literal, NotRequired, Protocol, TypedDict


class WorkerState(StrEnum):
    """One instance's state (see engine/worker.py for the machine). A StrEnum: it is its own JSON."""

    WAITING = "waiting"       # not started: its depends_on conditions do not hold yet (or its schedule)
    STARTING = "starting"     # spawned, not ready yet
    RUNNING = "running"       # ready
    STOPPING = "stopping"
    STOPPED = "stopped"
    BACKOFF = "backoff"       # exited, waiting to restart
    ERRORED = "errored"       # crash loop: gave up until a person acts
    EXITED = "exited"         # a reload's surge instance or canary that ended (never restarted)
    COMPLETED = "completed"   # a task (restart = "never"/"on-failure") that exited 0
    FAILED = "failed"         # a task that exited non-zero or was killed


LIVE_STATES = frozenset({WorkerState.STARTING, WorkerState.RUNNING, WorkerState.STOPPING})

# Why an instance ended (an exit record's `cause`; engine/exits.py decides which).
CAUSES = ("crash", "not_found", "killed", "oom", "max_memory", "health", "reload", "stopped")
# Exits that mean trouble: the notifications' "crash" event covers all of these.
UNEXPECTED = frozenset({"crash", "not_found", "killed", "oom", "max_memory", "health"})


# ---- snapshot ---------------------------------------------------------------------------------

class Health(TypedDict):
    ok: bool
    failures: int             # consecutive failed probes
    threshold: int            # failures that restart the instance
    reason: str | None        # the last failed probe's reason


ExitCause = Literal["crash", "not_found", "killed", "oom", "max_memory", "health", "reload", "stopped"]


class ExitRecord(TypedDict):
    at: float                 # epoch seconds
    pid: int
    code: int | None
    signal: str | None        # "SIGKILL"
    cause: ExitCause
    note: str | None          # "command not found: node", "probably killed by the kernel's OOM killer ..."
    uptime_s: float
    instance: int
    release: int
    tail: list[str]           # the last lines it printed before it ended


class TreeMember(TypedDict):
    """A process of an instance's tree of several (a gunicorn master and its workers, npm and node)."""
    pid: int
    ppid: int
    command: str
    cpu_percent: float
    rss_bytes: int


class WorkerSnapshot(TypedDict):
    instance: int
    pid: int | None
    state: WorkerState
    restarts: int
    uptime_s: float | None
    cpu_percent: float | None
    rss_bytes: int | None
    exit_code: int | None
    exit_signal: str | None
    ready: bool
    health: Health | None
    reason: str | None
    role: Literal["surge", "canary"] | None
    generation: int                  # the rolling reload it was started by (1 = the first start)
    release: str | None              # the deploy's release it runs from (releases/NAME), or None
    last_exit: ExitRecord | None     # survives restarts
    checks: list[list]               # [[at, "pid 42 ready after 1.2s" | "health FAIL 1/3: ..."], ...] the last 20
    cpu_seconds: float               # CPU time of every process this slot has had (a counter)
    approved: bool                   # a crash of it is restarted by the spawner helper at once (approval.py)
    tree: list[TreeMember]           # each process of its tree when there is more than one, else []


class ReloadSlot(TypedDict):
    slot: int | str
    old_pid: int | None
    new_pid: int | None
    state: str


ReloadState = Literal["running", "done", "failed", "cancelled"]
ReloadKind = Literal["rolling", "run"]
ReloadWhy = Literal["reload", "schedule"]


class ReloadSnapshot(TypedDict):
    state: ReloadState
    release: int
    slot: int | str | None
    step: str
    reason: str | None
    slots: list[ReloadSlot]
    started_at: float
    finished_at: float | None
    kind: ReloadKind                         # a task's "reload" runs it again
    tail: list[str]                          # a failed reload: the last lines of the instance that failed
    why: ReloadWhy


class LastRun(TypedDict):
    at: float
    result: Literal["running", "completed", "reloaded", "failed", "skipped", "cancelled"]
    reason: str | None


class ScheduleSnapshot(TypedDict):
    cron: str | None
    every: float | None
    timezone: str | None
    text: str                        # "every 30s", "cron */10 * * * * (Europe/Paris)"
    next_run: float | None           # epoch seconds
    last_run: LastRun | None


class ProcessCounters(TypedDict):
    """Counters since the engine started (carried over a hand-over): what Prometheus exports."""
    exits: dict[str, int]            # by cause
    reloads: dict[str, int]          # rolling reloads by result: "done", "failed"
    last_reload_s: float | None      # how long the last finished rolling reload took
    log_lines: int                   # lines the instances printed


class ProcessSnapshot(TypedDict):
    name: str
    instances: int                   # the running target
    oxfile_instances: int            # what the oxfile says
    listen: str | None
    reload: ReloadSnapshot | None
    log_file: str | None             # None with [logs] files = false
    command: str
    release: int
    cwd: str
    user: str | None
    env_names: list[str]             # names only, never values
    exits: list[ExitRecord]          # the last 50, oldest first
    depends_on: dict[str, str]       # {"migrate": "completed_successfully"}
    schedule: ScheduleSnapshot | None
    task: bool                       # runs to an end (restart = "never" or "on-failure")
    counters: ProcessCounters
    log_error: dict[str, Any] | None     # lines its file could not take: since, error, text, lines_not_written, file
    workers: list[WorkerSnapshot]


class NotifyStatus(TypedDict):
    sent: int                        # messages delivered
    failed: int                      # messages given up on
    pending: int                     # queued or being sent
    last_failure: str | None         # "12:04:31 webhook https://... failed 3 times (timed out); crash of web not sent"


class Recovered(TypedDict):
    """This engine replaced one that died, started by the keeper (engine/recovery.py)."""
    at: float                        # when this engine had adopted every worker
    from_pid: int                    # the engine that died
    cause: str                       # "SIGKILL", "SIGSEGV", "exit code 1", "unknown" (its parent reaped it first)
    died_at: float
    attempts: int                    # engines the keeper started until one adopted (1: the first did)
    kept: int                        # workers adopted with their pids
    ended_meanwhile: int             # workers that ended while no engine ran (restarted as after a crash)


class EngineInfo(TypedDict):
    started_at: float
    uptime_s: float
    cpu_percent: float
    cpu_seconds: float
    rss_bytes: int
    version: str
    log_dir: str
    viewers: int
    systemd: bool
    unit: str | None
    oxfile_changed: bool
    notify: NotifyStatus | None      # None without [notify]
    recovered: Recovered | None      # None unless this engine replaced one that died
    deploy: dict[str, Any] | None    # the deploy or rollback running or last ended: kind, target, state, release,
                                     # step, tail (the build's last lines), started_at, finished_at, reason
    keeper_pid: int | None           # the process that holds the workers (helper/keeper.py)
    journal: dict[str, int]          # what keeping history on disk cost so far: {"writes", "bytes"}
    journald: dict[str, int] | None  # worker lines sent to the journal: {"sent", "dropped"}; None when off


class Snapshot(TypedDict):
    oxfile: str
    engine_pid: int
    engine: EngineInfo
    processes: list[ProcessSnapshot]


def slot_workers(p: ProcessSnapshot) -> list[WorkerSnapshot]:
    """The workers of the process's slots, without a reload's surge instance or canary."""
    return [w for w in p["workers"] if not w.get("role")]


def process_named(snapshot: Snapshot | None, name: str) -> ProcessSnapshot | None:
    return next((p for p in snapshot["processes"] if p["name"] == name), None) if snapshot else None


def running_count(p: ProcessSnapshot) -> int:
    return sum(1 for w in slot_workers(p) if w["state"] == WorkerState.RUNNING)


def last_exit_text(w: WorkerSnapshot) -> str | None:
    """"SIGKILL", "code 3", or None when it has not exited."""
    if w["exit_signal"]:
        return w["exit_signal"]
    return f"code {w['exit_code']}" if w["exit_code"] is not None else None


# ---- what observers of an engine get ------------------------------------------------------------

Event = dict[str, Any]     # {"seq", "at", "event", "process", "instance", "pid", "text", ...} (engine/events.py)


class EngineFeed(Protocol):
    """An engine as its observers (notifications, Prometheus, systemd notify) see it: the typed
    snapshot and the event stream. They never hold the engine itself."""

    def snapshot(self) -> Snapshot: ...
    def subscribe(self, on_event: Callable[[Event], None]) -> Callable[[], None]: ...
    def on_change(self, fn: Callable[[], None], after_commands: bool = False) -> Callable[[], None]: ...
    def publish(self, event: str, process: str, text: str, **fields: Any) -> None: ...
    def log(self, text: str) -> None: ...


# ---- replies ----------------------------------------------------------------------------------

class Reply(TypedDict):
    ok: bool
    result: NotRequired[Any]
    error: NotRequired[str]
    usage: NotRequired[bool]
    retry: NotRequired[bool]


def ok(result: Any) -> Reply:
    return {"ok": True, "result": result}


def error(text: str, usage: bool = False, retry: bool = False) -> Reply:
    """A refusal; `usage`: the request itself was wrong (the CLI exits 2 for it, as for bad arguments);
    `retry`: nothing changed, and the same request a moment later should go through."""
    reply: Reply = {"ok": False, "error": text}
    if usage:
        reply["usage"] = True
    if retry:
        reply["retry"] = True
    return reply


def encode(obj: Any) -> bytes:
    """One JSON line, as the control socket speaks."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


# ---- log batches ------------------------------------------------------------------------------

# A line longer than this is cut into pieces of this size: memory stays bounded whatever a child prints.
MAX_LINE = 16 * 1024
STREAM_MARK = {"out": "|", "err": "!", "event": "~"}


class LogBatch:
    """One chunk of output (or one engine event): complete lines sharing a capture time.

    Holds the raw bytes; the decoded lines are made only when someone reads them (the UI, `oxtui
    logs`, a readiness regex), so capture itself never walks the lines in Python.
    """

    __slots__ = ("_lines", "count", "data", "instance", "pid", "process", "seq", "stream", "ts")

    def __init__(self, seq: int, ts: float, process: str, instance: int | None, stream: str, data: bytes,
                 count: int, lines: tuple[str, ...] | None = None, pid: int | None = None):
        self.seq, self.ts, self.process, self.instance, self.stream = seq, ts, process, instance, stream
        self.data = data          # complete lines joined by b"\n", no trailing newline
        self.count = count        # number of lines
        self._lines = lines
        self.pid = pid            # the process that printed it (the engine's side only: never on the wire)

    @property
    def lines(self) -> tuple[str, ...]:
        if self._lines is None:
            self._lines = tuple(split_blob(self.data))
        return self._lines

    @property
    def source(self) -> str:
        if self.instance is None:
            return self.process
        return f"{self.process}.{'canary' if self.instance < 0 else self.instance}"

    def to_wire(self) -> list[Any]:
        return [self.seq, self.ts, self.process, self.instance, self.stream, self.data.decode("utf-8", "replace")]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> LogBatch:
        seq, ts, process, instance, stream, text = raw
        return cls(seq, ts, process, instance, stream, text.encode("utf-8", "replace"), text.count("\n") + 1)


def split_blob(blob: bytes) -> list[str]:
    text = blob.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if any(len(line) > MAX_LINE for line in lines):
        lines = [line[i:i + MAX_LINE] for line in lines for i in range(0, max(len(line), 1), MAX_LINE)]
    return lines


_ts_cache: tuple[int, str] = (-1, "")


def format_ts(ts: float) -> str:
    """Local time with milliseconds; strftime runs once per second, not once per chunk."""
    global _ts_cache
    sec = int(ts)
    if _ts_cache[0] != sec:
        _ts_cache = (sec, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec)))
    return f"{_ts_cache[1]}.{int((ts - sec) * 1000):03d}"


def json_object(line: str | bytes) -> dict[str, Any] | None:
    """The fields of a log line that is one JSON object (an app's structured log), else None."""
    text = line.strip()
    if not (text[:1] in ("{", b"{") and text[-1:] in ("}", b"}")):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
