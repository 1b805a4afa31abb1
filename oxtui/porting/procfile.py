"""`oxtui import procfile FILE`: a Procfile (`name: command` per line) into an oxfile."""

from __future__ import annotations

import re
from pathlib import Path

from . import PortError
from .oxfile_out import Table

LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")


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


def import_procfile(path: Path, port: str | None) -> tuple[list[Table], list[str]]:
    if not path.is_file():
        raise PortError(f"{path}: not found; pass the path of a Procfile")
    warn: list[str] = []
    tables: list[Table] = []
    env_file = path.parent / ".env"
    if port is None and env_file.is_file():
        port = read_port(env_file)
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        if not m:
            raise PortError(f"{path}:{n}: not `name: command` ({line!r}); fix or comment out that line")
        name, command = m.group(1), m.group(2).strip()
        if any(t.name == name for t in tables):
            raise PortError(f"{path}:{n}: {name!r} is defined twice; give each process its own name")
        t = Table(name)
        t.set("command", command, f"from {path.name} line {n}")
        if name == "web":
            if port is not None:
                t.set("listen", f"127.0.0.1:{port}", "from --port / PORT: bound once by oxtui, fd 3 in every instance")
                if "$PORT" in command or "${PORT}" in command:
                    warn.append(f"{path}:{n}: web binds $PORT itself; oxtui sets PORT but several instances share "
                                "the port only through fd 3 (gunicorn adopts it; Node: server.listen({fd: 3}))")
            else:
                warn.append(f"{path}:{n}: web has no port (no --port, no PORT in .env): no listen set")
        tables.append(t)
    if not tables:
        raise PortError(f"{path}: no `name: command` lines found")
    if env_file.is_file():
        warn.append(f"{env_file}: oxtui has no env_file key yet, so its variables were not copied (values never "
                    "are); load them in the command (`set -a; . ./.env; exec ...`) or put them under env")
    return tables, warn
