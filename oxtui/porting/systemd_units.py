"""`oxtui export systemd -o DIR`: plain systemd units, for hosts that run without oxtui.

Per process: a template service NAME@.service (one unit per instance, %i = the slot), a NAME.target
that wants instances 0..N-1, and for a process with `listen` a NAME.socket whose one listening socket
every instance gets as fd 3 (`Sockets=`), the same LISTEN_FDS convention oxtui uses. systemd has no
rolling reload: `systemctl restart NAME@0 ...` one at a time is the nearest thing (said in docs/kubernetes.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..oxfile.config import Config, ProcessConfig
from .unitfile import environment, exec_word, plain


def _env(key: str, value: str) -> str:
    return environment(key, value).replace("%%i", "%i")


def _name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in name)


def units_for(p: ProcessConfig, oxfile: Path, user: str | None, path_env: str) -> dict[str, str]:
    n = _name(p.name)
    out: dict[str, str] = {}
    socket_line = []
    if p.listen is not None:
        host, port = p.listen
        addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        out[f"{n}.socket"] = "\n".join([
            f"# Made by `oxtui export systemd` from {oxfile} ([processes.{p.name}] listen).",
            "[Unit]",
            f"Description={n}: the shared listening socket, fd 3 in every instance",
            "",
            "[Socket]",
            f"ListenStream={addr}",
            "Backlog=4096",
            "ReusePort=no",
            f"Service={n}@0.service",
            "",
            "[Install]",
            "WantedBy=sockets.target",
            "",
        ])
        socket_line = [f"Sockets={n}.socket"]
    restart = {"always": "always", "on-failure": "on-failure", "never": "no"}[p.restart]
    # depends_on: a dependency's target comes first (After=). "completed_successfully" must succeed
    # (Requires=: a failed task fails its target, and what requires it does not start); the rest only
    # want it there. A task's target is reached once its oneshot instances have run (see the target).
    required = " ".join(f"{_name(d)}.target" for d, c in p.depends_on if c == "completed_successfully")
    wanted = " ".join(f"{_name(d)}.target" for d, c in p.depends_on if c != "completed_successfully")
    deps = " ".join(f"{_name(d)}.target" for d, _ in p.depends_on)
    service = [
        f"# Made by `oxtui export systemd` from {oxfile}: [processes.{p.name}]; one unit per instance (%i).",
        "[Unit]",
        f"Description={n} instance %i",
        f"PartOf={n}.target",
        "After=network.target" + (f" {n}.socket" if socket_line else ""),
        *([f"Requires={n}.socket"] if socket_line else []),
        *([f"After={deps}"] if deps else []),
        *([f"Requires={required}"] if required else []),
        *([f"Wants={wanted}"] if wanted else []),
        f"StartLimitBurst={p.max_restarts}",
        f"StartLimitIntervalSec={math.ceil(p.restart_window)}",
        "",
        "[Service]",
        "Type=oneshot" if p.is_task else "Type=exec",
        *(["RemainAfterExit=yes"] if p.is_task and p.schedule is None else []),
        *([f"User={user}"] if user else []),
        *([f"Group={p.run_as.gid}"] if p.run_as else []),
        f"ExecStart=/bin/sh -c {exec_word('exec ' + p.command)}",
        plain(f"WorkingDirectory={p.cwd}"),
        # the PATH of the shell that exported: systemd's own has no venv, nvm or ~/.local/bin
        _env("PATH", path_env),
        *[_env(k, v) for k, v in p.env],
        _env("OXTUI_PROCESS", p.name),
        "Environment=OXTUI_INSTANCE=%i NODE_APP_INSTANCE=%i PYTHONUNBUFFERED=1",
        *socket_line,
        f"Restart={'no' if p.is_task and p.restart == 'always' else restart}",
        f"RestartSec={max(p.backoff, 0.1):g}",
        f"KillSignal={p.stop_signal.name}",
        f"TimeoutStopSec={math.ceil(p.stop_timeout)}",
        *([f"MemoryMax={p.max_memory}"] if p.max_memory else []),
        "",
    ]
    out[f"{n}@.service"] = "\n".join(service)
    sched = p.schedule if p.schedule is not None and p.schedule.every is not None else None
    ticks = sched is not None
    if sched is not None and p.is_task:
        # One timer per instance (NAME@.timer starts NAME@%i.service): a timer must start a unit that
        # ends between runs. Pointed at the target, as before, it ran once: a target stays active, and
        # starting an active unit does nothing. AccuracySec: systemd's default of a minute would run an
        # `every = "5s"` task about once a minute. A tick while the last run goes on is merged into it,
        # as oxtui skips it.
        out[f"{n}@.timer"] = _timer(p, oxfile, f"{n}@%i.service", f"instance %i: {sched.text}")
    elif sched is not None:
        # A long-running process: oxtui reloads it at each tick. systemd has no rolling reload, so its
        # timer restarts every instance through a oneshot (starting a running service would do nothing).
        out[f"{n}-tick.timer"] = _timer(p, oxfile, f"{n}-tick.service", f"restart at each tick, {sched.text}")
        out[f"{n}-tick.service"] = "\n".join([
            f"# Made by `oxtui export systemd` from {oxfile}: [processes.{p.name}.schedule] every.",
            "[Unit]",
            f"Description={n}: restart every instance ({sched.text})",
            "",
            "[Service]",
            "Type=oneshot",
            "ExecStart=/bin/systemctl restart " + " ".join(f"{n}@{i}.service" for i in range(p.instances)),
            "",
        ])
    wants = " ".join(f"{n}@{i}.service" for i in range(p.instances))
    if ticks and p.is_task:         # a scheduled task first runs at its first tick, as in oxtui
        order = [f"Wants={' '.join(f'{n}@{i}.timer' for i in range(p.instances))}"] if p.instances else []
    else:
        # after its instances: a task's target is reached once they have run (a oneshot is "started" then),
        # and a task that must succeed for others fails its target when it fails
        order = [f"After={wants}", f"{'Requires' if p.is_task else 'Wants'}={wants}"] if wants else []
        order += [f"Wants={n}-tick.timer"] if ticks else []
    out[f"{n}.target"] = "\n".join([
        f"# Made by `oxtui export systemd` from {oxfile}: {p.instances} instance(s) of {n}.",
        "[Unit]",
        f"Description={n}: {p.instances} instance(s)",
        *order,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])
    return out


def _timer(p: ProcessConfig, oxfile: Path, unit: str, what: str) -> str:
    every = f"{p.schedule.every:g}s" if p.schedule is not None else ""
    return "\n".join([
        f"# Made by `oxtui export systemd` from {oxfile}: [processes.{p.name}.schedule] every.",
        "[Unit]",
        f"Description={_name(p.name)} {what}",
        "",
        "[Timer]",
        f"OnActiveSec={every}",
        f"OnUnitActiveSec={every}",
        "AccuracySec=100ms",
        f"Unit={unit}",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])


def export_systemd(config: Config) -> tuple[dict[str, str], list[str]]:
    files: dict[str, str] = {}
    warn: list[str] = []
    path_env = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    me = _exporting_user()
    for p in config.processes:
        user = p.run_as.user if p.run_as else me
        files.update(units_for(p, config.path, user, path_env))
        if user is None:
            warn.append(f"{p.name}: no User=, so it runs as root: set user in the oxfile, or export as the user "
                        "it should run as (or through sudo)")
        if p.ready is not None:
            warn.append(f"{p.name}: [ready] is not carried over: systemd counts an instance as started once it "
                        "runs (Type=exec); the app may send READY=1 itself with Type=notify")
        if p.health is not None:
            warn.append(f"{p.name}: [health] is not carried over: systemd has no HTTP/TCP check (use WatchdogSec= "
                        "with sd_notify, or a timer)")
        if p.watch:
            warn.append(f"{p.name}: watch is not carried over (a .path unit could restart it)")
        if p.schedule is not None and p.schedule.cron:
            warn.append(f"{p.name}: cron {p.schedule.cron!r} is not carried over: write it as a .timer with "
                        "OnCalendar= (systemd's calendar syntax differs from cron's)")
        if p.schedule is not None and not p.is_task:
            warn.append(f"{p.name}: a schedule on a long-running process reloads it in oxtui, one instance at a time; "
                        f"{_name(p.name)}-tick.timer restarts every instance at once")
        if p.backoff_max != p.backoff:
            warn.append(f"{p.name}: backoff grows in oxtui; systemd waits RestartSec={max(p.backoff, 0.1):g} every time")
    return files, warn


def _exporting_user() -> str | None:
    """Who ran the export (through sudo: who ran sudo); None for plain root."""
    import pwd
    sudo = os.environ.get("SUDO_USER")
    if os.geteuid() == 0:
        return sudo if sudo and sudo != "root" else None
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None
