"""Finding engines from any folder: `oxtui ls`, and which oxfile a verb means when none is named.

Every engine of a user has a socket in that user's runtime folder (runtime.py), named from its
oxfile's path; asking it for its status gives the rest. A socket nobody answers on whose lock is
free is left over from a killed engine: it is removed, never listed as live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..format import count_text, older
from ..protocol import running_count
from ..runtime import all_dirs, lock_is_held, read_lock
from .connection import Client, ControlError, NoEngine

DEFAULT_OXFILE = "oxfile.toml"


class Ambiguous(Exception):
    """Several engines run and nothing says which one is meant (exit code 2)."""


def engines(timeout: float = 2.0) -> list[dict[str, Any]]:
    """Every engine this user can see, each as `oxtui ls --json` prints it."""
    found = []
    for folder in all_dirs():
        try:
            socks = sorted(folder.glob("*.sock"))
        except OSError:
            continue
        for sock in socks:
            entry = _ask(sock, timeout)
            if entry is not None:
                found.append(entry)
    return found


def _ask(sock: Path, timeout: float) -> dict[str, Any] | None:
    lock = sock.with_suffix(".lock")
    try:
        with Client(None, timeout=timeout, path=sock) as c:
            snap = c.call({"cmd": "status"})
    except NoEngine:
        if not lock_is_held(lock):
            try:
                sock.unlink()        # its engine is gone (SIGKILL, a crash): clean up, do not list
            except OSError:
                pass
            return None
        snap = None
    except (ControlError, OSError, ValueError):
        snap = None
    if snap is None:
        if not lock_is_held(lock):
            return None
        pid, oxfile = read_lock(lock)
        return {"oxfile": oxfile, "pid": int(pid) if pid.isdigit() else None, "answering": False,
                "socket": str(sock), "owner": _owner(sock)}
    eng = snap.get("engine", {})
    return {
        "oxfile": snap["oxfile"], "pid": snap["engine_pid"], "answering": True,
        "version": eng.get("version", "0.1.0"), "older": older(eng.get("version", "0.1.0")),
        "uptime_s": eng.get("uptime_s"), "started_at": eng.get("started_at"),
        "systemd": bool(eng.get("systemd")), "unit": eng.get("unit"),
        "socket": str(sock), "owner": _owner(sock),
        "processes": [{"name": p["name"], "instances": p["instances"],
                       "oxfile_instances": p.get("oxfile_instances", p["instances"]),
                       "running": running_count(p), "task": bool(p.get("task")),
                       "summary": count_text(p, "").strip()}
                      for p in snap["processes"]],
    }


def sockets_of(oxfile: Path) -> list[Path]:
    """Where the control socket of this oxfile's engine is: this user's folder, or for root any user's
    (an engine a `User=` unit runs as someone else); where a Client looks (runtime.socket_paths)."""
    from ..runtime import socket_paths
    return [sock for sock in socket_paths(oxfile) if sock.exists()]


def _owner(path: Path) -> str:
    try:
        import pwd
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, OSError):
        return "?"


def resolve(given: str | None) -> Path:
    """The oxfile a verb is about: the one named (a folder means its oxfile.toml), else ./oxfile.toml,
    else the one engine this user runs. Raises Ambiguous when several run."""
    if given:
        p = Path(given).expanduser()
        if p.is_dir():
            p = p / DEFAULT_OXFILE
        return p.resolve()
    local = Path(DEFAULT_OXFILE)
    if local.exists():
        return local.resolve()
    live = [e for e in engines() if e["oxfile"]]
    if len(live) == 1:
        return Path(live[0]["oxfile"])
    if len(live) > 1:
        lines = [f"  {e['oxfile']}  (pid {e['pid']})" for e in live]
        raise Ambiguous(f"no ./{DEFAULT_OXFILE} here and {len(live)} engines are running; name one with -c:\n"
                        + "\n".join(lines))
    return local.resolve()

