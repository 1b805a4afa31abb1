"""The `oxtui` command line. Exit codes: 0 done, 1 failed, 2 bad usage or config, 3 no engine."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from . import __version__, stdout
from .config import ConfigError, load, parse_signal
from .format import hint
from .report import follow_events, follow_logs, report
from .runtime import RuntimeDirError

VERBS = ("run", "up", "down", "apply", "check", "status", "scale", "reload", "restart", "kill", "stop", "start", "logs",
         "events", "ls", "save", "startup", "completion", "schema", "import", "export")


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def build_parser() -> Parser:
    p = Parser(prog="oxtui", description="Run N instances of your app on one port, restart them when they crash, "
               "and reload them one at a time without dropping a request. With no ./oxfile.toml and no -c, "
               "a verb talks to the one engine this user runs.")
    p.add_argument("--version", action="version", version=f"oxtui {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=Parser)

    def oxfile_args(sp: argparse.ArgumentParser, positional: bool = True) -> None:
        """-c everywhere; positionally too where the verb has no other positional argument."""
        sp.add_argument("-c", "--config", default=None, metavar="OXFILE",
                        help="the oxfile (or its folder); default ./oxfile.toml, else the only running engine")
        if positional:
            sp.add_argument("oxfile", nargs="?", default=None, metavar="OXFILE", help="the same as -c")

    s = sub.add_parser("run", help="run the engine headless in the foreground")
    oxfile_args(s)
    s.add_argument("--background", action="store_true", help=argparse.SUPPRESS)   # how `up` starts it
    s.add_argument("--adopt", type=int, default=None, help=argparse.SUPPRESS)     # a TUI's engine moving out
    s = sub.add_parser("up", help="start the engine in the background; returns once every process is up")
    oxfile_args(s)
    s = sub.add_parser("down", help="stop the engine and every worker gracefully, and wait")
    oxfile_args(s)
    s = sub.add_parser("apply", help="re-read the oxfile into the running engine (start new, stop removed, "
                       "reload changed processes)")
    oxfile_args(s)
    s = sub.add_parser("check", help="validate an oxfile")
    oxfile_args(s)
    s = sub.add_parser("status", help="state of the running engine")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    oxfile_args(s)
    s = sub.add_parser("ls", help="every engine of this user (root: of every user)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s = sub.add_parser("save", help="write the running instance counts into the oxfile (comments kept)")
    s.add_argument("name", nargs="?", default=None, metavar="NAME", help="one process (default: all)")
    oxfile_args(s, positional=False)
    s = sub.add_parser("startup", help="start the engine on boot: write and enable a systemd unit")
    oxfile_args(s)
    s.add_argument("--user", action="store_true", help="a user unit (systemctl --user) instead of a system unit")
    s.add_argument("--print", action="store_true", help="print the unit and change nothing")
    s.add_argument("--remove", action="store_true", help="disable and delete the unit")
    from .porting.verbs import add_parsers
    add_parsers(sub, oxfile_args)
    s = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)")
    s.add_argument("shell", choices=("bash", "zsh", "fish"))
    sub.add_parser("schema", help="print the JSON Schema of oxfile.toml (for editors)")
    s = sub.add_parser("scale", help="set the instance count (N, +N or -N)")
    s.add_argument("name")
    s.add_argument("n", metavar="N")
    oxfile_args(s, positional=False)
    for verb, text in (("reload", "rolling reload, waits until done"), ("restart", "stop and start at once"),
                       ("stop", "stop gracefully"), ("start", "start stopped or errored instances")):
        s = sub.add_parser(verb, help=text)
        s.add_argument("name", metavar="NAME|all")
        oxfile_args(s, positional=False)
    s = sub.add_parser("kill", help="signal one worker; the engine restarts it as after a crash")
    s.add_argument("name")
    s.add_argument("instance", type=int)
    s.add_argument("--signal", "-s", default="SIGTERM")
    oxfile_args(s, positional=False)
    s = sub.add_parser("events", help="the engine's events (starts, exits and why, reloads, scaling): "
                       "recent ones, then live with -f")
    s.add_argument("name", nargs="?", default=None)
    s.add_argument("-f", "--follow", action="store_true")
    s.add_argument("--json", action="store_true", help="one JSON object a line")
    s.add_argument("-n", "--lines", type=int, default=50, help="how many recent events first (default 50)")
    oxfile_args(s, positional=False)
    s = sub.add_parser("logs", help="merged, timestamped logs")
    s.add_argument("name", nargs="?", default=None)
    s.add_argument("-f", "--follow", action="store_true")
    s.add_argument("-n", "--lines", type=int, default=100)
    oxfile_args(s, positional=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout.guard()
    if argv[:1] == ["_names"]:            # for shell completion: not a verb people type
        from .completion import names
        return names(argv[2] if len(argv) > 2 and argv[1] in ("-c", "--config") else None)
    try:
        if not argv or (argv[0] not in VERBS and not argv[0].startswith("-")):
            return tui(argv)
        args = build_parser().parse_args(argv)
        if args.verb is None:
            return tui([])
        if args.verb == "ls":
            from .lsview import ls
            return ls(args.json)
        if args.verb == "completion":
            from .completion import script
            sys.stdout.write(script(build_parser(), args.shell))
            return 0
        if args.verb == "schema":
            from .schema import schema_json
            sys.stdout.write(schema_json())
            return 0
        if args.verb == "import":
            from .porting.verbs import run_import
            return run_import(args)
        oxfile = _oxfile(args)
        if args.verb == "export":
            from .porting.verbs import run_export
            return run_export(args, _load_or_exit(oxfile))
        if args.verb == "run":
            from .run import run
            return run(_load_or_exit(oxfile), background=args.background, adopt=args.adopt)
        if args.verb == "up":
            from .daemon import up
            return up(_load_or_exit(oxfile))
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


def _oxfile(args: argparse.Namespace) -> Path:
    from .discover import Ambiguous, resolve
    given, positional = args.config, getattr(args, "oxfile", None)
    if given and positional and Path(given).expanduser().resolve() != Path(positional).expanduser().resolve():
        raise UsageError(f"oxtui {args.verb}: two oxfiles given ({positional} and -c {given}); give one")
    try:
        return resolve(given or positional)
    except Ambiguous as e:
        raise UsageError(f"oxtui {args.verb}: {e}") from None


def tui(argv: list[str]) -> int:
    """`oxtui [OXFILE]`: attach to the engine already running for OXFILE, or embed a new one."""
    from .discover import Ambiguous, resolve
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
    for _attempt in range(2):
        remote = _attach(path)
        if remote is not None:
            return _attached_tui(remote)
        config = _load_or_exit(path)
        from .embedded import EmbeddedEngine
        from .engine import EngineError
        engine = EmbeddedEngine(config)
        try:
            engine.start()
        except EngineError as e:
            if "already running" in str(e) and _attempt == 0:
                continue      # another oxtui started this oxfile's engine a moment ago: attach to it
            print(f"oxtui: {e}", file=sys.stderr)
            return 1
        return _embedded_tui(engine, config)
    return 1


def _attach(path: str):
    from .client import ControlError, NoEngine
    from .remote import RemoteEngine
    remote = RemoteEngine(Path(path).expanduser().resolve())
    try:
        remote.connect()
    except NoEngine:
        return None
    except ControlError as e:
        print(f"oxtui: the engine for {path} refused to attach: {e}", file=sys.stderr)
        raise SystemExit(1)
    return remote


def _attached_tui(remote) -> int:
    from .tui.app import OxtuiApp
    app = OxtuiApp(remote, remote.oxfile)
    # A hang-up here only ends this view: the engine lives in another process.
    signal.signal(signal.SIGHUP, lambda *_: os._exit(0))
    try:
        app.run()
    finally:
        remote.detach()
    if app.exit_message:
        print(f"oxtui: {app.exit_message}", file=sys.stderr)
    return 0


def _embedded_tui(engine, config) -> int:
    from .tui.app import OxtuiApp
    app = OxtuiApp(engine, config.path)
    signal.signal(signal.SIGHUP, lambda *_: _keep_serving_headless(app, engine))
    try:
        app.run()
    finally:
        if engine.handed_over is not None:
            # Everything belongs to the background engine now; this process only has to go.
            if app.exit_message:
                print(f"oxtui: {app.exit_message}", file=sys.stderr, flush=True)
            os._exit(0)
        # However the app ended (q, an exception, the engine stopped from outside), nothing is left running.
        engine.shutdown()
        engine.join(config.longest_stop + 15)
    if app.exit_message:
        print(f"oxtui: {app.exit_message}", file=sys.stderr)
    return 0


def _keep_serving_headless(app, engine) -> None:
    """SIGHUP: the terminal is gone (the SSH connection dropped). Every worker keeps serving.

    Only the UI ends. It is never asked to do anything: drawing to, or restoring, a dead terminal
    can block forever. This handler owns the main thread from here on, so Textual's loop (which
    runs on it) stays frozen; the engine goes on in its thread, reachable on its control socket
    (`oxtui` attaches, `oxtui down` stops it), logging to its files. SIGTERM or SIGINT stop it
    gracefully.
    """
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)    # any write still queued for the terminal now lands nowhere, at once
    os.close(devnull)
    engine.go_headless()
    driver = getattr(app, "_driver", None)
    if driver is not None and hasattr(driver, "exit_event"):
        driver.exit_event.set()  # Textual's input thread would spin on a stdin at end of file
    path = shlex.quote(str(engine.config.path))
    engine.note(f"the terminal hung up: engine pid {os.getpid()} keeps every worker running headless; "
                f"`oxtui {path}` attaches to it, `oxtui down {path}` stops it")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: engine.shutdown())
    while not engine.finished.wait(0.5):
        pass
    os._exit(0)


def _load_or_exit(path: str | Path):
    try:
        return load(path)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        raise SystemExit(2)


def check(path: str | Path) -> int:
    try:
        cfg = load(path)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        print(f"{path}: {len(e.errors)} error(s)", file=sys.stderr)
        return 2
    for w in cfg.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for p in cfg.processes:
        extra = f" on {p.listen_str}" if p.listen else ""
        extra += f", {p.restart} (a task)" if p.is_task else ""
        extra += "".join(f", after {d} ({c})" for d, c in p.depends_on)
        extra += f", {p.schedule.text}" if p.schedule else ""
        extra += f", as {p.run_as.user}" if p.run_as else ""
        print(f"{p.name}: {p.instances} x `{p.command}`{extra}")
    print(f"{path}: OK ({len(cfg.processes)} process(es)" + (f", {len(cfg.warnings)} warning(s))" if cfg.warnings else ")"))
    return 0


def control(args: argparse.Namespace, oxfile: Path) -> int:
    from .client import Client, ControlError, NoEngine
    req = request_for(args)
    if args.verb == "reload":
        # Ctrl-C leaves this command, not the reload: it goes on in the engine.
        signal.signal(signal.SIGINT, lambda *_: _left_reload(oxfile))
    try:
        long = ("reload", "logs", "events", "stop", "restart", "scale", "apply")
        with Client(oxfile, timeout=None if args.verb in long else 30) as c:
            if args.verb == "logs" and args.follow:
                return follow_logs(c, req)
            if args.verb == "events":
                return follow_events(c, req, args.json)
            progress = (lambda text: print(text, flush=True)) if args.verb in ("reload", "apply") else None
            result = c.call(req, progress)
    except NoEngine as e:
        print(f"oxtui: {e}", file=sys.stderr)
        return 3
    except ControlError as e:
        print(f"oxtui {args.verb}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"oxtui {args.verb}: lost the engine's control socket ({e})", file=sys.stderr)
        return 1
    return report(args, result)


def _left_reload(oxfile: Path) -> None:
    print(f"\noxtui reload: stopped watching; the reload carries on in the engine. Follow it with "
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
        try:
            n = int(text)
        except ValueError:
            raise UsageError(f"oxtui scale: N must be a number like 4, +1 or -1 (got {args.n!r})") from None
        return {"cmd": "scale", "name": args.name, "n": n, "relative": text[0] in "+-"}
    if verb == "kill":
        try:
            sig = parse_signal(args.signal)
        except ValueError as e:
            raise UsageError(f"oxtui kill: --signal {e}") from None
        return {"cmd": "kill", "name": args.name, "instance": args.instance, "signal": sig.name}
    if verb == "events":
        if args.lines < 0:
            raise UsageError(f"oxtui events: -n must be a number of events >= 0 (got {args.lines})")
        return {"cmd": "events", "name": args.name, "n": args.lines, "follow": args.follow}
    if verb == "logs":
        if args.lines < 0:
            raise UsageError(f"oxtui logs: -n must be a number of lines >= 0 (got {args.lines})")
        return {"cmd": "logs", "name": args.name, "n": args.lines, "follow": args.follow}
    return {"cmd": verb, "name": args.name}


if __name__ == "__main__":
    sys.exit(main())
