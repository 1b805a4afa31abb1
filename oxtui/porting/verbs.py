"""The `import` and `export` verbs: read, convert, write, and say on stderr what did not carry over."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import PortError

if TYPE_CHECKING:      # the CLI's parser imports this module for every verb: no oxfile loader at run time
    from ..oxfile.config import Config


def run_import(args: argparse.Namespace) -> int:
    from .oxfile_out import check_text, render
    source = Path(args.file).expanduser()
    out = Path(args.output).expanduser().absolute() if args.output else None
    try:
        if args.kind == "pm2":
            from .pm2 import import_pm2
            listens: dict[str | None, str] = {}
            for item in args.listen or []:
                name, _, addr = item.rpartition("=")
                listens[name or None] = addr
            tables, warn = import_pm2(source, args.env, listens)
        else:
            from .procfile import import_procfile
            if args.port is not None and not (args.port.isdigit() and 0 < int(args.port) < 65536):
                raise PortError(f"--port must be a port number 1-65535 (got {args.port!r})")
            tables, warn = import_procfile(source, args.port)
    except PortError as e:
        print(f"oxtui import: {e}", file=sys.stderr)
        return 2
    text = render(tables, [(f"Imported by `oxtui import {args.kind}` from {source.name}; "
                           "each comment says where a value came from."), "Check it: oxtui check"])
    for line in warn:
        print(f"note: {line}", file=sys.stderr)
    target = out or (source.parent / "oxfile.toml").absolute()
    problems = check_text(text, target) if target.parent.is_dir() else []
    if problems and out is None:
        # never an oxfile that `oxtui check` refuses: say what is wrong instead
        for p in problems:
            print(f"check: {p}", file=sys.stderr)
        print("oxtui import: the oxfile it would make does not pass `oxtui check` (above); nothing written",
              file=sys.stderr)
        return 1
    if out is None:
        sys.stdout.write(text)
    else:
        if out.exists() and not args.force:
            print(f"oxtui import: {out} exists; pass --force to replace it, or -o another path", file=sys.stderr)
            return 1
        try:
            out.write_text(text)
        except OSError as e:
            print(f"oxtui import: cannot write {out} ({e.strerror}); pick a writable path with -o", file=sys.stderr)
            return 1
        print(f"wrote {out} ({len(tables)} process(es)); next: oxtui check {out}", file=sys.stderr)
    for p in problems:
        print(f"check: {p}", file=sys.stderr)
    return 1 if problems else 0


def run_export(args: argparse.Namespace, config: Config) -> int:
    if args.kind == "kubernetes":
        from .kubernetes import export_kubernetes
        files, warn = export_kubernetes(config, args.image, args.namespace)
        target = args.output or "-"
    else:
        from .systemd_units import export_systemd
        files, warn = export_systemd(config)
        target = args.output
        if not target or target == "-":
            print("oxtui export systemd: -o DIR is needed (one file per unit)", file=sys.stderr)
            return 2
    for line in warn:
        print(f"note: {line}", file=sys.stderr)
    if target == "-":
        sys.stdout.write("".join(files.values()))
        return 0
    folder = Path(target).expanduser()
    there = [name for name in files if (folder / name).exists()]
    if there and not args.force:
        print(f"oxtui export: {folder} already has {', '.join(there)}; pass --force to replace them, or -o another "
              "folder", file=sys.stderr)
        return 1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    except OSError as e:
        print(f"oxtui export: cannot write {folder} ({e.strerror}); pick a writable folder with -o", file=sys.stderr)
        return 1
    print(f"wrote {len(files)} file(s) to {folder}: {', '.join(files)}", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction, oxfile_args) -> None:
    s = sub.add_parser("import", help="write an oxfile from a PM2 ecosystem file or a Procfile")
    kinds = s.add_subparsers(dest="kind", metavar="pm2|procfile", required=True, parser_class=type(s))
    k = kinds.add_parser("pm2", help="ecosystem.config.js / .cjs / .mjs / .json / .yaml")
    k.add_argument("file")
    k.add_argument("-o", "--output", metavar="OXFILE", help="write here (default: stdout)")
    k.add_argument("--env", metavar="NAME", help="merge env_NAME over env (PM2's --env)")
    k.add_argument("--listen", action="append", metavar="[NAME=]ADDR",
                   help="give a cluster-mode app a shared address, e.g. 127.0.0.1:3000 (or api=127.0.0.1:3000)")
    k.add_argument("--force", action="store_true", help="replace an existing -o file")
    k = kinds.add_parser("procfile", help="a Procfile (name: command per line)")
    k.add_argument("file")
    k.add_argument("-o", "--output", metavar="OXFILE", help="write here (default: stdout)")
    k.add_argument("--port", help="the web process's port (default: PORT in .env beside the Procfile)")
    k.add_argument("--force", action="store_true", help="replace an existing -o file")
    s = sub.add_parser("export", help="Kubernetes manifests or systemd units from the oxfile")
    kinds = s.add_subparsers(dest="kind", metavar="kubernetes|systemd", required=True, parser_class=type(s))
    k = kinds.add_parser("kubernetes", help="a Deployment (and Service) per process")
    oxfile_args(k)
    k.add_argument("--image", required=True, help="the container image that holds the app")
    k.add_argument("--namespace", help="metadata.namespace of every object")
    k.add_argument("-o", "--output", metavar="DIR|-", help="a folder (one file per process), or - for stdout")
    k.add_argument("--force", action="store_true", help="replace files already in the -o folder")
    k = kinds.add_parser("systemd", help="a socket, a template service and a target per process")
    oxfile_args(k)
    k.add_argument("-o", "--output", metavar="DIR", help="the folder for the unit files")
    k.add_argument("--force", action="store_true", help="replace files already in the folder")
