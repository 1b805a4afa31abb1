"""`oxtui completion bash|zsh|fish`: shell completion generated from the argparse parser (shtab),
with the running engine's process names for the verbs that take one (`oxtui _names` prints them)."""

from __future__ import annotations

import argparse
import sys

# Each shell calls `oxtui _names` when it completes a NAME: quick, silent, empty when no engine runs.
NAMES = {
    "bash": "_oxtui_names",
    "zsh": "_oxtui_names",
    "fish": "(oxtui _names 2>/dev/null)",
    "preamble": {
        "bash": '_oxtui_names() { compgen -W "$(oxtui _names 2>/dev/null)" -- "$1"; }',
        "zsh": "_oxtui_names() {\n  local -a names\n  names=(${(f)\"$(oxtui _names 2>/dev/null)\"})\n"
               "  compadd -a names\n}",
    },
}
NAMED_VERBS = ("scale", "reload", "restart", "stop", "start", "kill", "logs", "events", "save")


def annotate(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Mark which arguments complete to process names and which to files."""
    import shtab
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb, sub in action.choices.items():
                for a in sub._actions:
                    if a.dest == "name" and verb in NAMED_VERBS:
                        a.complete = NAMES
                    elif a.dest in ("oxfile", "config"):
                        a.complete = shtab.FILE
    return parser


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab
    return shtab.complete(annotate(parser), shell=shell)


def names(oxfile: str | None) -> int:
    """`oxtui _names`: the running engine's process names, one a line (and "all"); nothing on error."""
    from ..client.connection import status_of
    from ..client.discover import Ambiguous, resolve
    try:
        snap = status_of(resolve(oxfile), timeout=2)
    except (Ambiguous, OSError):
        return 0        # completion must never print an error into the shell's line
    if snap is None:
        return 0
    sys.stdout.write("".join(p["name"] + "\n" for p in snap["processes"]) + "all\n")
    return 0
