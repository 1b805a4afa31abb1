"""The fleet file: the servers `oxtui fleet` and `-H`/`--fleet` reach through SSH.

    --fleet-file FILE, else $OXTUI_FLEET, else ~/.config/oxtui/fleet.toml

    [hosts.web1]
    ssh = "deploy@web1.example.com"     # anything `ssh` takes: user@host, an alias of ~/.ssh/config
    oxtui = "/srv/venv/bin/oxtui"       # where oxtui is on that host (default: oxtui on its PATH)
    ssh_options = ["-F", "ssh_config"]  # more arguments for ssh (a path relative to this file is made absolute)

Validated like an oxfile: every problem one line naming the file, the table and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..oxfile.fields import FLEET_HOST as HOST
from ..oxfile.table import Table

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# options whose next argument is a file: made absolute from the fleet file's folder
PATH_OPTIONS = {"-F", "-i", "-E", "-S"}


class FleetError(Exception):
    """A fleet file that cannot be used; `errors` has one line per problem."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Host:
    name: str
    ssh: str
    oxtui: str = "oxtui"
    ssh_options: tuple[str, ...] = ()


def default_path() -> Path:
    if os.environ.get("OXTUI_FLEET"):
        return Path(os.environ["OXTUI_FLEET"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oxtui" / "fleet.toml"


def load(path: Path) -> list[Host]:
    file = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FleetError([(f"{file}: not found; write one ([hosts.NAME] with ssh = \"user@host\"), or name hosts "
                          "on the command line")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise FleetError([f"{file}: cannot be read ({e}); check it"]) from None
    except tomllib.TOMLDecodeError as e:
        raise FleetError([f"{file}: TOML syntax error: {e}; fix the syntax at that line"]) from None
    errors: list[str] = []
    for key in data:
        if key != "hosts":
            errors.append(f"{file}: unknown top-level key {key!r}; the file has [hosts.NAME] tables only")
    hosts_raw = data.get("hosts", {})
    if not isinstance(hosts_raw, dict) or not hosts_raw:
        errors.append(f"{file}: no hosts; add a [hosts.NAME] table with ssh = \"user@host\"")
        hosts_raw = {}
    hosts = []
    for name, raw in hosts_raw.items():
        where = f"hosts.{name}"
        if not NAME_RE.match(name):
            errors.append(f"{file}: [hosts.{name!r}]: the name may use letters, digits, '_', '-' and '.' only")
        t = Table(errors, file, where, raw, HOST)
        if "ssh" not in t.data and isinstance(raw, dict):
            t.error("ssh", 'is required: the destination, e.g. ssh = "deploy@web1.example.com"')
        ssh = t.get("ssh")
        options = [_absolute(path.parent, opts, i) for opts in [t.get("ssh_options")] for i in range(len(opts))]
        if ssh:
            hosts.append(Host(name, ssh, t.get("oxtui"), tuple(options)))
    if errors:
        raise FleetError(errors)
    return hosts


def _absolute(base: Path, options: list[str], i: int) -> str:
    if i > 0 and options[i - 1] in PATH_OPTIONS and not options[i].startswith(("/", "~")):
        return str((base / options[i]).resolve())
    return options[i]


def pick(names: list[str] | None, fleet_file: Path | None) -> list[Host]:
    """The hosts a command is about: names (from the file, or else SSH destinations themselves), or
    every host of the file."""
    path = fleet_file or default_path()
    known: list[Host] = []
    if path.exists() or not names:
        known = load(path)
    if not names:
        return known
    by = {h.name: h for h in known}
    return [by.get(n) or Host(n, n) for n in names]
