"""What the worker grid shows, computed from an engine snapshot (pure: no Textual, unit-tested).

Rows have stable keys, so the grid can update cells in place and keep the cursor where it was.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..format import (
    clock,
    count_text,
    depends_text,
    human_bytes,
    human_duration,
    in_start_order,
    last_exit,
    live_text,
    schedule_text,
    sparkline,
)
from ..protocol import (
    LIVE_STATES,
    ProcessSnapshot,
    ReloadSnapshot,
    Snapshot,
    WorkerSnapshot,
    WorkerState,
)
from .columns import LAST_EXIT_WIDTH

SPARK_WIDTH = 9
SORTS = ("slot", "cpu", "memory", "restarts")


@dataclass(frozen=True)
class Row:
    key: str
    kind: str                 # "process" or "worker"; the fleet's grid adds "host" and "engine"
    process: str
    instance: int | None
    role: str | None
    cells: tuple[str, ...]
    state: str | None = None
    host: str | None = None     # the fleet's: which host and engine (oxfile) the row belongs to
    engine: str | None = None


@dataclass
class History:
    """The last minute of CPU and RSS per worker, sampled about once a second."""

    cpu: dict[str, deque[float | None]] = field(default_factory=dict)
    rss: dict[str, deque[float | None]] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, cpu: float | None, rss: float | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self.last.get(key, -10) < 0.9:
            return
        self.last[key] = now
        if key not in self.cpu:         # (not setdefault: that would build two deques per call)
            self.cpu[key], self.rss[key] = deque(maxlen=60), deque(maxlen=60)
        self.cpu[key].append(cpu)
        self.rss[key].append(rss)

    def forget_except(self, keys: set[str]) -> None:
        for d in (self.cpu, self.rss, self.last):
            for k in [k for k in d if k not in keys]:
                del d[k]


def deployed_release(w: WorkerSnapshot) -> str | None:
    """The deploy's release a worker runs from. An engine of 0.2.0 or before sent its reload counter as
    `release` (an int; now `generation`): a TUI attached to one must read that as no release."""
    release = w.get("release")
    return release if isinstance(release, str) else None


def worker_key(process: str, w: WorkerSnapshot) -> str:
    return f"w:{process}:{w['instance']}:{w.get('role') or ''}"


def worker_label(process: str, w: WorkerSnapshot, last: bool) -> str:
    role = w.get("role")
    branch = "└ " if last else "├ "
    if role == "canary":
        return f"{branch}{process}.canary"
    return f"{branch}{process}.{w['instance']}" + ("+" if role == "surge" else "")


def ready_health(w: WorkerSnapshot, p: ProcessSnapshot | None = None) -> str:
    if w["state"] == WorkerState.WAITING:
        reason = w.get("reason") or ""
        if reason.startswith("blocked"):
            return "blocked"
        sched = p.get("schedule") if p else None
        if reason.startswith("scheduled") and sched:
            return f"at {clock(sched.get('next_run'))}"
        deps = list((p.get("depends_on") if p else None) or {})
        return f"after {','.join(deps)}" if deps else "waiting"
    if w["state"] not in LIVE_STATES:
        return "-"
    ready = "ready" if w.get("ready") else "not ready"
    health = w.get("health")
    if not health:
        return ready
    if health["ok"]:
        return f"{ready} · ok"
    return f"{ready} · FAIL {health['failures']}/{health['threshold']}"


def process_info(p: ProcessSnapshot | None) -> str:
    """The line under the grid for the selected process: what it waits for, its schedule, its command."""
    if p is None:
        return ""
    parts = [p["name"] + (" (task)" if p.get("task") else "")]
    parts += [t for t in (p.get("listen") and f"listens on {p['listen']}", depends_text(p), schedule_text(p)) if t]
    waiting = next((w.get("reason") for w in p["workers"] if w["state"] == WorkerState.WAITING and w.get("reason")),
                   None)
    if waiting:
        parts.append(waiting)
    parts.append(p.get("command", ""))
    return " · ".join(x for x in parts if x)


def reload_summary(rl: ReloadSnapshot | None) -> str:
    if not rl or rl.get("why") == "schedule":
        return ""
    if rl.get("kind") == "run":
        return "⟳ running" if rl["state"] == "running" else f"run {rl['state']}"
    if rl["state"] == "running":
        return f"⟳ slot {rl['slot']}"
    return f"reload {rl['state']}"


def snapshot_time(snapshot: Snapshot | None) -> float | None:
    """When the snapshot was taken ("2m ago" is counted from it, so a picture of it never changes)."""
    eng = snapshot.get("engine") if snapshot else None
    if eng and "started_at" in eng and "uptime_s" in eng:
        return eng["started_at"] + eng["uptime_s"]
    return None


def build_rows(snapshot: Snapshot, history: History, sort: str = "slot", window: tuple[int, int] | None = None,
               previous: dict[str, Row] | None = None) -> list[Row]:
    """The grid's rows. With `window` (the row indices on screen, with a margin), only rows in it get
    fresh cells; a row outside it keeps the cells `previous` had (with its current state), because
    the grid paints only what is on screen and rebuilds when it scrolls. So 1000 workers cost about
    what the ~35 visible ones do: the order (sorting) still uses every worker's current values."""
    rows: list[Row] = []
    now = snapshot_time(snapshot)
    previous = previous or {}
    live: set[str] = set()
    for p in in_start_order(snapshot.get("processes", [])):
        name = p["name"]
        listen = p.get("listen") or ""
        if listen.startswith(("127.0.0.1:", "0.0.0.0:")):
            listen = listen.split(":", 1)[0].replace("127.0.0.1", "lo").replace("0.0.0.0", "any") + ":" \
                + listen.split(":", 1)[1]
        count = count_text(p, "up", short=True)
        group_cells = (f"▼ {name}", "", count, "", "", "", "", "", "", listen,
                       reload_summary(p.get("reload")))
        rows.append(Row(f"p:{name}", "process", name, None, None, group_cells))
        keyed = []
        for w in p["workers"]:
            key = worker_key(name, w)
            live.add(key)
            history.add(key, w.get("cpu_percent"), w.get("rss_bytes"))
            keyed.append((key, w))
        order = _sort_key(sort)
        keyed.sort(key=lambda kw: order(kw[1]))
        # during a deploy, or while its instances run different releases, each row says its release's sha
        deploying = (snapshot.get("engine", {}).get("deploy") or {}).get("state") == "running"
        show_release = deploying or len({deployed_release(w) for w in p["workers"]} - {None}) > 1
        last = len(keyed) - 1
        for i, (key, w) in enumerate(keyed):
            old = previous.get(key)
            if window is not None and old is not None and not window[0] <= len(rows) < window[1]:
                rows.append(old if old.state == w["state"] else
                            Row(key, "worker", name, w["instance"], w.get("role"), old.cells, w["state"]))
                continue
            cpu = w.get("cpu_percent")
            cpu_hist = history.cpu.get(key, ())
            cpu_spark = sparkline(cpu_hist, SPARK_WIDTH, top=max(100.0, max((v or 0 for v in cpu_hist), default=0)))
            rss_spark = sparkline(history.rss.get(key, ()), SPARK_WIDTH, relative=True)
            cells = (
                worker_label(name, w, i == last),
                str(w["pid"]) if w.get("pid") else "-",
                w["state"],
                f"{cpu:.1f}" if cpu is not None else "-",
                cpu_spark,
                human_bytes(w.get("rss_bytes")),
                rss_spark,
                str(w["restarts"]),
                human_duration(w.get("uptime_s"), coarse=True),
                last_exit(w, now, width=LAST_EXIT_WIDTH),
                # the release's sha first (4 digits: the column is 12 wide), then readiness
                (f"@{rel.rsplit('-', 1)[-1][:4]} " if show_release and (rel := deployed_release(w)) else "")
                + ready_health(w, p),
            )
            rows.append(Row(key, "worker", name, w["instance"], w.get("role"), cells, w["state"]))
    history.forget_except(live)
    return rows


