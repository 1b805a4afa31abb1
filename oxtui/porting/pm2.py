"""`oxtui import pm2 FILE`: a PM2 ecosystem file (.js/.cjs/.mjs, .json, .yaml) into an oxfile.

A .js file is code: Node evaluates it (`import()` of the file, which also loads CommonJS), and the
apps come back as JSON. Every key of every app is either mapped (with a comment saying from what),
or listed on stderr with the reason it has no oxtui meaning.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..oxfile.values import usable_cpus
from . import PortError
from .oxfile_out import Table

EVAL_JS = """
const f = process.argv[1];
import(require('url').pathToFileURL(f).href)
  .then(m => process.stdout.write(JSON.stringify(m.default ?? m)))
  .catch(e => { process.stderr.write(String((e && e.stack) || e)); process.exit(3); });
"""
INTERPRETERS = {".js": "node", ".cjs": "node", ".mjs": "node", ".ts": "ts-node", ".py": "python3", ".sh": "bash",
                ".rb": "ruby", ".php": "php", ".pl": "perl"}
# Keys that need no oxfile line: PM2 bookkeeping, or what oxtui always does.
SILENT = {"name", "script", "args", "interpreter", "interpreter_args", "node_args", "cwd", "instances", "exec_mode",
          "env", "max_memory_restart", "kill_timeout", "wait_ready", "listen_timeout", "autorestart", "max_restarts",
          "restart_delay", "exp_backoff_restart_delay", "watch", "ignore_watch", "stop_exit_codes", "cron_restart",
          "env_file", "increment_var", "instance_var"}
EXPLAINED = {
    "min_uptime": "oxtui counts a crash loop as max_restarts exits within restart_window seconds, whatever the uptime",
    "out_file": "oxtui writes one log file per process (stdout and stderr merged, marked) in [logs] dir",
    "error_file": "oxtui writes one log file per process (stdout and stderr merged, marked) in [logs] dir",
    "log_file": "oxtui writes one log file per process in [logs] dir",
    "log_date_format": "oxtui timestamps every line itself (local time, milliseconds)",
    "merge_logs": "oxtui merges the instances' logs in `oxtui logs` and the TUI, and keeps them per process on disk",
    "combine_logs": "oxtui merges the instances' logs in `oxtui logs` and the TUI",
    "time": "oxtui timestamps every line itself",
    "shutdown_with_message": "oxtui stops instances with stop_signal (SIGTERM), never an IPC message",
    "listen": "",   # not a PM2 key, but never say it was dropped
}


def load_ecosystem(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise PortError(f"{path}: not found; pass the path of an ecosystem.config.js, .json or .yaml")
    suffix = path.suffix.lower()
    if suffix in (".js", ".cjs", ".mjs"):
        node = shutil.which("node")
        if node is None:
            raise PortError(f"{path}: evaluating it needs Node.js on PATH (it is code); or export it as JSON")
        r = subprocess.run([node, "-e", EVAL_JS, str(path.resolve())], capture_output=True, text=True, timeout=30,
                           cwd=path.parent, check=False)
        if r.returncode != 0:
            raise PortError(f"{path}: Node could not evaluate it: {_node_error(r.stderr)}")
        text = r.stdout
        data = _json(path, text)
    elif suffix == ".json":
        data = _json(path, path.read_text())
    elif suffix in (".yaml", ".yml"):
        import yaml
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise PortError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    else:
        raise PortError(f"{path}: unknown kind of file; pass an ecosystem .js, .cjs, .mjs, .json or .yaml")
    apps = data.get("apps") if isinstance(data, dict) else data
    if isinstance(apps, dict):
        apps = [apps]
    if not isinstance(apps, list) or not apps or not all(isinstance(a, dict) for a in apps):
        raise PortError(f"{path}: no `apps` list found (module.exports = {{ apps: [...] }})")
    return apps


def _node_error(stderr: str) -> str:
    """The error itself ("SyntaxError: Unexpected token '}'"), with where Node says it is ("file.js:3")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    error = next((line for line in lines if re.match(r"^[A-Za-z]*(Error|Exception)\b", line)), None)
    where = next((line for line in lines if re.match(r"^/\S+:\d+$", line)), None)
    if error is None:
        return lines[0] if lines else "no output"
    return error + (f" (at {where.rsplit('/', 1)[-1]})" if where else "")


def _json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PortError(f"{path}: not valid JSON ({e})") from None


