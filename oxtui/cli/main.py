"""The `oxtui` command line. Exit codes: 0 done, 1 failed, 2 bad usage or config, 3 no engine."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..format import hint
from ..runtime import RuntimeDirError
from . import stdout
from .parser import FLEET_VERBS, VERBS, UsageError, build_parser
from .report import follow_events, follow_logs, report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout.guard()
    if argv[:1] == ["_bridge"]:           # the far end of a fleet link (`ssh HOST oxtui _bridge`)
        from ..fleet.bridge import main as bridge
        return bridge()
    if argv[:1] == ["_names"]:            # for shell completion: not a verb people type
        from .completion import names
        return names(argv[2] if len(argv) > 2 and argv[1] in ("-c", "--config") else None)
    try:
        if not argv or (argv[0] not in VERBS and not argv[0].startswith("-")):
            return tui(argv)
        args = build_parser().parse_args(argv)
        if args.verb is None:
            return tui([])
        if args.verb == "fleet":
            from .fleet_tui import fleet_tui
            return fleet_tui(args.hosts, args.fleet_file)
        if args.verb in FLEET_VERBS and (args.fleet or args.host):
            return _on_hosts(args)
        if args.verb == "ls":
            from .ls import ls
            return ls(args.json)
        if args.verb == "completion":
            from .completion import script
            sys.stdout.write(script(build_parser(), args.shell))
            return 0
        if args.verb == "schema":
            from ..oxfile.schema import fleet_schema_json, schema_json
            sys.stdout.write(schema_json() if args.kind == "oxfile" else fleet_schema_json())
            return 0
        if args.verb == "start" and (args.instances or args.listen or args.as_name or args.interpreter or args.args
                                     or _is_program(args)):
            from .quickstart import quickstart
            if args.instances not in (None, "max") and not str(args.instances).isdigit():
                raise UsageError(f'oxtui start: -i must be a number of instances or "max" (got {args.instances!r})')
            if not Path(args.name).is_file():
                raise UsageError(f"oxtui start: {args.name} is not a file (a program to start); `oxtui start NAME` "
                                 "starts a process of the oxfile")
            return quickstart(args, Path(args.config or "oxfile.toml").expanduser().resolve())
        if args.verb == "upgrade":
            from .upgrade import every_engine, upgrade
            if args.all and (args.config or args.oxfile):
                raise UsageError("oxtui upgrade: give an oxfile or --all, not both")
            return upgrade(every_engine() if args.all else [_oxfile(args)])
        if args.verb == "import":
            from ..porting.verbs import run_import
            return run_import(args)
        oxfile = _oxfile(args)
        if args.verb == "export":
            from ..porting.verbs import run_export
            return run_export(args, _load_or_exit(oxfile))
        if args.verb == "run":
            from .run import run
            config = _load_or_exit(oxfile)
            return run(config, background=args.background, adopt=args.adopt, only=_only(args, config),
                       recover=args.recover)
        if args.verb == "up":
            from .daemon import up
            config = _load_or_exit(oxfile)
            return up(config, _only(args, config))
        if args.verb == "down":
            from .daemon import down
            return down(oxfile)
        if args.verb == "startup":
            from .startup import startup
            return startup(_load_or_exit(oxfile), user=args.user, print_only=args.print, remove=args.remove)
        if args.verb == "apply":
            _load_or_exit(oxfile)    # refuse a broken file here, with exit code 2
        if args.verb == "check":
            return check(oxfile)
        if args.verb in ("deploy", "rollback", "releases"):
            from .deploy import refused
            config = _load_or_exit(oxfile)
            if (code := refused(args, config)) is not None:
                return code
        return control(args, oxfile)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except stdout.StdoutClosed:
        return stdout.closed()
    except RuntimeDirError as e:
        print(f"oxtui: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _on_hosts(args: argparse.Namespace) -> int:
    """A verb on other hosts: -c names an oxfile there, so it is not looked up here."""
    if args.verb == "upgrade":
        from .upgrade import upgrade_fleet
        return upgrade_fleet(args)
    from .onhosts import run
    if args.verb == "ls":
        return run(args, {})
    if getattr(args, "oxfile", None):
        args.config = args.oxfile
    return run(args, request_for(args))


def _only(args: argparse.Namespace, config) -> set[str] | None:
    if not args.only:
        return None
    names = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = sorted(n for n in names if config.process(n) is None)
    if unknown:
        raise UsageError(f"oxtui {args.verb}: --only {unknown[0]}: no such process in {config.path} "
                         f"(processes: {', '.join(p.name for p in config.processes)})")
    return names


def _is_program(args: argparse.Namespace) -> bool:
    from .quickstart import looks_like_a_program
    return looks_like_a_program(args.name, Path(args.config or "oxfile.toml").expanduser().resolve())


def _oxfile(args: argparse.Namespace) -> Path:
    from ..client.discover import Ambiguous, resolve
    given, positional = args.config, getattr(args, "oxfile", None)
    if given and positional and Path(given).expanduser().resolve() != Path(positional).expanduser().resolve():
        raise UsageError(f"oxtui {args.verb}: two oxfiles given ({positional} and -c {given}); give one")
    try:
        return resolve(given or positional)
    except Ambiguous as e:
        raise UsageError(f"oxtui {args.verb}: {e}") from None


def tui(argv: list[str]) -> int:
    """`oxtui [OXFILE]`: attach to the engine already running for OXFILE, or embed a new one."""
    from ..client.discover import Ambiguous, resolve
    if len(argv) > 1:
        raise UsageError(f"oxtui: unexpected arguments {' '.join(argv[1:])!r}; usage: oxtui [OXFILE]")
    if argv and not os.path.exists(argv[0]) and not any(c in argv[0] for c in "/.~"):
        import difflib
        near = difflib.get_close_matches(argv[0], VERBS, n=1, cutoff=0.6)
        raise UsageError(f"oxtui: unknown command {argv[0]!r}" + (f"; did you mean {near[0]!r}?" if near else "")
                         + " (commands: " + ", ".join(VERBS) + "; or the path of an oxfile)")
    try:
        path = str(resolve(argv[0] if argv else None))
    except Ambiguous as e:
        raise UsageError(f"oxtui: {e}") from None
    from .tuiprocess import open_tui
    return open_tui(path, _load_or_exit)


def _load_or_exit(path: str | Path):
    # The oxfile's loader is imported only by the verbs that read the file: `status`, `logs` and the
    # other verbs a script polls only talk to the engine, and start a third faster without it.
    from ..oxfile.config import ConfigError, load
    try:
        return load(path)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        raise SystemExit(2)


def check(path: str | Path) -> int:
    from ..client.connection import status_of
    from ..oxfile import preflight
    from ..oxfile.config import ConfigError, load
    try:
        cfg = load(path)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        print(f"{path}: {len(e.errors)} error(s)", file=sys.stderr)
        return 2
    errors, warnings = preflight.check(cfg, running=status_of(cfg.path, timeout=2) is not None)
    warnings = list(cfg.warnings) + warnings
    for line in errors:
        print(line, file=sys.stderr)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if errors:
        print(f"{path}: {len(errors)} error(s)", file=sys.stderr)
        return 2
    for p in cfg.processes:
        extra = f" on {p.listen_str}" if p.listen else ""
        extra += f", {p.restart} (a task)" if p.is_task else ""
        extra += "".join(f", after {d} ({c})" for d, c in p.depends_on)
        extra += f", {p.schedule.text}" if p.schedule else ""
        extra += f", as {p.run_as.user}" if p.run_as else ""
        print(f"{p.name}: {p.instances} x `{p.command}`{extra}")
    print(f"{path}: OK ({len(cfg.processes)} process(es)" + (f", {len(warnings)} warning(s))" if warnings else ")"))
    return 0


def control(args: argparse.Namespace, oxfile: Path) -> int:
    from ..client.connection import Client, ControlError, NoEngine
    req = request_for(args)
    if args.verb in ("reload", "deploy", "rollback"):
        # Ctrl-C leaves this command, not the reload: it goes on in the engine.
        signal.signal(signal.SIGINT, lambda *_: _left_reload(oxfile, args.verb))
    try:
        long = ("reload", "logs", "events", "stop", "restart", "scale", "apply", "deploy", "rollback")
        with Client(oxfile, timeout=None if args.verb in long else 30) as c:
            if args.verb == "logs" and req["cmd"] == "logs" and (args.follow or args.json):
                return follow_logs(c, req, args.json)
            if args.verb == "events":
                return follow_events(c, req, args.json)
            shows_steps = args.verb in ("reload", "apply", "deploy", "rollback") and not getattr(args, "quiet", False)
            progress = (lambda text: print(text, flush=True)) if shows_steps else None
            result = c.call(req, progress)
    except NoEngine as e:
        if args.verb == "logs" and req["cmd"] == "logs":
            return _logs_from_files(args, req, oxfile)
        if args.verb in ("deploy", "rollback"):
            from .deploy import without_engine
            return without_engine(args, _load_or_exit(oxfile))
        print(f"oxtui: {e}", file=sys.stderr)
        return 3
    except ControlError as e:
        print(f"oxtui {args.verb}: {e}", file=sys.stderr)
        return 2 if e.usage else 1
    except (OSError, ValueError) as e:
        print(f"oxtui {args.verb}: lost the engine's control socket ({e})", file=sys.stderr)
        return 1
    return report(args, result)


def _logs_from_files(args: argparse.Namespace, req: dict[str, Any], oxfile: Path) -> int:
    """No engine runs: the lines it wrote are still in its files. `-f` prints them, then says that
    nothing new can come (exit 3, as every verb that needs an engine)."""
    import json

    from .logfiles import NoSuchProcess, read
    from .report import log_json
    config = _load_or_exit(oxfile)
    try:
        lines = read(config, req.get("name"), req["n"], req.get("streams"), req.get("since"))
    except NoSuchProcess as e:
        print(f"oxtui logs: {e}", file=sys.stderr)
        return 2
    where = f"the files in {config.logs.dir}" if config.logs.files else "the journal ([logs] files = false)"
    print(f"oxtui logs: no engine is running for {config.path}; these lines are from {where}", file=sys.stderr)
    if args.json:
        sys.stdout.write("".join(json.dumps(log_json(*line[1:])) + "\n" for line in lines))
    else:
        report(args, {"lines": lines})
    if args.follow:
        print(f"oxtui logs: not following: no engine is running; `{hint('up', oxfile)}` starts it", file=sys.stderr)
        return 3
    return 0


def _left_reload(oxfile: Path, verb: str = "reload") -> None:
    print(f"\noxtui {verb}: stopped watching; the {verb} carries on in the engine. Follow it with "
          f"`{hint('status', oxfile)}` or `{hint('logs', oxfile, '-f')}`", file=sys.stderr)
    raise SystemExit(130)


def request_for(args: argparse.Namespace) -> dict[str, Any]:
    verb = args.verb
    if verb in ("status", "apply"):
        return {"cmd": verb}
    if verb == "save":
        return {"cmd": "save", "name": args.name}
    if verb == "scale":
        text = args.n.strip()
        if text == "max":
            return {"cmd": "scale", "name": args.name, "n": "max"}
        try:
            n = int(text)
        except ValueError:
            raise UsageError(f'oxtui scale: N must be a number like 4, +1 or -1, or "max" (got {args.n!r})') from None
        return {"cmd": "scale", "name": args.name, "n": n, "relative": text[0] in "+-"}
    if verb == "kill":
        try:
            from ..oxfile.config import parse_signal
            sig = parse_signal(args.signal)
        except ValueError as e:
            raise UsageError(f"oxtui kill: --signal {e}") from None
        return {"cmd": "kill", "name": args.name, "instance": args.instance, "signal": sig.name}
    if verb in ("deploy", "rollback"):
        from .deploy import request
        return request(args)
    if verb == "events":
        if args.lines < 0:
            raise UsageError(f"oxtui events: -n must be a number of events >= 0 (got {args.lines})")
        return {"cmd": "events", "name": args.name, "n": args.lines, "follow": args.follow}
    if verb == "logs":
        if args.flush:
            return {"cmd": "flush", "name": args.name}
        if args.lines < 0:
            raise UsageError(f"oxtui logs: -n must be a number of lines >= 0 (got {args.lines})")
        req = {"cmd": "logs", "name": args.name, "n": args.lines, "follow": args.follow}
        if args.stderr:
            req["streams"] = ["err"]
        if args.since:
            from ..oxfile.values import parse_interval
            try:
                req["since"] = time.time() - parse_interval(args.since)
            except ValueError as e:
                raise UsageError(f"oxtui logs: --since {e}") from None
        return req
    return {"cmd": verb, "name": args.name}


if __name__ == "__main__":
    sys.exit(main())
