"""The references made from the code, never written by hand: every oxfile key from oxfile/fields.py, every
verb and option from the parser, as Markdown for the docs (docs/reference/*.md) and as the man page
oxtui(1). `python -m oxtui.cli.reference` writes them; a test fails when a committed one is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__
from ..oxfile import fields
from .parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
TABLES = (("[processes.NAME]", fields.PROCESS), ("[processes.NAME.ready]", fields.READY),
          ("[processes.NAME.health]", fields.HEALTH), ("[processes.NAME.reload]", fields.RELOAD),
          ("[processes.NAME.schedule]", fields.SCHEDULE), ("[processes.NAME.notify] and [notify]", fields.NOTIFY),
          ("[logs]", fields.LOGS), ("[metrics]", fields.METRICS), ("[deploy]", fields.DEPLOY))
KINDS = {"str": "string", "bool": "true / false", "duration": "seconds", "posint": "integer ≥ 1",
         "strlist": "list of strings", "env": "table", "size": 'size ("256M")', "signal": 'signal ("SIGTERM")',
         "address": '"HOST:PORT"', "instances": 'integer or "max"', "stdout": '"auto" / "all" / "events"',
         "table": "table", "paths": "path or list", "restart": '"always" / "on-failure" / "never"',
         "depends": "table", "ident": "name", "every": 'interval ("30s")', "surge": "integer or %",
         "events": "list of events"}


def _default(f: fields.Field) -> str:
    if f.default is None or f.default == [] or f.default == {}:
        return ""
    return f"`{f.default}`" if not isinstance(f.default, str) else f'`"{f.default}"`'


def oxfile_markdown() -> str:
    out = ["# oxfile.toml reference", "",
           ("Made from `oxtui/oxfile/fields.py`, the one table `oxtui check`, the JSON Schema (`oxtui schema`) and the "
           "error messages read: a key is described here exactly as the code knows it. The annotated example "
           "is in [oxfile.toml](../oxfile.md)."), ""]
    for title, table in TABLES:
        out += [f"## {title}", "", "| key | kind | default | meaning |", "|---|---|---|---|"]
        for key, f in table.items():
            out.append(f"| `{key}` | {KINDS.get(f.kind, f.kind)} | {_default(f)} | {f.doc.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


def _verbs(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help or "" for c in sub._choices_actions}
    return [(name, p, helps.get(name, "")) for name, p in sub.choices.items()]


def _usage(name: str, p: argparse.ArgumentParser) -> str:
    return " ".join(p.format_usage().split()[1:]).replace("oxtui " + name, "oxtui " + name, 1)


def _options(p: argparse.ArgumentParser) -> list[tuple[str, str]]:
    rows = []
    for a in p._actions:
        if a.help == argparse.SUPPRESS or isinstance(a, argparse._HelpAction):
            continue
        flags = ", ".join(a.option_strings) or str(a.metavar or a.dest)
        if a.option_strings and a.nargs != 0:
            flags += f" {a.metavar or a.dest.upper()}"
        rows.append((str(flags), (a.help or "").replace("%%", "%")))
    return rows


def cli_markdown() -> str:
    parser = build_parser()
    out = ["# Command-line reference", "",
           ("Made from the parser (`oxtui/cli/parser.py`), as `oxtui COMMAND --help` prints it. Exit codes: 0 done, "
           "1 failed, 2 bad usage or config, 3 no engine running. The same is in `man oxtui`."), ""]
    for name, p, text in _verbs(parser):
        out += [f"## oxtui {name}", "", text[:1].upper() + text[1:] + ("." if text and not text.endswith(".") else ""),
                "", "```", _usage(name, p), "```", ""]
        opts = _options(p)
        if opts:
            out += ["| argument | meaning |", "|---|---|"]
            out += [f"| `{f}` | {h.replace('|', '/')} |" for f, h in opts]
            out.append("")
    return "\n".join(out)


def _roff(text: str) -> str:
    return text.replace("\\", "\\e").replace("-", "\\-").replace("'", "\\(aq")


def man_page() -> str:
    parser = build_parser()
    out = [f'.TH OXTUI 1 "" "oxtui {__version__}" "User Commands"', ".SH NAME",
           "oxtui \\- run N instances of an app on one port, restart them, reload them without dropping a request",
           ".SH SYNOPSIS", ".B oxtui", "[\\fIOXFILE\\fR]", ".br", ".B oxtui", "\\fICOMMAND\\fR [\\fIoptions\\fR]",
           ".SH DESCRIPTION", _roff(parser.description or ""),
           ".PP", _roff("With no command: the terminal UI, attached to the engine running for OXFILE, or with an "
                        "engine of its own. The oxfile (oxfile.toml) names the processes; see the oxtui "
                        "documentation (docs/ in the source) for every key."),
           ".SH COMMANDS"]
    for name, p, text in _verbs(parser):
        out += [".TP", f".B {_roff(_usage(name, p))}", _roff(text)]
        for flags, h in _options(p):
            out += [".RS", ".TP", f".I {_roff(flags)}", _roff(h), ".RE"]
    out += [".SH EXIT STATUS", "0 done, 1 failed, 2 bad usage or config, 3 no engine running.",
            ".SH FILES", ".TP", ".I oxfile.toml", "the processes, in the current folder unless \\-c names another.",
            ".TP", ".I ~/.config/oxtui/fleet.toml", "the hosts of `oxtui fleet` and \\-\\-fleet.",
            ".SH SEE ALSO", "systemd.exec(5), journalctl(1), logrotate(8)", ""]
    return "\n".join(out)


OUTPUTS = {ROOT / "docs" / "reference" / "oxfile.md": oxfile_markdown,
           ROOT / "docs" / "reference" / "cli.md": cli_markdown,
           ROOT / "oxtui" / "man" / "oxtui.1": man_page}


def main() -> int:
    for path, make in OUTPUTS.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make() + ("" if make is man_page else "\n"))
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
