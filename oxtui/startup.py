"""`oxtui startup`: systemd supervises the engine, so the apps come back after a reboot or an engine crash.

The unit runs `oxtui run OXFILE` as `Type=notify`: the engine says READY=1 once every process is
ready (engine/sdnotify.py), pings the watchdog from its own loop, and `systemctl reload` is a rolling
reload of everything. KillMode=mixed: systemd sends SIGTERM to the engine alone, which stops the
workers in order; whatever is left after TimeoutStopSec gets SIGKILL. Every path in the unit is
absolute, PATH is the one of the shell that ran `startup` (nvm's node is on it; systemd's default
PATH does not have it), and the Python is the one running now (a venv's stays a venv's).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .config import Config
from .engine.sdnotify import READY_GRACE
from .format import hint

WATCHDOG_SEC = 60          # the loop pings every 30 s; a loop stuck longer than this gets the engine restarted
STOP_MARGIN = 15           # on top of the longest stop_timeout: the engine's own shutdown and the helper's
START_MARGIN = 30


def unit_name(oxfile: Path) -> str:
    folder = oxfile.parent.name or "root"
    name = folder if oxfile.name == "oxfile.toml" else f"{folder}-{oxfile.stem}"
    return "oxtui-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "app") + ".service"


def _quote(arg: str) -> str:
    """One word of an Exec= line: systemd splits on spaces, expands $ and % specifiers."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.search(r'[\s"\'\\;]', arg) or not arg:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def _env(key: str, value: str) -> str:
    return "Environment=" + _quote(f"{key}={value}")


def start_timeout(config: Config) -> int:
    """Long enough for READY=1 (sent at the latest READY_GRACE after the longest ready timeout) and for
    ExecReload=, which systemd bounds by the same setting: a rolling reload of every instance."""
    ready = [p.ready.timeout if p.ready is not None else 1.0 for p in config.processes]
    startup = max(ready, default=1.0) + READY_GRACE
    reload = sum((r + 2.0) * max(p.instances, 1) for p, r in zip(config.processes, ready))
    return int(max(startup, reload)) + START_MARGIN


def unit_text(config: Config, user: str | None, user_unit: bool) -> str:
    py = os.path.abspath(sys.executable)   # not resolve(): a venv's python is a symlink that must stay one
    oxfile = str(config.path)
    run = " ".join(_quote(a) for a in (py, "-P", "-m", "oxtui", "run", oxfile))
    reload = " ".join(_quote(a) for a in (py, "-P", "-m", "oxtui", "reload", "all", "-c", oxfile))
    lines = [
        f"# Written by `oxtui startup` for {oxfile}.",
        f"# Remove it with: {sys.executable} -m oxtui startup --remove{' --user' if user_unit else ''} {oxfile}",
        "[Unit]",
        f"Description=oxtui engine for {config.path.parent}".replace("%", "%%"),
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={run}",
        f"ExecReload={reload}",
        "KillMode=mixed",
        f"TimeoutStartSec={start_timeout(config)}",
        f"TimeoutStopSec={int(config.longest_stop) + STOP_MARGIN}",
        "Restart=on-failure",
        "RestartSec=2",
        f"WatchdogSec={WATCHDOG_SEC}",
        f"WorkingDirectory={str(config.path.parent).replace('%', '%%')}",   # the rest of the line, unquoted
        _env("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")),
    ]
    if user:
        lines.append(f"User={user}")
    lines += ["", "[Install]", f"WantedBy={'default.target' if user_unit else 'multi-user.target'}", ""]
    return "\n".join(lines)


def unit_dir(user_unit: bool) -> Path:
    if user_unit:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "systemd" / "user"
    return Path("/etc/systemd/system")


def startup(config: Config, user: bool = False, print_only: bool = False, remove: bool = False) -> int:
    name = unit_name(config.path)
    run_as = None
    if not user and os.getuid() == 0:
        sudo_user = os.environ.get("SUDO_USER")
        run_as = sudo_user if sudo_user and sudo_user != "root" else None
    text = unit_text(config, run_as, user)
    if print_only:
        sys.stdout.write(text)
        return 0
    if not user and os.getuid() != 0:
        print(f"oxtui startup: a system unit needs root; run `sudo {sys.executable} -m oxtui startup {config.path}` "
              f"(the unit then runs as you), or add --user for a unit of your own", file=sys.stderr)
        return 1
    path = unit_dir(user) / name
    ctl = ["systemctl", "--user"] if user else ["systemctl"]
    if remove:
        return _remove(path, name, ctl)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        print(f"oxtui startup: cannot write {path} ({e.strerror})", file=sys.stderr)
        return 1
    who = f" as {run_as}" if run_as else (" as root" if os.getuid() == 0 and not user else "")
    print(f"wrote {path}: runs {config.path}{who}")
    if run_as is None and os.getuid() == 0 and not user:
        print("note: the apps will run as root; run `sudo oxtui startup` from your own account to run them as you")
    steps = [ctl + ["daemon-reload"], ctl + ["enable", "--now", name]]
    running = _running_engine(config.path)
    if running:
        steps[1] = ctl + ["enable", name]
    if _can_run(user) and all(_run(cmd) for cmd in steps):
        if running:
            print(f"an engine already runs for {config.path} (pid {running}); hand it to systemd with: "
                  f"`{hint('down', config.path)} && {' '.join(ctl)} start {name}`")
        else:
            print(f"{name} is enabled and started; it starts on every boot")
    else:
        print("systemd is not running here (or not reachable), so nothing was enabled. Run:")
        for cmd in steps:
            print("  " + ("sudo " if not user and os.getuid() != 0 else "") + " ".join(cmd))
    if user:
        print(f"user units stop at logout unless lingering is on: `sudo loginctl enable-linger {_me()}`")
    journal = "journalctl --user -u" if user else "journalctl -u"
    print(f"follow it: `{journal} {name} -f`, `{hint('status', config.path)}`, `oxtui` (attaches from any folder)")
    print(f"remove it: `oxtui startup --remove{' --user' if user else ''} {config.path}`")
    return 0


def _remove(path: Path, name: str, ctl: list[str]) -> int:
    if not path.exists():
        print(f"oxtui startup: {path} does not exist; nothing to remove", file=sys.stderr)
        return 1
    if _can_run(ctl[-1] == "--user"):
        _run(ctl + ["disable", "--now", name])
    path.unlink()
    if _can_run(ctl[-1] == "--user"):
        _run(ctl + ["daemon-reload"])
        print(f"stopped, disabled and removed {name}")
    else:
        print(f"removed {path}; systemd is not running here, so nothing else was needed")
    return 0


def _can_run(user: bool) -> bool:
    if shutil.which("systemctl") is None or not os.path.isdir("/run/systemd/system"):
        return False
    return not user or bool(os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("DBUS_SESSION_BUS_ADDRESS"))


def _run(cmd: list[str]) -> bool:
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(f"ran: {' '.join(cmd)}" + ("" if r.returncode == 0 else f" (failed: {r.stderr.strip()})"))
    return r.returncode == 0


def _running_engine(oxfile: Path) -> int | None:
    """The pid of an engine for this oxfile that systemd does not run, if one runs."""
    from .client import status_of
    snap = status_of(oxfile)
    return None if snap is None or snap.get("engine", {}).get("systemd") else snap["engine_pid"]


def _me() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name