ROLE_RANK = {None: 0, "surge": 1, "canary": 2}


def _sort_key(sort: str):
    def key(w: WorkerSnapshot) -> tuple:
        role_rank = ROLE_RANK.get(w.get("role"), 3)
        if sort == "cpu":
            return (-(w.get("cpu_percent") or 0), w["instance"], role_rank)
        if sort == "memory":
            return (-(w.get("rss_bytes") or 0), w["instance"], role_rank)
        if sort == "restarts":
            return (-w["restarts"], w["instance"], role_rank)
        return (w["instance"], role_rank)
    return key


def header_text(snapshot: Snapshot | None, host: str, load: tuple[float, ...] | None = None,
                attached: bool = False, width: int = 200) -> str:
    """The line at the top. What needs attention (workers down, counts that differ from the oxfile)
    comes first: a narrow terminal cuts the end, and below 110 columns the extras go."""
    if not snapshot:
        return f"{host} · starting the engine…"
    eng = snapshot.get("engine", {})
    workers = [w for p in snapshot["processes"] for w in p["workers"] if not w.get("role")]
    running = sum(1 for w in workers if w["state"] == WorkerState.RUNNING)
    up = human_duration(eng.get("uptime_s"))
    usage = f"engine {eng.get('cpu_percent', 0):.1f}% CPU {human_bytes(eng.get('rss_bytes'))}"
    if width < 110:
        mode = f"attached to pid {snapshot.get('engine_pid')}" if attached else "embedded"
        return (f"{host} · {running}/{len(workers)} running{recovered_text(snapshot, short=True)}"
                f"{log_error_text(snapshot, short=True)}{unsaved_text(snapshot, short=True)} · {usage} · {mode}, up {up}")
    load_text = " ".join(f"{x:.2f}" for x in load) if load else "-"
    if attached:
        since = time.strftime("%d %b %H:%M", time.localtime(eng["started_at"])) if eng.get("started_at") else "?"
        mode = f"attached to pid {snapshot.get('engine_pid')}, up {up} since {since}"
    else:
        mode = f"engine embedded, up {up}"
    return (f"{host} · {running}/{len(workers)} workers running{recovered_text(snapshot)}{log_error_text(snapshot)}"
            f"{unsaved_text(snapshot)} · "
            f"{mode} · {usage} · load {load_text} · CPU% = of one core")


