"""Reading one TOML table of an oxfile by the kinds fields.py gives its keys: every problem is recorded
as a line that names the file, the table and the key (with "did you mean" for a typo), never raised,
so `oxtui check` prints them all at once."""

from __future__ import annotations

import json
import re
from typing import Any

from . import fields
from .fields import CONDITIONS, RESTART_MODES, STDOUT_MODES, Field
from .values import parse_address, parse_ident, parse_interval, parse_signal, parse_size, parse_surge

CHECKS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "duration": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
                 "a number of seconds >= 0"),
    "posint": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "strlist": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "paths": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
              "a path or a list of paths"),
    "env": (lambda v: isinstance(v, dict), "a table"),
}


def _stdout_mode(value: Any) -> str:
    if value not in STDOUT_MODES:
        raise ValueError('must be "auto" (events only under systemd, everything elsewhere), "all" or "events" '
                         f"(got {value!r})")
    return value


def _restart(value: Any) -> str:
    if value not in RESTART_MODES:
        raise ValueError(f'must be "always", "on-failure" or "never" (got {value!r})')
    return value


def _depends(value: Any) -> dict[str, str]:
    """{ db = "ready" }, or a list of names (each "started", as docker compose reads a list)."""
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return {name: "started" for name in value}
    if not isinstance(value, dict):
        raise ValueError('must be a table like { db = "ready", migrate = "completed_successfully" } '
                         f"(got {value!r})")
    for name, cond in value.items():
        if cond not in CONDITIONS:
            raise ValueError(f"{name} = {cond!r}: the condition must be one of {', '.join(CONDITIONS)}")
    return dict(value)


def _events(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"must be a list of events like [\"crash\", \"reload_failed\"] (got {value!r})")
    bad = [x for x in value if x not in fields.NOTIFY_EVENTS]
    if bad:
        raise ValueError(f"unknown event {bad[0]!r}; events: {', '.join(fields.NOTIFY_EVENTS)}")
    return tuple(value)


PARSERS = {"size": parse_size, "signal": parse_signal, "address": parse_address, "stdout": _stdout_mode,
           "restart": _restart, "depends": _depends, "ident": parse_ident, "every": parse_interval,
           "surge": parse_surge, "events": _events}



class Table:
    """Reads the keys of one TOML table as fields.py describes them, recording every problem instead of
    stopping at the first."""

    def __init__(self, errors: list[str], file: str, where: str, data: Any, spec: dict[str, Field]):
        self.errors, self.file, self.where, self.spec = errors, file, where, spec
        self.data = data if isinstance(data, dict) else {}
        if not isinstance(data, dict):
            self.error(None, f"must be a table (got {type(data).__name__})")
        for key in self.data:
            if key not in spec:
                near = closest(key, set(spec))
                self.error(key, "unknown key" + (f"; did you mean {near!r}?" if near else "")
                           + f" (allowed: {', '.join(sorted(spec))})")

    def error(self, key: str | None, msg: str) -> None:
        if key is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", key):
            key = json.dumps(key)      # as TOML would quote it, and on one line
        self.errors.append(f"{self.file}: [{self.where}]" + (f" {key}" if key else "") + f": {msg}")

    def get(self, key: str) -> Any:
        """The key's value checked and parsed by its kind, or its default (also parsed) when absent or wrong."""
        field = self.spec[key]
        parser = PARSERS.get(field.kind)
        default = field.default
        if default is not None and parser is not None:
            default = parser(default)
        elif isinstance(default, (list, dict)):
            default = type(default)(default)
        elif field.kind == "duration" and default is not None:
            default = float(default)
        if key not in self.data:
            return default
        value = self.data[key]
        if parser is not None:
            try:
                return parser(value)
            except ValueError as e:
                self.error(key, str(e))
                return default
        ok, what = CHECKS[field.kind]
        if not ok(value):
            self.error(key, f"must be {what} (got {value!r})")
            return default
        if field.kind == "str" and not value.strip():
            self.error(key, "must not be empty")
            return default
        return float(value) if field.kind == "duration" else value


def closest(key: str, allowed: set[str]) -> str | None:
    import difflib
    hits = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.7)
    return hits[0] if hits else None



def restart_mode(t: Table) -> str:
    """`restart`, or the seed's `restart_on_exit` (true = always, false = never); not both."""
    if "restart" in t.data and "restart_on_exit" in t.data:
        t.error("restart_on_exit", "is the older name of restart; give only restart")
    old = t.get("restart_on_exit")
    if "restart" not in t.data and old is not None:
        return "always" if old else "never"
    return t.get("restart")

