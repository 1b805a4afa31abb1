"""What Enter shows: a worker's or a process's settings, state, processes and exit history, as Rich
markup made from the snapshot alone (it is drawn again every second while open)."""

from __future__ import annotations

import time
from collections import Counter

from ..format import count_text, depends_text, human_bytes, human_duration, schedule_text
from ..protocol import LIVE_STATES, ProcessSnapshot, TreeMember, WorkerSnapshot
from .model import deployed_release


def details_text(p: ProcessSnapshot, instance: int | None, now: float | None = None) -> str:
    """The details screen (Rich markup): a worker's (or with instance None, a process's) settings, state and
    exit history, each exit with the last lines it printed. Everything a child printed is escaped."""
    from rich.markup import escape
    now = time.time() if now is None else now
    workers = [w for w in p["workers"] if instance is None or (w["instance"] == instance and not w.get("role"))]
    out: list[str] = []
    if instance is not None and workers:
        w = workers[0]
        out.append(f"[b]{p['name']}.{instance}[/b] · {w['state']} · pid {w['pid'] or '-'} · up "
                   f"{human_duration(w.get('uptime_s'))} · {w['restarts']} restart(s) · "
                   + (f"release {deployed_release(w)}" if deployed_release(w)
                      else f"generation {w.get('generation', w.get('release', 1))}"))
        if reason := w.get("reason"):
            out.append(f"[dim]why:[/dim] {escape(reason)}")
    else:
        out.append(f"[b]{p['name']}[/b] · {count_text(p)} · release {p.get('release', 1)}"
                   + (" · a task" if p.get("task") else ""))
        deployed = Counter(deployed_release(w) for w in workers if deployed_release(w) and w["state"] in LIVE_STATES)
        if deployed:       # during a deploy, two: the slots not yet moved run the old release
            out.append("deployed release" + ("s" if len(deployed) > 1 else "") + ": "
                       + ", ".join(f"{name} ({n} instance{'s' if n > 1 else ''})" for name, n in sorted(deployed.items(),
                                                                                                       reverse=True)))
    rows = [("command", p.get("command", "")), ("cwd", p.get("cwd") or "-"),
            ("user", p.get("user") or "the engine's own"),
            ("env", ", ".join(p.get("env_names") or []) or "-  (names only: values are never shown)"),
            ("log file", p.get("log_file", "-")), ("listen", p.get("listen") or "-"),
            ("depends", depends_text(p) or "-"), ("schedule", schedule_text(p) or "-")]
    for w in workers if instance is not None else []:
        rows.append(("ready", "ready" if w.get("ready") else "not ready"))
        h = w.get("health")
        rows.append(("health", "unchecked" if not h else "ok" if h["ok"] else
                     f"FAIL {h['failures']}/{h['threshold']}: {h.get('reason') or ''}"))
    out += [f"[dim]{k:<9}[/dim] {escape(str(v))}" for k, v in rows]
    tree = [m for w in workers if instance is not None and w["pid"] for m in tree_lines(w)]
    if tree:
        out += ["", f"[b]processes[/b] ({len(tree)}, whose sum CPU% and MEM show)", *map(escape, tree)]
    checks = [c for w in workers if instance is not None for c in w.get("checks") or []]
    if checks:
        out.append("")
        out.append("[b]readiness and health[/b] (newest first)")
        out += [f"{time.strftime('%H:%M:%S', time.localtime(at))} {escape(text)}" for at, text in reversed(checks)]
    rl = p.get("reload")
    if rl and (instance is None or rl["state"] == "failed"):
        out.append("")
        out.append(f"[b]last reload[/b] (release {rl['release']}): {rl['state']}"
                   + (f" · {escape(why)}" if (why := rl.get("reason")) else ""))
        if rl.get("tail"):
            out.append("[dim]the failed instance's last lines:[/dim]")
            out += [f"  [red]│[/red] {escape(line)}" for line in rl["tail"]]
    exits = [e for e in p.get("exits", []) if instance is None or e["instance"] == instance]
    out.append("")
    out.append(f"[b]exits[/b] ({len(exits)} kept, newest first)" if exits else "[b]exits[/b]: none yet")
    for e in reversed(exits):
        how = e["signal"] or f"code {e['code']}"
        when = time.strftime("%H:%M:%S", time.localtime(e["at"]))
        ago = human_duration(max(0.0, now - e["at"]), coarse=True)
        who = "" if instance is not None else f"{p['name']}.{e['instance']} "
        out.append(f"{when} ({ago} ago) {who}pid {e['pid']} [b]{e['cause']}[/b] ({how}) after "
                   f"{human_duration(e['uptime_s'])}" + (f" · {escape(note)}" if (note := e.get("note")) else ""))
        out += [f"  [dim]│[/dim] {escape(line)}" for line in e.get("tail", [])]
    return "\n".join(out)


def tree_lines(w: WorkerSnapshot) -> list[str]:
    """Its processes, each under its parent ("  12.0%   40.1M  ├ 4120 gunicorn: worker [app]"), when
    the instance is more than one process (a gunicorn master and its workers, npm and its node)."""
    members = w.get("tree") or []
    kids: dict[int, list[TreeMember]] = {}
    for m in members:
        kids.setdefault(m["ppid"], []).append(m)
    root = next((m for m in members if m["pid"] == w["pid"]), None)
    lines: list[str] = []

    def walk(m: TreeMember, lead: str, mark: str, under: str) -> None:
        lines.append(f"{m['cpu_percent']:6.1f}%  {human_bytes(m['rss_bytes']):>6}  {lead}{mark}{m['pid']} {m['command']}")
        below = sorted(kids.get(m["pid"], []), key=lambda k: k["pid"])
        for i, kid in enumerate(below):
            last = i == len(below) - 1
            walk(kid, under, "└ " if last else "├ ", under + ("  " if last else "│ "))
    if root is not None:
        walk(root, "", "", "")
    return lines
