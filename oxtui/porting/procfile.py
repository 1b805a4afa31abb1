"""`oxtui import procfile FILE`: a Procfile (`name: command` per line) into an oxfile.

Heroku's conventions carry over: `release` is a one-shot task that every other process waits for
(`completed_successfully`: a failed release starts nothing), a `.env` beside the Procfile is every
process's `env_file`, and `web` serves the port. A web command that binds `$PORT` itself cannot share
one socket between instances: gunicorn and uvicorn are rewritten to take oxtui's (fd 3); anything
else keeps its own bind, with no `listen`, and the note says how to move it to fd 3.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import PortError
from .oxfile_out import Table

LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")
BINDS_PORT = re.compile(r"\$\{?PORT\}?")
GUNICORN_BIND = re.compile(r"\s(?:--bind[= ]|-b\s*)\S*")
UVICORN_ADDR = re.compile(r"\s--(?:host|port)[= ]\S+")


def read_port(env_file: Path) -> str | None:
    """PORT from a .env beside the Procfile, if it sets one (only that value is read)."""
    try:
        for line in env_file.read_text().splitlines():
            m = re.match(r"^\s*(?:export\s+)?PORT\s*=\s*['\"]?(\d+)['\"]?\s*$", line)
            if m:
                return m.group(1)
    except OSError:
        pass
    return None


def _web(t: Table, where: str, command: str, port: str | None, port_in_env: bool, warn: list[str]) -> None:
    """The web process: the shared socket (fd 3) when its server can take it."""
    if port is None:
        t.set("command", command, f"from {where}")
        warn.append(f"{where}: web has no port (no --port, no PORT in .env): no listen set")
        return
    listen = f"127.0.0.1:{port}"
    if not BINDS_PORT.search(command):
        t.set("command", command, f"from {where}")
        t.set("listen", listen, "from --port / PORT: bound once by oxtui, fd 3 in every instance")
        warn.append(f"{where}: web gets the shared socket as fd 3 (LISTEN_FDS=1): gunicorn adopts it by itself, "
                    "Node needs server.listen({fd: 3})")
        return
    if re.match(r"^(exec\s+)?gunicorn\b", command):
        t.set("command", GUNICORN_BIND.sub("", command), f"from {where}, without its --bind: gunicorn adopts "
                                                         "fd 3 by itself (LISTEN_FDS)")
        t.set("listen", listen, "from --port / PORT: bound once by oxtui, fd 3 in every instance")
        return
    if re.match(r"^(exec\s+)?uvicorn\b", command):
        rewritten = re.sub(r"^(exec\s+)?uvicorn\b", r"\1python3 -m oxtui.drain.uvicorn", UVICORN_ADDR.sub("", command))
        t.set("command", rewritten + " --fd 3", f"from {where}: uvicorn with oxtui's drain, on fd 3")
        t.set("listen", listen, "from --port / PORT: bound once by oxtui, fd 3 in every instance")
        warn.append(f"{where}: uvicorn runs as `python3 -m oxtui.drain.uvicorn` (a lossless reload): oxtui must be "
                    "installed where the app's python3 is")
        return
    # It binds $PORT itself: two instances would fight over the port (EADDRINUSE, a crash loop).
    t.set("command", command, f"from {where}: it binds $PORT itself, so no listen (one instance)")
    if not port_in_env:
        t.set("env", {"PORT": port}, "from --port: the port it binds")
    warn.append(f"{where}: web binds $PORT itself, so it gets no listen and runs 1 instance on port {port}; "
                "to run several on one port, make it take fd 3 (Node: server.listen({fd: 3}); gunicorn: "
                f"drop --bind) and add listen = \"{listen}\"")


def import_procfile(path: Path, port: str | None) -> tuple[list[Table], list[str]]:
    if not path.is_file():
        raise PortError(f"{path}: not found; pass the path of a Procfile")
    warn: list[str] = []
    entries: list[tuple[int, str, str]] = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            raise PortError(f"{path}:{n}: not `name: command` ({line!r}); fix or comment out that line")
        if any(name == m.group(1) for _, name, _ in entries):
            raise PortError(f"{path}:{n}: {m.group(1)!r} is defined twice; give each process its own name")
        entries.append((n, m.group(1), m.group(2).strip()))
    if not entries:
        raise PortError(f"{path}: no `name: command` lines found")
    env_file = path.parent / ".env"
    if port is None and env_file.is_file():
        port = read_port(env_file)
    release = any(name == "release" for _, name, _ in entries)
    tables: list[Table] = []
    for n, name, command in entries:
        t = Table(name)
        where = f"{path.name} line {n}"
        if name == "web":
            _web(t, where, command, port, env_file.is_file() and read_port(env_file) is not None, warn)
        else:
            t.set("command", command, f"from {where}")
        if name == "release":
            t.set("restart", "never", "Heroku's release phase: runs once, to its end, before the others start")
        elif release:
            t.set("depends_on", {"release": "completed_successfully"}, "a failed release starts nothing")
        if env_file.is_file():
            t.set("env_file", ".env", "read at every start; its values are never copied here")
        tables.append(t)
    return tables, warn