def _ms(value: Any) -> float | None:
    """PM2 durations: milliseconds as a number, or a string like "1s", "500ms", "2m"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value / 1000
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
    if not m:
        return None
    n = float(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[m.group(2)]


def _size(value: Any) -> str | int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG])?B?\s*", str(value), re.IGNORECASE)
    if not m:
        return None
    return f"{m.group(1)}{(m.group(2) or '').upper()}" if m.group(2) else int(float(m.group(1)))


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return shlex.split(str(value))


def is_cluster(app: dict[str, Any]) -> bool:
    """PM2 runs an app in cluster mode when asked, or when it has more than one instance and no mode."""
    mode = app.get("exec_mode")
    return mode in ("cluster", "cluster_mode") or (mode is None and app.get("instances", 1) not in (1, "1", None))


def command_for(app: dict[str, Any]) -> str:
    script = str(app.get("script", ""))
    args = _words(app.get("args"))
    interp = app.get("interpreter")
    interp_args = _words(app.get("interpreter_args") or app.get("node_args"))
    if interp in (None, "") and Path(script).suffix in INTERPRETERS:
        interp = INTERPRETERS[Path(script).suffix]
    if interp in (None, "", "none"):
        if "/" not in script and " " not in script:
            script = "./" + script        # PM2 runs the file itself; a bare name would be looked up on PATH
        words = [script] + args if " " not in script else shlex.split(script) + args
        interp_args = []
    else:
        words = [str(interp), *interp_args, script, *args]
    return shlex.join(words)


def convert_app(app: dict[str, Any], env_name: str | None, listen: str | None, source: str,
                warn: list[str], source_dir: Path = Path(".")) -> Table:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(app.get("name") or Path(str(app.get("script", "app"))).stem)).strip("-")
    t = Table(name or "app")
    who = f"{source}: app {name!r}"
    if not app.get("script"):
        raise PortError(f"{who}: has no `script`; every app needs one")
    t.set("command", command_for(app), "from script + args + interpreter")
    if app.get("cwd"):
        t.set("cwd", str(app["cwd"]), "from cwd")

    inst = app.get("instances", 1)
    if inst in ("max", 0, "0"):
        t.set("instances", "max", f"from instances: {inst!r} (one per CPU)")
    elif inst in (-1, "-1"):
        t.set("instances", max(1, usable_cpus() - 1), "from instances: -1 (all CPUs but one, on this machine)")
    elif isinstance(inst, int) or (isinstance(inst, str) and inst.isdigit()):
        t.set("instances", int(inst), "from instances")
    else:
        warn.append(f"{who}: instances {inst!r} is not a number or \"max\"; 1 instance")

    cluster = is_cluster(app)
    if listen:
        t.set("listen", listen, "from --listen: bound once by oxtui, fd 3 in every instance")
    if cluster:
        warn.append(f"{who}: PM2 cluster mode shares the port inside Node's cluster module; under oxtui every "
                    "instance gets the shared socket as fd 3: change `server.listen(PORT)` to "
                    "`server.listen({fd: 3})` and set listen = \"HOST:PORT\" (import with --listen), or keep "
                    "one PORT per instance (PORT + OXTUI_INSTANCE)")

    env = {k: str(v) for k, v in (app.get("env") or {}).items()}
    if env_name is not None:
        chosen = app.get(f"env_{env_name}")
        if chosen is None:
            if any(k.startswith("env_") for k in app):
                warn.append(f"{who}: has no env_{env_name}; only `env` used")
        else:
            env.update({k: str(v) for k, v in chosen.items()})
    env_files = _env_files(app, source_dir)
    from_dotenv = _dotenv_values(source_dir)
    inlined = sorted(k for k, v in env.items() if from_dotenv.get(k) == v)
    if inlined:
        # the ecosystem file loaded .env (require('dotenv')): the values stay there, never in the oxfile
        env = {k: v for k, v in env.items() if k not in inlined}
        if ".env" not in env_files:
            env_files.append(".env")
        warn.append(f"{who}: {', '.join(inlined)} came from .env (dotenv): env_file = \".env\" reads them at every "
                    "start; their values are not copied")
    if env_files:
        t.set("env_file", env_files if len(env_files) > 1 else env_files[0], "from env_file / dotenv: read at every start")
    if env:
        t.set("env", env, "from env" + (f" + env_{env_name}" if env_name and app.get(f"env_{env_name}") else ""))

    if app.get("max_memory_restart") is not None:
        size = _size(app["max_memory_restart"])
        if size is None:
            warn.append(f"{who}: max_memory_restart {app['max_memory_restart']!r} is not a size; left out")
        else:
            t.set("max_memory", size, f"from max_memory_restart: {app['max_memory_restart']!r}")
    if app.get("kill_timeout") is not None:
        secs = _ms(app["kill_timeout"])
        if secs is not None:
            t.set("stop_timeout", secs, f"from kill_timeout: {app['kill_timeout']} ms")
    if app.get("autorestart") is False:
        t.set("restart_on_exit", False, "from autorestart: false")
    if app.get("max_restarts") is not None:
        t.set("max_restarts", max(1, int(app["max_restarts"])), "from max_restarts")
    if app.get("exp_backoff_restart_delay") is not None:
        # PM2 uses the exponential backoff when it is set, whatever restart_delay says; 15 s is its cap too
        secs = _ms(app["exp_backoff_restart_delay"])
        if secs is not None:
            t.set("backoff", secs, f"from exp_backoff_restart_delay: {app['exp_backoff_restart_delay']} ms")
        if app.get("restart_delay") is not None:
            warn.append(f"{who}: restart_delay not carried over: exp_backoff_restart_delay is set, and PM2 uses "
                        "that one too")
    elif app.get("restart_delay") is not None:
        secs = _ms(app["restart_delay"])
        if secs is not None:
            t.set("backoff", secs, f"from restart_delay: {app['restart_delay']} ms (a fixed delay)")
            t.set("backoff_max", secs)
    watch = app.get("watch")
    if watch:
        t.set("watch", ["."] if watch is True else _words(watch) if isinstance(watch, str) else list(map(str, watch)),
              "from watch")
        if app.get("ignore_watch"):
            t.set("ignore", [str(x) for x in _words(app["ignore_watch"])], "from ignore_watch")
    if app.get("wait_ready") or app.get("listen_timeout") is not None:
        secs = _ms(app.get("listen_timeout", 3000)) or 3.0
        t.ready.append(("timeout", secs, f"from listen_timeout: {app.get('listen_timeout', 3000)} ms"))
        if app.get("wait_ready"):
            t.notes.append("wait_ready: PM2 waits for process.send('ready'); oxtui watches the output instead:")
            t.notes.append("print a line when ready and add `log = \"that line\"` to [ready] (or http = \"/health\")")
            warn.append(f"{who}: wait_ready: print a line when the app is ready and set ready.log to it "
                        "(PM2's process.send('ready') has no meaning outside PM2)")

    if app.get("cron_restart"):
        # autorestart: false makes it a task (restart_on_exit = false): a tick runs it afresh, where a
        # long-running app is reloaded one instance at a time
        what = "a fresh run at each tick" if app.get("autorestart") is False else \
            "a rolling reload at each tick (no instance is down meanwhile)"
        t.schedule = [("cron", str(app["cron_restart"]), f"from cron_restart: {what}")]
    _per_instance(t, app, env, who, warn)

    for key, value in app.items():
        if key in SILENT or (key.startswith("env_") and isinstance(value, dict)):
            continue
        if key in EXPLAINED:
            if EXPLAINED[key]:
                warn.append(f"{who}: {key} not carried over: {EXPLAINED[key]}")
        else:
            warn.append(f"{who}: {key} has no oxtui meaning; left out")
    return t


def _env_files(app: dict[str, Any], folder: Path) -> list[str]:
    given = app.get("env_file")
    return [str(x) for x in ([given] if isinstance(given, str) else given or [])]


def _dotenv_values(folder: Path) -> dict[str, str]:
    path = folder / ".env"
    if not path.is_file():
        return {}
    from dotenv import dotenv_values
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _per_instance(t: Table, app: dict[str, Any], env: dict[str, str], who: str, warn: list[str]) -> None:
    """increment_var (PORT 3000, 3001, ...) and instance_var (the slot under another name): a variable
    set per instance from OXTUI_INSTANCE in front of the command, as the shell does it."""
    prefix: list[str] = []
    used: list[str] = []
    var = app.get("increment_var")
    if var and str(env.get(var, "")).isdigit():
        prefix.append(f"{var}=$(({var}+OXTUI_INSTANCE))")
        used.append("increment_var")
        warn.append(f"{who}: increment_var {var}: each instance gets its own {var} (as under PM2); to serve one "
                    "port from every instance instead, use listen and fd 3")
    elif var:
        warn.append(f"{who}: increment_var {var} not carried over: env has no number for {var} to start from")
    inst = app.get("instance_var")
    if inst and inst != "NODE_APP_INSTANCE":
        prefix.append(f"{inst}=$OXTUI_INSTANCE")
        used.append("instance_var")
    if prefix:
        command = next(v for k, v, _ in t.items if k == "command")
        t.set("command", " ".join(prefix + [command]),
              f"from script + args + interpreter, {' and '.join(used)} (per instance, from OXTUI_INSTANCE)")


def import_pm2(path: Path, env_name: str | None, listens: dict[str | None, str]) -> tuple[list[Table], list[str]]:
    apps = load_ecosystem(path)
    warn: list[str] = []
    tables = []
    cluster_count = sum(1 for a in apps if is_cluster(a))
    if None in listens and cluster_count != 1:
        raise PortError(f"{path}: --listen ADDR needs exactly one cluster-mode app (found {cluster_count}); "
                        "use --listen NAME=ADDR")
    names = [str(app.get("name", "")) for app in apps]
    unknown = [n for n in listens if n is not None and n not in names]
    if unknown:
        raise PortError(f"{path}: --listen {unknown[0]}=...: no app named {unknown[0]!r} (apps: {', '.join(names)})")
    for app in apps:
        name = str(app.get("name", ""))
        listen = listens.get(name) or (listens.get(None) if is_cluster(app) else None)
        tables.append(convert_app(app, env_name, listen, path.name, warn, path.parent))
    seen: set[str] = set()
    for t in tables:
        if t.name in seen:
            raise PortError(f"{path}: two apps are named {t.name!r}; give each a unique name")
        seen.add(t.name)
    return tables, warn
