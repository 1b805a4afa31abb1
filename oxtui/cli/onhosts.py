"""The fleet verbs: `ls --fleet`, and `-H HOST[,HOST]` / `--fleet` on status, logs, events, scale, reload,
restart, stop, start; `reload NAME --fleet` is a rolling deploy across hosts.

Each host's engine is the one `-c OXFILE` names (a path on that host), else the one that runs NAME,
else the host's only engine. A host that cannot be reached is one line naming it and why (exit 1);
the others are still done (`status --json` gives it an entry with its `error`, so a script sees it).
`reload` goes host after host and stops at the first that rolls back or is lost during its reload,
saying which hosts run the new release and which the old; a host unreachable from the start is named
and skipped (one host down must not hold a fix back from the others), and the exit code is 1.

One prefix for every merged output: a host's lines read `HOST/process.N` where one host's read
`process.N` (logs and events, followed or not, merged in time order); a verb's own lines read `HOST: `.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import sys
import threading
from typing import Any

from ..fleet.fleetfile import FleetError, Host, pick
from ..fleet.link import HostLink, LinkDown
from ..protocol import Snapshot


class Refused(Exception):
    def __init__(self, text: str, code: int):
        super().__init__(text)
        self.code = code


def hosts_of(args: argparse.Namespace) -> list[Host] | None:
    """The hosts the command names, or None once it has printed what is wrong with them (exit 2)."""
    names = [n for n in (args.host or "").split(",") if n] if getattr(args, "host", None) else None
    try:
        return pick(names, getattr(args, "fleet_file", None))
    except FleetError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        return None


def connect_all(hosts: list[Host]) -> list[tuple[Host, HostLink | None, str | None]]:
    """Every host at once (one slow host never holds up the others); (host, link or None, why not)."""
    out: list[tuple[Host, HostLink | None, str | None]] = [(h, None, None) for h in hosts]

    def one(i: int, h: Host) -> None:
        link = HostLink(h)
        try:
            link.connect()
            out[i] = (h, link, None)
        except (LinkDown, OSError) as e:
            out[i] = (h, None, str(e))
    threads = [threading.Thread(target=one, args=(i, h)) for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def engines_on(link: HostLink) -> list[dict[str, Any]]:
    got = link.call({"list": True}, timeout=30)
    return [e for e in got[0]["engines"] if e.get("answering") and e.get("oxfile")] if got else []


def engine_for(link: HostLink, oxfile: str | None, name: str | None) -> str:
    found = engines_on(link)
    host = link.host.name
    if oxfile:
        if any(e["oxfile"] == oxfile for e in found):
            return oxfile
        raise Refused(f"{host}: no engine is running for {oxfile} (running: "
                      f"{', '.join(e['oxfile'] for e in found) or 'none'})", 3)
    if name and name != "all":
        name = name.rsplit(".", 1)[0] if not any(p["name"] == name for e in found for p in e["processes"]) else name
        found = [e for e in found if any(p["name"] == name for p in e["processes"])] or found
    if not found:
        raise Refused(f"{host}: no engine is running", 3)
    if len(found) > 1:
        raise Refused(f"{host}: {len(found)} engines are running ({', '.join(e['oxfile'] for e in found)}); "
                      "name one with -c", 2)
    return found[0]["oxfile"]


def ask(link: HostLink, oxfile: str, req: dict[str, Any], progress: Any = None) -> Any:
    """One request to one engine; its result, or Refused (the engine's error, and its exit code)."""
    def on(m: dict[str, Any]) -> None:
        reply = m.get("msg") or {}
        if "progress" in reply and progress is not None:
            progress(reply["progress"])
    for m in link.call({"engine": oxfile, "req": req}, on_msg=on):
        reply = m.get("msg") or {}
        if reply.get("ok"):
            return reply["result"]
        if reply.get("ok") is False:
            raise Refused(f"{link.host.name}: {reply.get('error')}",
                          3 if reply.get("noengine") else 2 if reply.get("usage") else 1)
    raise Refused(f"{link.host.name}: the engine did not answer", 1)


def run(args: argparse.Namespace, req: dict[str, Any]) -> int:
    hosts = hosts_of(args)
    if hosts is None:
        return 2
    verb = args.verb
    linked = connect_all(hosts)
    code = 0
    for h, _link, why in linked:
        if why is not None:
            print(f"oxtui {verb}: {h.name}: unreachable: {why}", file=sys.stderr)
            code = 1
    up = [(h, link) for h, link, _ in linked if link is not None]
    down = [{"host": h.name, "error": f"unreachable: {why}"} for h, _link, why in linked if why is not None]
    try:
        if verb == "ls":
            return max(code, _ls(up, args.json))
        if verb in ("deploy", "rollback") or (verb == "reload" and (args.fleet or len(up) > 1)):
            return max(code, _deploy(up, args, req, [h.name for h, _link, why in linked if why]))
        if verb in ("logs", "events") and req.get("follow"):
            return max(code, _follow(up, args, req))
        results: list[dict[str, Any]] = []
        for h, link in up:
            try:
                oxfile = engine_for(link, args.config, req.get("name"))
                result = ask(link, oxfile, req)
            except (Refused, LinkDown) as e:
                print(f"oxtui {verb}: {e}", file=sys.stderr)
                code = max(code, getattr(e, "code", 1))
                down.append({"host": h.name, "error": str(e).removeprefix(f"{h.name}: ")})
                continue
            results.append({"host": h.name, "oxfile": oxfile, "result": result})
        _print(args, results, down)
        return code
    finally:
        for _h, link in up:
            link.close()


def _print(args: argparse.Namespace, results: list[dict[str, Any]], down: list[dict[str, str]]) -> None:
    from .report import report
    if args.verb == "status" and args.json:
        print(json.dumps([{**r["result"], "host": r["host"]} for r in results] + down, indent=2))
        return
    key = "events" if args.verb == "events" else "lines"
    if args.verb in ("logs", "events") and all(key in r["result"] for r in results):     # not `logs --flush`
        _print_merged(args, results)
        return
    for r in results:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            report(args, r["result"])
        text = out.getvalue()
        if args.verb == "status":
            print(f"== {r['host']} ==\n{text}", end="")
        else:
            sys.stdout.write("".join(f"{r['host']}: {line}\n" for line in text.splitlines()))


def _merged_line(args: argparse.Namespace, fmt: Any, host: str, item: Any) -> tuple[float, str]:
    """(time, text) of one log line (a list) or event (a dict) of a host, in the fleet's one format."""
    from .report import event_line, log_json
    if isinstance(item, dict):
        text = json.dumps({**item, "host": host}) if args.json else event_line(item, host)
        return item["at"], text + "\n"
    _seq, ts, source, stream, line = item
    if args.json:
        return ts, json.dumps({**log_json(ts, source, stream, line), "host": host}) + "\n"
    return ts, fmt.lines(f"{host}/{source}", stream, ts, [line])


def _print_merged(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    """Every host's recent lines or events as one list in time order (a host's own order kept)."""
    from .printer import Formatter, use_colour
    fmt = Formatter(use_colour(sys.stdout), timestamps=True)
    key = "events" if args.verb == "events" else "lines"
    out = [_merged_line(args, fmt, r["host"], item) for r in results for item in r["result"][key]]
    out.sort(key=lambda pair: pair[0])     # stable: equal times keep each host's own order
    sys.stdout.write("".join(text for _ts, text in out))


def _ls(up: list[tuple[Host, HostLink]], as_json: bool) -> int:
    rows = []
    for h, link in up:
        for e in engines_on(link):
            rows.append({**e, "host": h.name, "remote_version": link.hello.get("version")})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for e in rows:
        procs = ", ".join(f"{p['name']} {p.get('summary') or str(p['running']) + '/' + str(p['instances'])}"
                          for p in e["processes"])
        print(f"{e['host']:<12} {e['oxfile']}  pid {e['pid']}  oxtui {e.get('version', '?')}  {procs}")
    if not rows:
        print("no engine is running on these hosts")
    return 0


def _deploy(up: list[tuple[Host, HostLink]], args: argparse.Namespace, req: dict[str, Any],
            unreachable: list[str]) -> int:
    """One host after the other, each its own rolling reload (or deploy, or rollback); stop at the first
    that fails or rolls back."""
    new, failed, code = [], None, 0
    what = {"deploy": f"deploy of {req.get('ref') or 'the default ref'}",
            "rollback": f"rollback to {req.get('release') or 'the release before'}",
            "reload": f"rolling reload of {req.get('name')}"}[args.verb]
    for h, link in up:
        print(f"{h.name}: {what}", flush=True)
        try:
            oxfile = engine_for(link, args.config, req.get("name"))
            result = ask(link, oxfile, req, lambda text, n=h.name: print(f"{n}: {text}", flush=True))
        except (Refused, LinkDown) as e:
            print(f"oxtui {args.verb}: {e}", file=sys.stderr)
            failed, code = h.name, getattr(e, "code", 1)
            break
        if "release" in result:
            print(f"{h.name}: {result['release']} is live", flush=True)
        bad = next((r for r in result["processes"] if not r["ok"]), None)
        if bad is not None:
            print(f"oxtui reload: {h.name}: {bad['name']}: rolled back: {bad['reason']}", file=sys.stderr)
            failed, code = h.name, 1
            break
        new.append(h.name)
    old = [h.name for h, _ in up if h.name not in new]
    print(f"new release on: {', '.join(new) or 'none'}; old release on: {', '.join(old) or 'none'}"
          + (f" (stopped at {failed})" if failed else "")
          + (f"; not reached: {', '.join(unreachable)}" if unreachable else ""))
    return code


def _follow(up: list[tuple[Host, HostLink]], args: argparse.Namespace, req: dict[str, Any]) -> int:
    """Every host's stream at once, each line with its host, until Ctrl-C."""
    from .printer import Formatter, use_colour
    fmt = Formatter(use_colour(sys.stdout), timestamps=True)
    lock = threading.Lock()
    done = threading.Event()
    left = [len(up)]

    def on(host: str, m: dict[str, Any]) -> None:
        reply = m.get("msg") or {}
        lines: list[str] = []
        if "log" in reply or "event" in reply:
            lines.append(_merged_line(args, fmt, host, reply.get("log") or reply["event"])[1])
        elif reply.get("ok") and "result" in reply:
            items = reply["result"].get("lines", []) + reply["result"].get("events", [])
            lines.extend(text for _ts, text in sorted((_merged_line(args, fmt, host, i) for i in items),
                                                      key=lambda pair: pair[0]))
        elif reply.get("ok") is False:
            lines.append(f"{host}: {reply.get('error')}\n")
        if m.get("end"):
            left[0] -= 1
            if not left[0]:
                done.set()
        with lock:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
    for h, link in up:
        try:
            oxfile = engine_for(link, args.config, req.get("name"))
        except Refused as e:
            print(f"oxtui {args.verb}: {e}", file=sys.stderr)
            left[0] -= 1
            continue
        link.request({"engine": oxfile, "req": req}, functools.partial(on, h.name))
    try:
        while left[0] > 0 and not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        return 130
    return 0


def status_of_hosts(hosts: list[Host]) -> list[tuple[str, list[Snapshot] | str]]:
    """Every host's engines' snapshots (or why not), for the fleet upgrade and tests."""
    out: list[tuple[str, list[Snapshot] | str]] = []
    for h, link, why in connect_all(hosts):
        if link is None:
            out.append((h.name, why or "unreachable"))
            continue
        try:
            out.append((h.name, [ask(link, e["oxfile"], {"cmd": "status"}) for e in engines_on(link)]))
        finally:
            link.close()
    return out