def recovered_text(snapshot: Snapshot, short: bool = False) -> str:
    """" · recovered from a crash at 12:04 (SIGKILL)": this engine replaced one that died (the keeper)."""
    rec = snapshot.get("engine", {}).get("recovered")
    if not rec:
        return ""
    at = time.strftime("%H:%M", time.localtime(rec.get("died_at") or rec["at"]))
    return f" · recovered {at} ({rec['cause']})" if short else f" · recovered from a crash at {at} ({rec['cause']})"


def log_error_text(snapshot: Snapshot, short: bool = False) -> str:
    """" · logs not written: web (ENOSPC, 3320 lines)": a log file that cannot be written, as it lasts."""
    bad = [(p["name"], e) for p in snapshot.get("processes", []) if (e := p.get("log_error"))]
    if not bad:
        return ""
    if short:
        return f" · logs: {bad[0][1]['error']}"
    return " · logs not written: " + ", ".join(f"{n} ({e['error']}, {e['lines_not_written']} lines)" for n, e in bad)


def unsaved_text(snapshot: Snapshot, short: bool = False) -> str:
    """Where what runs differs from the oxfile: " · web 6, oxfile says 4 (w saves)" (short: "web 6≠4 (w)")."""
    diffs = [(p["name"], p["instances"], p["oxfile_instances"]) for p in snapshot["processes"]
             if p.get("oxfile_instances", p["instances"]) != p["instances"]]
    if short:
        text = f" · {', '.join(f'{n} {a}≠{b}' for n, a, b in diffs)} (w)" if diffs else ""
    else:
        text = f" · {'; '.join(f'{n} {a}, oxfile says {b}' for n, a, b in diffs)} (w saves)" if diffs else ""
    if snapshot.get("engine", {}).get("oxfile_changed"):
        text += " · oxfile edited (a)" if short else " · oxfile edited on disk (a applies)"
    return text


def reload_lines(snapshot: Snapshot | None, now: float | None = None, keep: float = 60.0) -> list[str]:
    """Lines for the reload panel: reloads running, or ended within `keep` seconds."""
    if not snapshot:
        return []
    now = time.time() if now is None else now
    out = []
    dep = snapshot.get("engine", {}).get("deploy")
    if dep and not (dep.get("finished_at") and now - dep["finished_at"] > keep):
        why = dep.get("reason") or (dep["step"] if dep["state"] == "running" else "")
        out.append(f"{dep['kind']} {dep.get('target') or ''}".rstrip() + f": {dep['state']}"
                   + (f" · {why}" if why else "") + (f" · release {dep['release']}" if dep.get("release") else ""))
        if dep["state"] == "running" and dep["step"] == "building":
            out += [f"   {line}" for line in dep.get("tail", [])[-4:]]
    for p in snapshot["processes"]:
        rl = p.get("reload")
        if not rl or ((end := rl.get("finished_at")) and now - end > keep) or rl.get("why") == "schedule":
            continue
        what = "run" if rl.get("kind") == "run" else f"reload of release {rl['release']}"
        head = f"{p['name']}: {what} {rl['state']}"
        if rl["state"] == "running":
            head += f" · {rl['step']}"
        elif rl.get("reason"):
            head += f" · {rl['reason']}"
        out.append(head)
        if rl["state"] != "running":
            continue        # a finished one is its one line: the log rows are not given up for it
        for s in rl.get("slots", []):
            old = s.get("old_pid") or "-"
            new = s.get("new_pid") or "…"
            out.append(f"   slot {s['slot']}: old pid {old} → new pid {new}: {s['state']}")
    return out


