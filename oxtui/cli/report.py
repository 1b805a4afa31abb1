"""What the CLI prints for each verb's result: status tables, logs, scale and reload outcomes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import __version__
from ..format import (
    FIRST_TO_HAND_OVER,
    depends_text,
    hands_over,
    hint,
    human_bytes,
    human_duration,
    in_start_order,
    last_exit,
    live_text,
    older,
    schedule_text,
)
from ..protocol import Snapshot, json_object


def report(args: argparse.Namespace, result: Any) -> int:
    verb = args.verb
    if verb == "status":
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_status(result)
        return 0
    if verb == "scale":
        print(f"{result['name']}: {result['before']} -> {result['instances']} instance(s)")
        return 0
    if verb == "reload":
        for r in result["processes"]:
            if not r["ok"]:
                what = "failed" if r.get("task") else "rolled back"
                print(f"oxtui reload: {r['name']}: {what}: {r['reason']}", file=sys.stderr)
                return 1
        return 0
    if verb in ("deploy", "rollback"):
        print(live_text(result))
        return 0
    if verb == "kill":
        print(f"sent {result['signal']} to pid {result['pid']}")
        return 0
    if verb == "save":
        for name, ch in result["changed"].items():
            print(f"{name}: instances = {ch['now']} (was {ch['was']})")
        print(f"saved to {result['oxfile']}" if result["changed"] else
              f"nothing to save: {result['oxfile']} already says what runs")
        return 0
    if verb == "apply":
        for what in ("added", "removed", "reloaded", "restarted", "scaled", "rewatched", "unchanged"):
            if result[what]:
                print(f"{what}: {', '.join(result[what])}")
        for note in result["notes"]:
            print(f"note: {note}")
        for f in result["failed"]:
            print(f"oxtui apply: {f['name']}: reload failed, old settings kept: {f['reason']}", file=sys.stderr)
        return 0 if result["ok"] else 1
    if verb == "logs" and "bytes" in result:
        print(f"emptied the logs of {', '.join(result['processes'])} ({human_bytes(result['bytes'])} freed)")
        return 0
    if verb == "logs":
        from .printer import Formatter, use_colour
        fmt = Formatter(use_colour(sys.stdout), timestamps=True)
        for _seq, ts, source, stream, line in result["lines"]:
            sys.stdout.write(fmt.lines(source, stream, ts, [line]))
        return 0
    print(f"{verb}: {', '.join(result['processes'])}")
    return 0


def follow_logs(client: Any, req: dict[str, Any], as_json: bool = False) -> int:
    """Recent lines, then (with follow) every new one as it comes; as JSON objects with as_json."""
    from .printer import Formatter, use_colour
    fmt = Formatter(use_colour(sys.stdout), timestamps=True)

    def show(ts: float, source: str, stream: str, line: str) -> None:
        if as_json:
            sys.stdout.write(json.dumps(log_json(ts, source, stream, line)) + "\n")
        else:
            sys.stdout.write(fmt.lines(source, stream, ts, [line]))

    client.send(req)
    for msg in client.replies():
        if "log" in msg:
            _seq, ts, source, stream, line = msg["log"]
            show(ts, source, stream, line)
        elif "dropped" in msg:
            sys.stderr.write(f"[oxtui] {msg['dropped']} lines skipped (reader too slow; see the log files)\n")
        elif msg.get("ok") is False:
            print(f"oxtui logs: {msg['error']}", file=sys.stderr)
            return 2 if msg.get("usage") else 1
        elif msg.get("ok"):
            for _seq, ts, source, stream, line in msg["result"]["lines"]:
                show(ts, source, stream, line)
            if not req.get("follow"):
                return 0
        sys.stdout.flush()
    return 0


def log_json(ts: float, source: str, stream: str, line: str) -> dict[str, Any]:
    """One log line as `logs --json` prints it; a line that is a JSON object itself (an app's structured
    log) keeps its fields under "json", for a collector to read without parsing `line` again."""
    process, _, instance = source.partition(".")
    out = {"at": ts, "process": process, "instance": int(instance) if instance.isdigit()
           else (-1 if instance == "canary" else None), "stream": stream, "line": line}
    fields = json_object(line)
    if fields is not None:
        out["json"] = fields
    return out



def event_line(ev: dict[str, Any], host: str | None = None) -> str:
    """One event for people: "13:02:11.204 web.1 crash pid 4242: exited (crash: code 1)"; a fleet's
    events name the host as its logs do: "web1/web.1"."""
    from ..protocol import format_ts
    who = (f"{host}/" if host else "") + ev["process"] + ("" if ev.get("instance") is None else
                                                          f".{'canary' if ev['instance'] < 0 else ev['instance']}")
    pid = f" pid {ev['pid']}" if ev.get("pid") else ""
    return f"{format_ts(ev['at'])} {who:<12} {ev['event']:<13}{pid}: {ev.get('text', '')}"


def follow_events(client: Any, req: dict[str, Any], as_json: bool) -> int:
    """Recent events, then (with follow) every new one as it happens."""
    def show(ev: dict[str, Any]) -> None:
        sys.stdout.write((json.dumps(ev) if as_json else event_line(ev)) + "\n")

    client.send(req)
    for msg in client.replies():
        if "event" in msg:
            show(msg["event"])
        elif msg.get("ok") is False:
            print(f"oxtui events: {msg['error']}", file=sys.stderr)
            return 2 if msg.get("usage") else 1
        elif msg.get("ok"):
            for ev in msg["result"]["events"]:
                show(ev)
            if not req.get("follow"):
                return 0
        sys.stdout.flush()
    return 0


def print_status(snap: Snapshot) -> None:
    eng = snap.get("engine", {})
    version = eng.get("version", "0.1.0")
    print(f"engine pid {snap['engine_pid']}  oxtui {version}  up {human_duration(eng.get('uptime_s'))}  "
          f"cpu {eng.get('cpu_percent', 0):.1f}%  mem {human_bytes(eng.get('rss_bytes'))}  {snap['oxfile']}"
          + (f"  (systemd: {eng.get('unit') or 'yes'})" if eng.get("systemd") else ""))
    if older(version) and hands_over(version):
        print(f"note: the engine runs oxtui {version}, older than the installed {__version__}; "
              f"`{hint('upgrade', snap['oxfile'])}` moves it to {__version__} without restarting an app")
    elif older(version):
        print(f"note: the engine runs oxtui {version}, which cannot hand over ({FIRST_TO_HAND_OVER} is the first "
              f"that can); restart it once to move to {__version__}: `{hint('down', snap['oxfile'])} && "
              f"{hint('up', snap['oxfile'])}` (that restarts its apps)")
    notify = eng.get("notify")
    if notify and notify["failed"]:
        print(f"notify: {notify['failed']} message(s) not delivered, {notify['sent']} delivered; the last failure: "
              f"{notify['last_failure']}")
    if eng.get("oxfile_changed"):
        print(f"note: the oxfile changed on disk since the engine read it; `{hint('apply', snap['oxfile'])}` loads it")
    if any(p.get("oxfile_instances", p["instances"]) != p["instances"] for p in snap["processes"]):
        print(f"note: running counts differ from the oxfile; `{hint('save', snap['oxfile'])}` writes them into it")
    header = f"{'NAME':<14}{'PID':>8}  {'STATE':<9}{'CPU%':>6}{'MEM':>8}{'RESTARTS':>9}{'UPTIME':>9}  LAST EXIT"
    print(header)
    for p in in_start_order(snap["processes"]):
        extra = f"  {p['listen']}" if p["listen"] else ""
        extra += "".join(f"  {t}" for t in (depends_text(p), schedule_text(p)) if t)
        reload = p.get("reload")
        rl = ""
        if reload and reload.get("why") != "schedule":      # a schedule's runs are in schedule_text already
            rl = f"  {'run' if reload.get('kind') == 'run' else 'reload'} {reload['state']}" \
                + (f": {reload['reason']}" if reload.get("reason") else "")
        differs = p.get("oxfile_instances", p["instances"]) != p["instances"]
        count = f"{p['instances']}, oxfile says {p['oxfile_instances']}" if differs else f"{p['instances']}"
        print(f"{p['name']} ({count}){extra}{rl}")
        for w in p["workers"]:
            label = f"  {p['name']}.{'canary' if w['role'] == 'canary' else w['instance']}" + ("+" if w["role"] == "surge" else "")
            last = last_exit(w, verbose=True)
            cpu = f"{w['cpu_percent']:.1f}" if w["cpu_percent"] is not None else "-"
            why = f"  {w['reason']}" if w["state"] == "waiting" and w.get("reason") else ""
            print(f"{label:<14}{w['pid'] or '-':>8}  {w['state']:<9}{cpu:>6}{human_bytes(w['rss_bytes']):>8}"
                  f"{w['restarts']:>9}{human_duration(w['uptime_s']):>9}  {last}{why}")
