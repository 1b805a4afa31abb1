"""`oxtui export systemd -o DIR`: plain systemd units, for hosts that run without oxtui.

Per process: a template service NAME@.service (one unit per instance, %i = the slot), a NAME.target
that wants instances 0..N-1, and for a process with `listen` a NAME.socket whose one listening socket
every instance gets as fd 3 (`Sockets=`), the same LISTEN_FDS convention oxtui uses. systemd has no
rolling reload: `systemctl restart NAME@0 ...` one at a time is the nearest thing (said in README).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..config import Config, ProcessConfig
from ..startup import _quote


def _env(key: str, value: str) -> str:
    return "Environment=" + _quote(f"{key}={value}").replace("%%i", "%i")


def _name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in name)


def units_for(p: ProcessConfig, oxfile: Path) -> dict[str, str]:
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
    # depends_on: a dependency's target starts first (After=) and must be there (Wants=); systemd's
    # nearest to "completed_successfully" is a oneshot it orders after.
    deps = " ".join(f"{_name(d)}.target" for d, _ in p.depends_on)
    service = [
        f"# Made by `oxtui export systemd` from {oxfile}: [processes.{p.name}]; one unit per instance (%i).",
        "[Unit]",
        f"Description={n} instance %i",
        f"PartOf={n}.target",
        "After=network.target" + (f" {n}.socket" if socket_line else ""),
        *([f"Requires={n}.socket"] if socket_line else []),
        *([f"After={deps}", f"Wants={deps}"] if deps else []),
        f"StartLimitBurst={p.max_restarts}",
        f"StartLimitIntervalSec={math.ceil(p.restart_window)}",
        "",
        "[Service]",
        "Type=oneshot" if p.is_task else "Type=exec",
        *(["RemainAfterExit=yes"] if p.is_task and p.schedule is None else []),
        *([f"User={p.run_as.user}", f"Group={p.run_as.gid}"] if p.run_as else []),
        f"ExecStart=/bin/sh -c {_quote('exec ' + p.command)}",
        f"WorkingDirectory={str(p.cwd).replace('%', '%%')}",
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
    if p.schedule is not None and p.schedule.every is not None:
        # every: a timer per process that starts the target again (only a oneshot ends between runs)
        out[f"{n}.timer"] = "\n".join([
            f"# Made by `oxtui export systemd` from {oxfile}: [processes.{p.name}.schedule] every.",
            "[Unit]",
            f"Description={n}: {p.schedule.text}",
            "",
            "[Timer]",
            f"OnActiveSec={p.schedule.every:g}s",
            f"OnUnitActiveSec={p.schedule.every:g}s",
            f"Unit={n}.target",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ])
    wants = " ".join(f"{n}@{i}.service" for i in range(p.instances))
    out[f"{n}.target"] = "\n".join([
        f"# Made by `oxtui export systemd` from {oxfile}: {p.instances} instance(s) of {n}.",
        "[Unit]",
        f"Description={n}: {p.instances} instance(s)",
        *([f"Wants={wants}"] if wants else []),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])
    return out


def export_systemd(config: Config) -> tuple[dict[str, str], list[str]]:
    files: dict[str, str] = {}
    warn: list[str] = []
    for p in config.processes:
        files.update(units_for(p, config.path))
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
            warn.append(f"{p.name}: a schedule on a long-running process reloads it in oxtui; its timer restarts it")
        if p.backoff_max != p.backoff:
            warn.append(f"{p.name}: backoff grows in oxtui; systemd waits RestartSec={max(p.backoff, 0.1):g} every time")
    return files, warn
