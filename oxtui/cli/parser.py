"""What the command line accepts: every verb, option and help text (argparse), in one place."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import __version__

VERBS = ("run", "up", "down", "apply", "check", "status", "scale", "reload", "restart", "kill", "stop", "start", "logs",
         "events", "ls", "save", "startup", "upgrade", "fleet", "completion", "schema", "import", "export",
         "deploy", "rollback", "releases")
# verbs that also reach other hosts (-H HOST[,HOST] or --fleet, through SSH: cli/onhosts.py)
FLEET_VERBS = ("status", "logs", "events", "scale", "reload", "restart", "stop", "start", "ls", "upgrade",
               "deploy", "rollback")


def fleet_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-H", "--host", metavar="HOST[,HOST]", help="on these hosts (names of the fleet file, or SSH "
                    "destinations), through SSH")
    sp.add_argument("--fleet", action="store_true", help="on every host of the fleet file")
    sp.add_argument("--fleet-file", type=Path, metavar="FILE", help="default: $OXTUI_FLEET, else "
                    "~/.config/oxtui/fleet.toml")


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
    s.add_argument("--only", metavar="NAME[,NAME]", help="start only these processes (and what they depend on); "
                   "the others wait for `oxtui start NAME`")
    s.add_argument("--background", action="store_true", help=argparse.SUPPRESS)   # how `up` starts it
    s.add_argument("--adopt", type=int, default=None, help=argparse.SUPPRESS)     # a TUI's engine moving out
    s.add_argument("--recover", type=int, default=None, help=argparse.SUPPRESS)   # the keeper's new engine
    s = sub.add_parser("up", help="start the engine in the background; returns once every process is up")
    oxfile_args(s)
    s.add_argument("--only", metavar="NAME[,NAME]", help="start only these processes (and what they depend on)")
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
    s = sub.add_parser("upgrade", help="move running engines to the oxtui installed now; every app keeps running "
                       "(same pids)")
    oxfile_args(s)
    s.add_argument("--all", action="store_true", help="every engine of this user (root: of every user)")
    from ..porting.verbs import add_parsers
    add_parsers(sub, oxfile_args)
    s = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)")
    s.add_argument("shell", choices=("bash", "zsh", "fish"))
    s = sub.add_parser("schema", help="print the JSON Schema of oxfile.toml, or of the fleet file (for editors)")
    s.add_argument("kind", nargs="?", choices=("oxfile", "fleet"), default="oxfile")
    s = sub.add_parser("fleet", help="the TUI over several hosts, through SSH")
    s.add_argument("hosts", nargs="*", metavar="HOST", help="names of the fleet file, or SSH destinations "
                   "(default: every host of the fleet file)")
    s.add_argument("--fleet-file", type=Path, metavar="FILE", help="default: $OXTUI_FLEET, else "
                   "~/.config/oxtui/fleet.toml")
    s = sub.add_parser("scale", help="set the instance count (N, +N or -N)")
    s.add_argument("name")
    s.add_argument("n", metavar="N")
    oxfile_args(s, positional=False)
    s = sub.add_parser("start", help="start the stopped or errored instances of NAME (or all); given a program "
                       "instead (oxtui start app.js -i 4 --listen :3000), add it to the oxfile and start it")
    s.add_argument("name", metavar="NAME|all|PROGRAM")
    s.add_argument("args", nargs="*", metavar="-- ARGS", help="the program's own arguments, after --")
    s.add_argument("-i", "--instances", metavar="N|max", help="a program: how many instances (default 1)")
    s.add_argument("--listen", metavar="[HOST]:PORT", help="a program: the address every instance serves (fd 3); "
                   ":3000 is every interface")
    s.add_argument("--name", dest="as_name", metavar="NAME", help="a program: its process name (default: the "
                   "file's name)")
    s.add_argument("--interpreter", help="a program: what runs it (default: by its extension, node for .js)")
    oxfile_args(s, positional=False)
    for verb, text in (("reload", "rolling reload, waits until done"), ("restart", "stop and start at once"),
                       ("stop", "stop gracefully")):
        s = sub.add_parser(verb, help=text)
        s.add_argument("name", metavar="NAME|all")
        if verb == "reload":
            s.add_argument("-q", "--quiet", action="store_true",
                           help="print only a failure (the engine logs every step; systemd's ExecReload uses it)")
        oxfile_args(s, positional=False)
    s = sub.add_parser("deploy", help="a new release from [deploy] source: fetch, build beside the live one, switch "
                       "current, rolling reload; rolled back as a whole if the reload is")
    s.add_argument("ref", nargs="?", default=None, metavar="REF", help="a branch, tag or commit (default: [deploy] "
                   "ref, else the source's default branch)")
    oxfile_args(s, positional=False)
    s = sub.add_parser("rollback", help="back to the release live before the current one (or RELEASE), with a "
                       "rolling reload")
    s.add_argument("release", nargs="?", default=None, metavar="RELEASE", help="a name `oxtui releases` lists")
    oxfile_args(s, positional=False)
    s = sub.add_parser("releases", help="the releases on disk, newest first, and which is live")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    oxfile_args(s)
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
    s = sub.add_parser("logs", help="merged, timestamped logs: recent lines, then live with -f")
    s.add_argument("name", nargs="?", default=None, metavar="NAME|NAME.N",
                   help="one process (web), or one instance of it (web.0); default: every process")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing new lines as they come")
    s.add_argument("-n", "--lines", type=int, default=100, help="how many recent lines first (default 100)")
    s.add_argument("--stderr", action="store_true", help="only what the instances wrote to stderr")
    s.add_argument("--since", metavar="DURATION", help="only lines from the last DURATION: 30s, 10m, 2h, 1d")
    s.add_argument("--json", action="store_true", help="one JSON object a line: at, process, instance, stream, line")
    s.add_argument("--flush", action="store_true",
                   help="empty the log files (removing rotated ones) and the recent lines, then exit")
    oxfile_args(s, positional=False)
    for verb in FLEET_VERBS:
        fleet_args(sub.choices[verb])
    return p
