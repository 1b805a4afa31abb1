"""Load and validate an oxfile.toml into frozen dataclasses (model.py).

Pure logic: no processes, no sockets. Every problem becomes one line that names the file,
the table, the key and what is allowed; all problems are collected so `oxtui check` can
print them at once. What depends on the machine as it is now rather than on the file (programs on
PATH, ports in use, permissions) is preflight.py's, which `oxtui check` adds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from . import fields, limits
from .interpolate import interpolate
from .model import (
    Config,
    ConfigError,
    DeployConfig,
    HealthConfig,
    LogsConfig,
    MetricsConfig,
    NotifyConfig,
    ProcessConfig,
    ReadyConfig,
    ReloadConfig,
    RunAs,
    ScheduleConfig,
)
from .table import Table, closest, restart_mode
from .values import (  # noqa: F401 (API)
    parse_address,
    parse_ident,
    parse_interval,
    parse_signal,
    parse_size,
    parse_surge,
    program_of,
    usable_cpus,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def digest(data: bytes) -> str:
    """What `save` and the engine compare to tell an oxfile edited since it was read."""
    import hashlib
    return hashlib.sha256(data).hexdigest()


def _digest_files(paths: list[Path]) -> str:
    import hashlib
    h = hashlib.sha256()
    for path in paths:
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"\0missing")
    return h.hexdigest() if paths else ""



PROCESS_KEYS = set(fields.PROCESS)
READY_KEYS = set(fields.READY)
TOP_KEYS = {"processes", "logs", "notify", "metrics", "deploy"}


def default_log_dir(oxfile: Path) -> Path:
    import hashlib
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(oxfile).encode()).hexdigest()[:10]
    return state / "oxtui" / "logs" / f"{oxfile.parent.name or 'root'}-{digest}"


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate an oxfile. Raises ConfigError with every problem found."""
    p = Path(path).expanduser()
    file = str(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{file}: not found; pass the path of an oxfile.toml or run from its folder"]) from None
    except OSError as e:
        raise ConfigError([f"{file}: cannot be read ({e.strerror}); check its permissions"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError([f"{file}: not UTF-8 text (byte {e.start}); save it as UTF-8"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{file}: TOML syntax error: {e}; fix the syntax at that line"]) from None
    return dataclasses.replace(from_dict(data, p.resolve(), file), digest=digest(raw))


def from_dict(data: dict[str, Any], oxfile: Path, file: str | None = None) -> Config:
    file = file or str(oxfile)
    errors: list[str] = []
    data = interpolate(data, os.environ, file, errors)
    base = oxfile.parent
    for key in data:
        if key not in TOP_KEYS:
            kind = "table" if isinstance(data[key], dict) else "key"
            errors.append(f"{file}: unknown top-level {kind} {key!r}; allowed: [processes.NAME] tables, [logs], "
                          "[notify], [metrics] and [deploy]")
    procs_raw = data.get("processes", {})
    processes: list[ProcessConfig] = []
    if not isinstance(procs_raw, dict):
        errors.append(f"{file}: 'processes' must be tables like [processes.api]")
        procs_raw = {}
    elif not procs_raw:
        errors.append(f"{file}: no processes defined; add a [processes.NAME] table with a command")
    for name, table in procs_raw.items():
        proc = _process(errors, file, base, name, table, deploying="deploy" in data)
        if proc is not None:
            processes.append(proc)
    seen: dict[tuple[str, int], str] = {}
    for proc in processes:
        if proc.listen and proc.listen[1] != 0:
            if proc.listen in seen:
                errors.append(f"{file}: [processes.{proc.name}] listen: {proc.listen_str} is already used by "
                              f"[processes.{seen[proc.listen]}]; give each process its own address")
            seen[proc.listen] = proc.name
    _check_graph(errors, file, processes)
    logs = _logs(errors, file, base, oxfile, data.get("logs", {}))
    notify = _notify(errors, file, "notify", data.get("notify", {}), None)
    processes = [dataclasses.replace(p, notify=_notify(errors, file, f"processes.{p.name}.notify",
                                                       procs_raw[p.name]["notify"], notify))
                 if "notify" in procs_raw.get(p.name, {}) else p for p in processes]
    metrics = _metrics(errors, file, data.get("metrics", {}))
    deploy = _deploy(errors, file, base, data["deploy"]) if "deploy" in data else None
    warnings: list[str] = []
    limits.check_counts(errors, warnings, file, [(p.name, p.instances) for p in processes])
    if errors:
        raise ConfigError(errors)
    return Config(path=oxfile, processes=tuple(processes), logs=logs, notify=notify, metrics=metrics,
                  deploy=deploy, warnings=tuple(warnings))


def under_current(cwd: Path, base: Path) -> bool:
    """cwd is the deploy's `current` link or a folder under it."""
    return cwd == base / "current" or (base / "current") in cwd.parents


def _deploy(errors: list[str], file: str, base: Path, raw: Any) -> DeployConfig:
    t = Table(errors, file, "deploy", raw, fields.DEPLOY)
    if "source" not in t.data:
        t.error("source", 'is required: the git repository to deploy from, e.g. source = "git@github.com:me/shop.git"')
    shared = tuple(t.get("shared"))
    for path in shared:
        if path.startswith("/") or ".." in Path(path).parts or not path.strip("/"):
            t.error("shared", f"{path!r} must be a path inside the release, like \".env\" or \"public/uploads\"")
    source = t.get("source") or ""
    if source and not ("://" in source or ":" in source.split("/")[0]) and not source.startswith("/"):
        source = str(base / source)      # a path relative to the oxfile
    return DeployConfig(root=base, source=source, ref=t.get("ref"), build=t.get("build"), shared=shared,
                        keep=t.get("keep"))


def _check_graph(errors: list[str], file: str, processes: list[ProcessConfig]) -> None:
    from .graph import find_cycle
    by_name = {p.name: p for p in processes}
    for p in processes:
        for dep, cond in p.depends_on:
            where = f"{file}: [processes.{p.name}] depends_on:"
            other = by_name.get(dep)
            if other is None:
                near = closest(dep, set(by_name) - {p.name})
                errors.append(f"{where} no process named {dep!r}" + (f"; did you mean {near!r}?" if near else "")
                              + f" (processes: {', '.join(by_name)})")
            elif cond.startswith("completed") and not other.is_task:
                errors.append(f"{where} {dep} = {cond!r} needs {dep} to be a task that ends: give [processes.{dep}] "
                              'restart = "never" (or "on-failure"), or wait for "ready"')
            elif cond == "healthy" and other.health is None:
                errors.append(f"{where} {dep} = \"healthy\" needs a [processes.{dep}.health] check; add one or "
                              'wait for "ready"')
    cycle = find_cycle({p.name: [d for d, _ in p.depends_on] for p in processes})
    if cycle:
        errors.append(f"{file}: depends_on has a cycle: {' -> '.join(cycle)}; nothing in it could ever start "
                      "(remove one of these dependencies)")


def _run_as(t: Table) -> RunAs | None:
    """`user`/`group` resolved to ids; an engine that is not root may only run instances as itself."""
    import grp
    import pwd
    user, group = t.get("user"), t.get("group")
    if user is None and group is None:
        return None
    try:
        pw = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user) if user is not None \
            else pwd.getpwuid(os.geteuid())
    except KeyError:
        t.error("user", f"no user {user!r} on this machine; create it (useradd --system {user}) or fix the name")
        return None
    gid = pw.pw_gid
    if group is not None:
        try:
            gid = group if isinstance(group, int) else grp.getgrnam(group).gr_gid
        except KeyError:
            t.error("group", f"no group {group!r} on this machine; create it (groupadd {group}) or fix the name")
            return None
    groups = tuple(sorted({gid, *(g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem)}))
    me = os.geteuid()
    if me != 0 and (pw.pw_uid != me or gid not in os.getgroups() + [os.getegid()]):
        try:
            myself = pwd.getpwuid(me).pw_name
        except KeyError:
            myself = str(me)
        key = "user" if pw.pw_uid != me else "group"
        t.error(key, f"oxtui runs as {myself}, not root, so it cannot start instances as {t.data[key]}; run the "
                "engine as root (sudo oxtui startup) or remove this key")
    return RunAs(user=pw.pw_name, uid=pw.pw_uid, gid=gid, groups=groups, home=pw.pw_dir)


def _schedule(errors: list[str], file: str, where: str, raw: Any) -> ScheduleConfig | None:
    t = Table(errors, file, where + ".schedule", raw, fields.SCHEDULE)
    cron, every, tz = t.get("cron"), t.get("every"), t.get("timezone")
    if ("cron" in t.data) == ("every" in t.data):
        t.error(None, 'needs exactly one of cron (e.g. "*/10 * * * *") or every (e.g. "30s")')
        return None
    if cron is None and every is None:
        return None
    if cron is not None:
        from croniter import croniter
        if not croniter.is_valid(cron):
            t.error("cron", f"{cron!r} is not a cron expression; five fields: minute hour day month weekday, "
                    'e.g. "*/10 * * * *"')
            return None
    if tz is not None:
        if every is not None:
            t.error("timezone", "only applies to cron; remove it or use cron")
        import zoneinfo
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            t.error("timezone", f'{tz!r} is not a known time zone; use a name like "Europe/Paris" or "UTC"')
            return None
    return ScheduleConfig(cron=cron, every=every, timezone=tz)


def _notify(errors: list[str], file: str, where: str, raw: Any, base: NotifyConfig | None) -> NotifyConfig:
    t = Table(errors, file, where, raw, fields.NOTIFY)
    webhook = t.get("webhook")
    if webhook is not None and not re.match(r"^https?://[^/\s]+", webhook):
        t.error("webhook", f'must be an http:// or https:// URL (got {webhook!r})')
        webhook = None
    given = {k: v for k, v in (("webhook", webhook), ("command", t.get("command")),
                               ("events", t.get("events")), ("coalesce", t.get("coalesce"))) if k in t.data}
    return dataclasses.replace(base or NotifyConfig(), **given)


def _metrics(errors: list[str], file: str, raw: Any) -> MetricsConfig:
    import ipaddress
    t = Table(errors, file, "metrics", raw, fields.METRICS)
    listen, public = t.get("listen"), t.get("public")
    if listen is not None and not public and not ipaddress.ip_address(listen[0]).is_loopback:
        t.error("listen", f"{listen[0]} is not loopback: anyone who reaches it reads every process's metrics; "
                "use 127.0.0.1, or add public = true to mean it")
    return MetricsConfig(listen=listen, public=public)


def _logs(errors: list[str], file: str, base: Path, oxfile: Path, raw: Any) -> LogsConfig:
    t = Table(errors, file, "logs", raw, fields.LOGS)
    d = t.get("dir")
    return LogsConfig(
        dir=(base / d).resolve() if d else default_log_dir(oxfile),
        max_size=t.get("max_size"),
        keep=t.get("keep"),
        buffer_lines=t.get("buffer_lines"),
        stdout=t.get("stdout"),
        max_age=t.get("max_age"),
        compress=t.get("compress"),
        journald=t.get("journald"),
        files=_files(t),
    )


def _files(t: Table) -> bool:
    files = t.get("files")
    if files is False and t.get("journald") is not True:
        t.error("files", "= false keeps no log at all unless journald = true; set journald = true, or keep the files")
        return True
    return files


def _process(errors: list[str], file: str, base: Path, name: str, raw: Any,
             deploying: bool = False) -> ProcessConfig | None:
    # A name TOML had to quote is shown quoted, so an error stays on one line.
    where = f"processes.{name}" if NAME_RE.match(name) else f"processes.{json.dumps(name)}"
    if not NAME_RE.match(name):
        errors.append(f"{file}: [{where}]: the name may use letters, digits, '_', '-' and '.' only; rename the table")
    t = Table(errors, file, where, raw, fields.PROCESS)
    command = t.get("command")
    if "command" not in t.data and isinstance(raw, dict):
        t.error("command", 'is required, e.g. command = "node server.js"')

    instances_spec = t.data.get("instances", 1)
    instances = 1
    if instances_spec == "max":
        instances = usable_cpus()
    elif isinstance(instances_spec, int) and not isinstance(instances_spec, bool) and instances_spec >= 0:
        instances = instances_spec
    else:
        t.error("instances", f'must be an integer >= 0 or "max" (got {instances_spec!r})')
        instances_spec = 1

    cwd_s = t.get("cwd")
    # Symlinks are kept: `cwd = "current"` must follow the deploy's link at each start, not the release
    # it named when the oxfile was read (an instance started after a deploy runs the new release).
    cwd = Path(os.path.normpath(base / cwd_s)) if cwd_s else base
    if cwd_s and not cwd.is_dir():
        if not under_current(cwd, base):
            t.error("cwd", f"folder {str(cwd)!r} does not exist; create it or fix the path (relative to the oxfile)")
        elif not deploying:
            t.error("cwd", f"{str(cwd)!r} does not exist: add a [deploy] table, then `oxtui deploy` makes the "
                    "first release")
        # with [deploy], before the first deploy: `oxtui deploy` makes it (the engine refuses to start till then)

    env: list[tuple[str, str]] = []
    env_raw = t.get("env")
    for k, v in env_raw.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            t.error("env", f"{k!r} is not a valid variable name")
        elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
            env.append((k, str(v)))
        elif isinstance(v, bool):
            env.append((k, "true" if v else "false"))
        else:
            t.error("env", f"{k} must be a string or number (got {v!r})")

    env_files = []
    given = t.get("env_file")
    for entry in [given] if isinstance(given, str) else given:
        path = (base / entry).resolve()
        if not path.is_file():
            t.error("env_file", f"{str(path)!r} does not exist; create it or fix the path (relative to the oxfile)")
        env_files.append(path)

    stop_timeout = t.get("stop_timeout")
    ready = _ready(errors, file, where, t.data["ready"]) if "ready" in t.data else None
    health = _health(errors, file, where, t.data["health"]) if "health" in t.data else None
    listen = t.get("listen")
    if ready and ready.http and listen is None:
        t.error("ready", "http readiness needs `listen` (the canary is reached through the socket); "
                "add listen or use ready.log")
    watch = t.get("watch")
    ignore = t.get("ignore")
    for entry in watch:
        if not any(c in entry for c in "*?[") and not (cwd / entry).exists():
            t.error("watch", f"{entry!r} does not exist in {str(cwd)!r}; fix the path (relative to cwd)")
    depends = t.get("depends_on")
    if name in depends:
        t.error("depends_on", f"{name} cannot depend on itself; remove {name} from depends_on")
    run_as = _run_as(t)
    schedule = _schedule(errors, file, where, t.data["schedule"]) if "schedule" in t.data else None
    rt = Table(errors, file, where + ".reload", t.data.get("reload", {}), fields.RELOAD)
    reload = ReloadConfig(max_surge=rt.get("max_surge"), min_ready=rt.get("min_ready"))
    if command is None:
        return None
    return ProcessConfig(
        name=name,
        command=command,
        instances=instances,
        instances_spec=instances_spec,
        restart=restart_mode(t),
        cwd=cwd,
        env=tuple(env),
        env_files=tuple(env_files),
        env_files_digest=_digest_files(env_files),
        listen=listen,
        stop_signal=t.get("stop_signal"),
        stop_timeout=stop_timeout,
        max_memory=t.get("max_memory"),
        ready=ready,
        health=health,
        backoff=t.get("backoff"),
        backoff_max=t.get("backoff_max"),
        max_restarts=t.get("max_restarts"),
        restart_window=t.get("restart_window"),
        watch=tuple(watch),
        ignore=tuple(ignore),
        watch_debounce=t.get("watch_debounce"),
        depends_on=tuple((d, c) for d, c in depends.items() if d != name),
        run_as=run_as,
        schedule=schedule,
        reload=reload,
        disabled=t.get("disabled"),
    )


def _ready(errors: list[str], file: str, where: str, raw: Any) -> ReadyConfig:
    t = Table(errors, file, where + ".ready", raw, fields.READY)
    pattern = None
    log = t.get("log")
    if log is not None:
        try:
            pattern = re.compile(log)
        except re.error as e:
            t.error("log", f"regex does not compile: {e}; escape special characters like ( [ . with \\\\")
    http = t.get("http")
    if http is not None and not http.startswith("/"):
        t.error("http", f'must be a path starting with "/", e.g. "/health" (got {http!r})')
        http = None
    timeout = t.get("timeout")
    if timeout == 0:
        t.error("timeout", "must be more than 0 seconds")
        timeout = 30.0
    return ReadyConfig(log=pattern, http=http, timeout=timeout)


def _health(errors: list[str], file: str, where: str, raw: Any) -> HealthConfig:
    t = Table(errors, file, where + ".health", raw, fields.HEALTH)
    http = t.get("http")
    if http is not None and not re.match(r"^http://[^/]+", http):
        t.error("http", f'must be a URL like "http://127.0.0.1:3000/health" (got {http!r})')
        http = None
    tcp = t.get("tcp")
    cmd = t.get("cmd")
    given = [k for k, v in (("http", http), ("tcp", tcp), ("cmd", cmd)) if v is not None]
    if len(given) != 1 and isinstance(raw, dict) and not any(k in t.data for k in ("http", "tcp", "cmd")):
        t.error(None, "needs exactly one of http, tcp or cmd")
    elif len(given) > 1:
        t.error(None, f"give only one of http, tcp or cmd (got {', '.join(given)})")
    interval = t.get("interval") or 10.0
    return HealthConfig(http=http, tcp=tcp, cmd=cmd, interval=interval,
                        failures=t.get("failures"), timeout=t.get("timeout") or 5.0)
