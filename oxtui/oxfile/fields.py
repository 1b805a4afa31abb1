"""Every key an oxfile may have: its kind, default and meaning, in one table.

config.py validates with it (allowed keys, kinds, defaults) and schema.py turns it into the JSON
Schema that editors use, so `oxtui check` and an editor's squiggles cannot disagree on a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    kind: str          # str bool duration posint strlist env size signal address instances stdout table
    doc: str
    default: Any = None


PROCESS: dict[str, Field] = {
    "command": Field("str", "the command; run with /bin/sh -c when it has shell syntax, exec'd directly otherwise"),
    "instances": Field("instances", 'how many instances: an integer >= 0, or "max" (one per usable CPU)', 1),
    "restart": Field("restart", 'when an exited instance starts again: "always", "on-failure" (not after exit 0), '
                     '"never" (a one-shot task: completed or failed)', "always"),
    "restart_on_exit": Field("bool", 'the older name: true = restart "always", false = "never"'),
    "cwd": Field("str", "working folder, relative to the oxfile's folder"),
    "env": Field("env", "environment variables for every instance", {}),
    "env_file": Field("paths", "a .env file or a list of them (relative to the oxfile), read at every start and "
                      "reload; `env` wins over them", []),
    "listen": Field("address", 'HOST:PORT bound once by oxtui and handed to every instance as fd 3'),
    "stop_signal": Field("signal", "the signal that asks an instance to stop", "SIGTERM"),
    "stop_timeout": Field("duration", "seconds between stop_signal and SIGKILL to the process group", 10.0),
    "max_memory": Field("size", 'restart an instance whose process tree RSS passes this ("512M", "1G", bytes)'),
    "ready": Field("table", "when a new instance counts as ready"),
    "health": Field("table", "liveness check while running"),
    "backoff": Field("duration", "the first restart delay after the immediate one; it doubles", 0.1),
    "backoff_max": Field("duration", "the restart delay never grows past this", 15.0),
    "max_restarts": Field("posint", "this many exits within restart_window is a crash loop (errored)", 10),
    "restart_window": Field("duration", "seconds over which max_restarts counts", 60.0),
    "watch": Field("strlist", "files or globs (relative to cwd) whose change triggers a rolling reload", []),
    "ignore": Field("strlist", "globs that watch leaves out", []),
    "watch_debounce": Field("duration", "seconds of quiet before a watched change reloads", 0.5),
    "depends_on": Field("depends", 'processes that must get somewhere first: { db = "ready", migrate = '
                        '"completed_successfully" } (started, ready, healthy, completed, completed_successfully); '
                        "until then the instances are waiting", {}),
    "user": Field("ident", "run the instances as this user (a name or a uid; the engine must run as root)"),
    "group": Field("ident", "run the instances with this group (a name or a gid; default: the user's own)"),
    "schedule": Field("table", "run a task on a timetable (cron or every), or reload a server on one"),
    "reload": Field("table", "how a rolling reload replaces instances"),
    "notify": Field("table", "this process's own [notify] settings (override the top-level table's keys)"),
    "disabled": Field("bool", "not started with the engine (`oxtui start NAME` starts it)", False),
}

NOTIFY_EVENTS = ("crash", "errored", "oom", "max_memory", "health", "reload_done", "reload_failed", "start", "stop",
                 "logs")
NOTIFY_DEFAULT = ["crash", "errored", "oom", "max_memory", "health", "reload_failed", "logs"]

NOTIFY: dict[str, Field] = {
    "webhook": Field("str", 'a URL that gets each event as a JSON POST (with a Slack/Discord "text"/"content")'),
    "command": Field("str", "a shell command run per event: OXTUI_EVENT, OXTUI_PROCESS, ... in its environment, "
                     "the event's JSON on stdin"),
    "events": Field("events", "which events are sent: " + ", ".join(NOTIFY_EVENTS), NOTIFY_DEFAULT),
    "coalesce": Field("duration", "seconds over which repeats of one event of one process become one summary",
                      10.0),
}

METRICS: dict[str, Field] = {
    "listen": Field("address", 'serve Prometheus /metrics on HOST:PORT, e.g. "127.0.0.1:9464"'),
    "public": Field("bool", "allow a listen address that is not loopback (anyone who reaches it reads the metrics)",
                    False),
}

SCHEDULE: dict[str, Field] = {
    "cron": Field("str", 'a cron expression, e.g. "*/10 * * * *" (minute hour day month weekday)'),
    "every": Field("every", 'an interval: seconds, or "30s", "10m", "2h", "1d"'),
    "timezone": Field("str", 'the time zone cron reads its hours in, e.g. "Europe/Paris" (default: the machine\'s)'),
}

RELOAD: dict[str, Field] = {
    "max_surge": Field("surge", 'replacements started at once: a number, or a percentage of instances like "50%" '
                       "(default: half the instances, at least 2)"),
    "min_ready": Field("duration", "seconds a replacement must stay up and ready before its old instance stops",
                       0.5),
}

READY: dict[str, Field] = {
    "log": Field("str", "a regex matched against each instance's own output"),
    "http": Field("str", 'a path like "/health": a canary of the new release must answer 2xx before a reload goes on'),
    "timeout": Field("duration", "not ready by then = failed start", 30.0),
}

HEALTH: dict[str, Field] = {
    "http": Field("str", 'a URL like "http://127.0.0.1:3000/health" that must answer 2xx'),
    "tcp": Field("address", "HOST:PORT that must accept a connection"),
    "cmd": Field("str", "a command that must exit 0"),
    "interval": Field("duration", "seconds between checks", 10.0),
    "failures": Field("posint", "consecutive failures before the instance is restarted", 3),
    "timeout": Field("duration", "seconds one check may take", 5.0),
}

LOGS: dict[str, Field] = {
    "dir": Field("str", "log folder, relative to the oxfile (default: ~/.local/state/oxtui/logs/...)"),
    "max_size": Field("size", "rotate a log file at this size", 10 * 1024 * 1024),
    "keep": Field("posint", "rotated files kept (api.log.1 ...)", 5),
    "buffer_lines": Field("posint", "recent lines kept in memory per process for the UI and `oxtui logs`", 10_000),
    "stdout": Field("stdout", 'what `oxtui run` prints: "all", "events", or "auto" (events only under systemd)',
                    "auto"),
    "max_age": Field("every", 'also rotate a log file once its first line is this old: "1d" makes a file a day'),
    "compress": Field("bool", "gzip rotated files (api.log.1.gz ...), off the engine's loop", False),
    "journald": Field("bool", "send every line to the journal as an entry of its own (default: under systemd)"),
    "files": Field("bool", "write the log files (false: the journal only; needs journald)", True),
}

DEPLOY: dict[str, Field] = {
    "source": Field("str", "the git repository to deploy from: a URL git can clone, or a path"),
    "ref": Field("str", "what a bare `oxtui deploy` takes: a branch, tag or commit (default: the source's default "
                 "branch)"),
    "build": Field("str", "a shell command run in the new release before any instance starts there, e.g. "
                   '"npm ci && npm run build"'),
    "shared": Field("strlist", 'paths linked from shared/ into every release, e.g. [".env", "uploads"]', []),
    "keep": Field("posint", "releases kept on disk (never the live one nor the one before it)", 5),
}

# The fleet file's [hosts.NAME] (fleet/fleetfile.py): read by the same Table, so its errors read alike.
FLEET_HOST: dict[str, Field] = {
    "ssh": Field("str", "the SSH destination, as `ssh` takes it: user@host, or a Host alias of ~/.ssh/config"),
    "oxtui": Field("str", "the path of oxtui on that host (default: oxtui, found on its PATH)", "oxtui"),
    "ssh_options": Field("strlist", 'more arguments for ssh, e.g. ["-F", "ssh_config"] or ["-i", "~/.ssh/fleet"]', []),
}

TABLES: dict[str, dict[str, Field]] = {"process": PROCESS, "ready": READY, "health": HEALTH, "logs": LOGS,
                                       "schedule": SCHEDULE, "reload": RELOAD, "notify": NOTIFY,
                                       "metrics": METRICS, "deploy": DEPLOY}
STDOUT_MODES = ("auto", "all", "events")
RESTART_MODES = ("always", "on-failure", "never")
CONDITIONS = ("started", "ready", "healthy", "completed", "completed_successfully")
