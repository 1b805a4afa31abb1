"""`oxtui startup`: systemd supervises the engine, so the apps come back after a reboot or an engine crash.

The unit runs `oxtui run OXFILE` as `Type=notify`: the engine says READY=1 once every process is
ready (observers/sdnotify.py), pings the watchdog from its own loop, and `systemctl reload` is a
rolling reload of everything. KillMode=mixed: systemd sends SIGTERM to the engine alone, which stops
the workers in order; whatever is left after TimeoutStopSec gets SIGKILL. A bad oxfile (exit 2) is not
retried: `RestartPreventExitStatus=2`. Every path in the unit is absolute, PATH is the one of the shell
that ran `startup` (nvm's node is on it; systemd's default PATH does not have it), and the Python is the
one running now (a venv's stays a venv's).

When systemd refuses or fails the start, `startup` says why (systemctl's answer and the unit's last
journal lines), stops and disables the unit so that it does not restart in a loop, and exits 1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..format import hint
from ..observers.sdnotify import ready_deadline
from ..oxfile.config import Config
from ..porting.unitfile import environment, exec_word, plain

WATCHDOG_SEC = 60          # the loop pings every 30 s; a loop stuck longer than this gets the engine restarted
STOP_MARGIN = 15           # on top of the longest stop_timeout: the engine's own shutdown and the helper's
START_MARGIN = 30
BAD_CONFIG_EXIT = 2        # `oxtui run` with an invalid oxfile: retrying cannot help
JOURNAL_LINES = 15


def unit_name(oxfile: Path) -> str:
    folder = oxfile.parent.name or "root"
    name = folder if oxfile.name == "oxfile.toml" else f"{folder}-{oxfile.stem}"
    return "oxtui-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "app") + ".service"


def start_timeout(config: Config) -> int:
    """Long enough for READY=1 (the engine's own deadline for it) and for ExecReload=, which systemd
    bounds by the same setting: a rolling reload of every instance."""
    ready = [p.ready.timeout if p.ready is not None else 1.0 for p in config.processes]
    startup = ready_deadline(config)
    reload = sum((r + 2.0) * max(p.instances, 1) for p, r in zip(config.processes, ready))
    return int(max(startup, reload)) + START_MARGIN


def systemd_version() -> int:
    """The installed systemd's version (0 when it cannot be told): ExitType= needs 250."""
    import subprocess
    try:
        out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
        return int(out.split()[1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return 0


def unit_dir(user_unit: bool) -> Path:
    if user_unit:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "systemd" / "user"
    return Path("/etc/systemd/system")


def unit_text(config: Config, user: str | None, user_unit: bool) -> str:
    py = os.path.abspath(sys.executable)   # not resolve(): a venv's python is a symlink that must stay one
    oxfile = str(config.path)
    run = " ".join(exec_word(a) for a in (py, "-P", "-m", "oxtui", "run", oxfile))
    # --quiet: the engine logs every step to the journal already; the client would say each one twice
    reload = " ".join(exec_word(a) for a in (py, "-P", "-m", "oxtui", "reload", "all", "--quiet", "-c", oxfile))
    where = unit_dir(user_unit) / unit_name(config.path)
    lines = [
        f"# Written by `oxtui startup{' --user' if user_unit else ''}` for {oxfile} to {where}.",
        f"# Remove it with: {sys.executable} -m oxtui startup --remove{' --user' if user_unit else ''} {oxfile}",
        "[Unit]",
        plain(f"Description=oxtui engine for {config.path.parent}"),
        # a user manager has no network-online.target: waiting for it would be waiting for nothing
        *([] if user_unit else ["After=network-online.target", "Wants=network-online.target"]),
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=notify",
        # The keeper (helper/keeper.py) outlives the engine: with ExitType=cgroup the unit stays active
        # while its cgroup holds the workers, and the new engine the keeper starts names itself MAINPID=
        # (NotifyAccess=all: it is the keeper's child, not systemd's). Without it (systemd < 250), an
        # engine's death ends the unit as before.
        "NotifyAccess=all",
        *(["ExitType=cgroup"] if systemd_version() >= 250 else []),
        f"ExecStart={run}",
        f"ExecReload={reload}",
        "KillMode=mixed",
        f"TimeoutStartSec={start_timeout(config)}",
        f"TimeoutStopSec={int(config.longest_stop) + STOP_MARGIN}",
        "Restart=on-failure",
        "RestartSec=2",
        f"RestartPreventExitStatus={BAD_CONFIG_EXIT}",
        f"WatchdogSec={WATCHDOG_SEC}",
        plain(f"WorkingDirectory={config.path.parent}"),   # the rest of the line, unquoted
        environment("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")),
    ]
    if user:
        lines.append(f"User={user}")
    lines += ["", "[Install]", f"WantedBy={'default.target' if user_unit else 'multi-user.target'}", ""]
    return "\n".join(lines)


class Systemctl:
    """systemctl (and journalctl) for the system manager or this user's manager."""

    def __init__(self, user: bool):
        self.user = user
        self.ctl = ["systemctl", "--user"] if user else ["systemctl"]
        self.env = dict(os.environ)
        if user and not self.env.get("XDG_RUNTIME_DIR"):
            # su/runuser/sudo -u give no login session: the user manager's bus is still at its usual place
            runtime = f"/run/user/{os.getuid()}"
            if os.path.isdir(runtime):
                self.env["XDG_RUNTIME_DIR"] = runtime

    def reachable(self) -> bool:
        if shutil.which("systemctl") is None or not os.path.isdir("/run/systemd/system"):
            return False
        if not self.user:
            return True
        r = subprocess.run(self.ctl + ["show-environment"], capture_output=True, text=True, env=self.env, check=False)
        return r.returncode == 0

    def run(self, *args: str, say: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.ctl + list(args), capture_output=True, text=True, env=self.env, check=False)
        if say:
            print(f"ran: {' '.join(self.ctl + list(args))}" + ("" if r.returncode == 0 else " (failed)"))
        return r

    def journal_command(self, name: str) -> list[str]:
        return ["journalctl", "--user" if self.user else "", "-u", name]

    def journal(self, name: str, n: int = JOURNAL_LINES) -> list[str]:
        cmd = [w for w in self.journal_command(name) if w] + ["-n", str(n), "--no-pager", "-o", "short-precise"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=False)
        return [line for line in r.stdout.splitlines() if line.strip() and not line.startswith("-- ")]


def startup(config: Config, user: bool = False, print_only: bool = False, remove: bool = False) -> int:
    name = unit_name(config.path)
    run_as = None
    if not user and os.getuid() == 0:
        sudo_user = os.environ.get("SUDO_USER")
        run_as = sudo_user if sudo_user and sudo_user != "root" else None
    text = unit_text(config, run_as, user)
    path = unit_dir(user) / name
    if print_only:
        sys.stdout.write(text)
        print(f"(oxtui startup would write this to {path}; nothing was changed)", file=sys.stderr)
        return 0
    if not user and os.getuid() != 0:
        print(f"oxtui startup: a system unit needs root; run `sudo {sys.executable} -m oxtui startup {config.path}` "
              f"(the unit then runs as you), or add --user for a unit of your own", file=sys.stderr)
        return 1
    sd = Systemctl(user)
    if remove:
        return _remove(path, name, sd)
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
    if not sd.reachable():
        print(f"systemd{' (your user manager)' if user else ''} is not running here or not reachable, so nothing "
              "was enabled. Where it runs:")
        for cmd in (["daemon-reload"], ["enable", "--now", name]):
            print("  " + ("sudo " if not user and os.getuid() != 0 else "") + " ".join(sd.ctl + cmd))
        _tell_more(config, name, user)
        return 0
    for cmd in (["daemon-reload"], ["enable", name]):
        r = sd.run(*cmd)
        if r.returncode != 0:
            print(f"oxtui startup: systemd refused `{' '.join(sd.ctl + cmd)}`: {_first_line(r.stderr)}",
                  file=sys.stderr)
            return 1
    other = _engine_outside_systemd(config.path)
    if other is not None:
        print(f"an engine already runs for {config.path} (pid {other['pid']}, user {other['owner']}), outside "
              f"systemd: {name} is enabled for the next boot but not started now (it would find the oxfile "
              f"locked). Hand the apps to systemd with `{hint('down', config.path)} && "
              f"{' '.join(sd.ctl)} start {name}`")
        _tell_more(config, name, user)
        return 0
    r = sd.run("start", name)
    if r.returncode != 0:
        return _failed(sd, name, config, r.stderr)
    print(f"{name} is enabled and started (active); it starts on every boot")
    _tell_more(config, name, user)
    return _apps_that_failed(config)


def _apps_that_failed(config: Config) -> int:
    """systemd started the engine, but a process may not have come up (READY=1 goes out once every
    instance has settled, errored included): say which and why, as `oxtui up` does."""
    from ..client.connection import status_of
    from .daemon import failures
    snap = status_of(config.path)    # root: any user's engine too (a `User=` unit's)
    problems = failures(snap) if snap is not None else []
    for line in problems:
        print(f"oxtui startup: {line}", file=sys.stderr)
    if problems:
        print(f"oxtui startup: the engine keeps running the rest; `{hint('logs', config.path)}` shows why",
              file=sys.stderr)
    return 1 if problems else 0


def _failed(sd: Systemctl, name: str, config: Config, stderr: str) -> int:
    """The start failed: say why, and leave no unit restarting in a loop or starting at the next boot."""
    print(f"oxtui startup: systemd could not start {name}: {_first_line(stderr)}", file=sys.stderr)
    journal = sd.journal(name)
    if journal:
        print("the last lines of its journal:", file=sys.stderr)
        for line in journal:
            print(f"  {line}", file=sys.stderr)
    sd.run("disable", "--now", name, say=False)
    sd.run("reset-failed", name, say=False)
    more = " ".join(w for w in sd.journal_command(name) if w)
    print(f"{name} is stopped and disabled (the unit file stays). See more with `{more} -e`; fix the cause, then "
          f"run `oxtui startup{' --user' if sd.user else ''} {config.path}` again", file=sys.stderr)
    return 1


def _tell_more(config: Config, name: str, user: bool) -> None:
    if user:
        print(f"user units stop at logout unless lingering is on: `sudo loginctl enable-linger {_me()}`")
    journal = "journalctl --user -u" if user else "journalctl -u"
    print(f"follow it: `{journal} {name} -f`, `{hint('status', config.path)}`, `oxtui` (attaches from any folder)")
    print(f"remove it: `oxtui startup --remove{' --user' if user else ''} {config.path}`")


def _remove(path: Path, name: str, sd: Systemctl) -> int:
    if not path.exists():
        print(f"oxtui startup: {path} does not exist; nothing to remove", file=sys.stderr)
        return 1
    reachable = sd.reachable()
    if reachable:
        sd.run("disable", "--now", name)
    path.unlink()
    if reachable:
        sd.run("daemon-reload")
        print(f"stopped, disabled and removed {name}")
    else:
        print(f"removed {path}; systemd is not running here, so nothing else was needed")
    return 0


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no reason given")


def _engine_outside_systemd(oxfile: Path) -> dict | None:
    """An engine for this oxfile that systemd does not run: started by `oxtui up` or a TUI, possibly by
    another user (root looks into every user's runtime folder, which is where `sudo startup` runs)."""
    from ..client.discover import engines
    for e in engines():
        if e.get("oxfile") == str(oxfile) and not e.get("systemd"):
            return e
    return None


def _me() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name
