"""`oxtui start app.js -i 4 --listen :3000`: start a program without writing an oxfile first, as
`pm2 start app.js -i 4` does, but leave the oxfile it used behind (the file is the truth here).

The program becomes a [processes.NAME] table of ./oxfile.toml (or -c's): added to it, comments and
layout kept, or a new file saying how it was made. Then the engine for that oxfile starts it (`oxtui
apply` when one runs, `oxtui up` when none does).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..oxfile.config import ConfigError, load, parse_address


def looks_like_a_program(target: str, oxfile: Path) -> bool:
    """`oxtui start X`: a program to start (a file, or options given) rather than a process to start."""
    return Path(target).is_file() and not _is_process(oxfile, target)


def _is_process(oxfile: Path, name: str) -> bool:
    try:
        return load(oxfile).process(name) is not None
    except ConfigError:
        return False


def _listen(value: str) -> str:
    """":3000" or "3000": every interface, as `server.listen(3000)` does; else HOST:PORT as given."""
    text = value.strip()
    if re.fullmatch(r":?\d+", text):
        text = "0.0.0.0:" + text.lstrip(":")
    host, port = parse_address(text)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def quickstart(args: argparse.Namespace, oxfile: Path) -> int:
    import tomlkit

    from ..porting.pm2 import command_for
    script = args.name
    name = args.as_name or re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(script).stem).strip("-") or "app"
    command = command_for({"script": script, "args": args.args or [], "interpreter": args.interpreter})
    table = tomlkit.table()
    table.add("command", command)
    if args.instances is not None:
        table.add("instances", "max" if args.instances == "max" else int(args.instances))
    if args.listen:
        try:
            table.add("listen", _listen(args.listen))
        except ValueError as e:
            print(f"oxtui start: --listen {e}", file=sys.stderr)
            return 2
        host, port = parse_address(str(table["listen"]))
        if host in ("0.0.0.0", "::"):
            # as `server.listen(3000)` does, and what a PM2 user means; but never without saying so
            print(f"warning: --listen {args.listen} listens on every interface ({table['listen']}): reachable from "
                  f"the internet unless a firewall stops it; behind a proxy (nginx, Caddy) use --listen "
                  f"127.0.0.1:{port}", file=sys.stderr)
    if oxfile.exists():
        try:
            load(oxfile)
        except ConfigError as e:
            print(f"oxtui start: {oxfile} has errors, so nothing was added to it:", file=sys.stderr)
            for line in e.errors:
                print(f"  {line}", file=sys.stderr)
            return 2
        doc = tomlkit.parse(oxfile.read_text())
        procs = doc.setdefault("processes", tomlkit.table(is_super_table=True))
        if name in procs:
            return _already_there(oxfile, name, procs[name], table)
    else:
        doc = tomlkit.document()
        doc.add(tomlkit.comment(f"Written by `oxtui start {' '.join(sys.argv[2:])}`; edit it, `oxtui check` it, "
                                "and `oxtui apply` loads your changes."))
        doc.add(tomlkit.nl())
        procs = tomlkit.table(is_super_table=True)
        doc.add("processes", procs)
    procs.add(name, table)
    text = tomlkit.dumps(doc)
    try:
        oxfile.write_text(text)
    except OSError as e:
        print(f"oxtui start: cannot write {oxfile} ({e.strerror})", file=sys.stderr)
        return 1
    print(f"{oxfile}: [processes.{name}] command = {command!r}"
          + (f", {table['instances']} instance(s)" if "instances" in table else "")
          + (f", listen = {table['listen']!r}" if "listen" in table else ""))
    if "listen" in table:
        print("note: every instance gets the shared socket as fd 3: a Node app serves it with server.listen({fd: 3}), "
              "gunicorn by itself, uvicorn with --fd 3 (docs/apps.md)")
    from ..client.connection import Client, ControlError, status_of
    if status_of(oxfile) is None:
        from .daemon import up
        return up(load(oxfile))
    from .report import report
    try:
        with Client(oxfile, timeout=None) as c:
            result = c.call({"cmd": "apply"}, lambda text: print(text, flush=True))
    except ControlError as e:
        print(f"oxtui start: {e}", file=sys.stderr)
        return 1
    return report(argparse.Namespace(verb="apply"), result)


def _already_there(oxfile: Path, name: str, have: object, table: object) -> int:
    """`oxtui start app.js -i 4` again: the same program is started (by `up` when no engine runs, by
    the engine when one does); another program of that name is refused, saying what starts the one there."""
    from ..client.connection import status_of
    running = status_of(oxfile) is not None
    same = all(have.get(key) == value for key, value in table.items())       # type: ignore[attr-defined]
    if not same:
        starts = f"`oxtui start {name} -c {oxfile}` starts it" if running else f"`oxtui up {oxfile}` starts it"
        print(f"oxtui start: {oxfile} has a different [processes.{name}] already; {starts}, --name gives the new "
              "one another name", file=sys.stderr)
        return 2
    print(f"{oxfile}: [processes.{name}] is there already")
    if not running:
        from .daemon import up
        return up(load(oxfile))
    from ..client.connection import Client, ControlError
    try:
        with Client(oxfile, timeout=None) as c:
            c.call({"cmd": "start", "name": name})
    except ControlError as e:
        print(f"oxtui start: {e}", file=sys.stderr)
        return 1
    print(f"start: {name}")
    return 0