def reload_news(snapshot: Snapshot, seen: dict[str, str], where: str = "") -> list[tuple[str, str, str]]:
    """(text, title, severity) for each reload or run that ended since the last call; `seen` holds each
    process's last reload state between calls, `where` is the fleet's host ("web1/"). A schedule's tick
    says its result in the line under the grid, not in a toast."""
    out = []
    for p in snapshot["processes"]:
        rl = p.get("reload")
        if not rl:
            continue
        name = where + p["name"]
        before, seen[name] = seen.get(name), rl["state"]
        if before != "running" or rl["state"] == "running" or rl.get("why") == "schedule":
            continue
        task = rl.get("kind") == "run"
        if rl["state"] == "done":
            out.append((f"{name}: " + ("run done, every instance completed" if task else
                                       "reload done, every instance replaced"), "Run" if task else "Reload",
                        "information"))
        elif rl["state"] == "failed":
            out.append((f"{name}: {rl['reason']}", "Run failed" if task else "Reload failed, old instances kept",
                        "error"))
    return out


def stopping_text(snapshot: Snapshot) -> str:
    """The header's start while q, s stops every worker."""
    left = sum(1 for p in snapshot["processes"] for w in p["workers"] if w["state"] in LIVE_STATES)
    return f"STOPPING: {left} worker(s) left · " if left else "all workers stopped · "


def row_instance(row: Row) -> int | None:
    """The slot a row's details are about: a worker's (not a surge's or canary's), None for a process."""
    return row.instance if row.kind == "worker" and row.role is None else None


def quit_question(snapshot: Snapshot | None, attached: bool) -> tuple[str, list[tuple[str, str]]]:
    """q's question and its choices (key, what it does): stop, and detach (attached) or move to the background."""
    processes = snapshot["processes"] if snapshot else []
    n = sum(1 for p in processes for w in p["workers"] if w["state"] in (WorkerState.STARTING, WorkerState.RUNNING))
    stop = ("s", f"stop all {n} running worker(s) gracefully, then quit")
    if attached:
        return (f"Quit. The engine (pid {snapshot['engine_pid'] if snapshot else '?'}) runs in the background.",
                [("d", "detach: leave every worker running (oxtui again to come back)"), stop])
    return ("Quit. The engine runs inside this TUI.",
            [stop, ("b", "keep every worker running in the background (nothing restarts)")])


def apply_summary(result: dict[str, Any]) -> tuple[str, str]:
    """One notification for `a`: what the apply did, and what failed."""
    parts = [f"{what} {', '.join(result[what])}" for what in ("added", "removed", "reloaded", "restarted", "scaled", "rewatched")
             if result.get(what)]
    parts += [f"{f['name']} reload failed (old settings kept): {f['reason']}" for f in result.get("failed", [])]
    parts += result.get("notes", [])
    return ("oxfile applied: " + ("; ".join(parts) if parts else "nothing changed"),
            "information" if result.get("ok") else "error")


def deploy_summary(result: dict[str, Any]) -> tuple[str, str]:
    """One notification for D: the release now live (a failure comes back as an error, said as such)."""
    return f"deployed: {live_text(result)}", "information"


def save_summary(result: dict[str, Any]) -> tuple[str, str]:
    """One notification for `w`: which counts went into the oxfile."""
    changed = [f"{n} {c['was']} -> {c['now']}" for n, c in result.get("changed", {}).items()]
    if not changed:
        return "nothing to save: the oxfile already says what runs", "information"
    return f"saved to {result['oxfile']}: instances " + ", ".join(changed), "information"
