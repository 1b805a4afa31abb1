"""The JSON Schema of oxfile.toml, made from fields.py (the table `oxtui check` validates with).

Editors with TOML support (Even Better TOML / taplo) use it to complete and validate keys. What a
schema cannot know stays with `oxtui check`: whether cwd and watched paths exist, whether a
`ready.log` regex compiles, whether two processes share an address, the machine's process limits.
"""

from __future__ import annotations

import json
import signal
from typing import Any

from . import fields
from .fields import Field

SCHEMA_ID = "https://oxtui.dev/oxfile.schema.json"
SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*[KMGTkmgt]?([iI]?[bB])?\s*$"
PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ADDRESS_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[0-9.]+|localhost):" + PORT + "$"


def _signals() -> list[str]:
    names = sorted({s.name for s in signal.Signals if not s.name.startswith("SIG_")})
    return [v for n in names for v in (n, n[3:], n.lower(), n[3:].lower())]


def _kind(field: Field) -> dict[str, Any]:
    kind = field.kind
    if kind == "str":
        return {"type": "string", "minLength": 1, "pattern": r"\S"}
    if kind == "bool":
        return {"type": "boolean"}
    if kind == "duration":
        return {"type": "number", "minimum": 0}
    if kind == "posint":
        return {"type": "integer", "minimum": 1}
    if kind == "paths":
        return {"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"}}]}
    if kind == "strlist":
        return {"type": "array", "items": {"type": "string"}}
    if kind == "env":
        return {"type": "object", "additionalProperties": False,
                "patternProperties": {r"^[A-Za-z_][A-Za-z0-9_]*$": {"type": ["string", "number", "boolean"]}}}
    if kind == "size":
        return {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}]}
    if kind == "signal":
        return {"type": "string", "enum": _signals()}
    if kind == "address":
        return {"type": "string", "pattern": ADDRESS_PATTERN}
    if kind == "instances":
        return {"oneOf": [{"type": "integer", "minimum": 0}, {"const": "max"}]}
    if kind == "stdout":
        return {"enum": list(fields.STDOUT_MODES)}
    if kind == "restart":
        return {"enum": list(fields.RESTART_MODES)}
    if kind == "depends":
        return {"oneOf": [{"type": "object", "additionalProperties": {"enum": list(fields.CONDITIONS)}},
                          {"type": "array", "items": {"type": "string"}}]}
    if kind == "ident":
        return {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1}]}
    if kind == "every":
        return {"oneOf": [{"type": "number", "minimum": 0.1},
                          {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"}]}
    if kind == "events":
        return {"type": "array", "items": {"enum": list(fields.NOTIFY_EVENTS)}}
    if kind == "surge":
        return {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\s*\d+\s*%\s*$"}]}
    raise ValueError(f"no schema for kind {kind!r}")


def _table(spec: dict[str, Field], special: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, field in spec.items():
        prop = (special or {}).get(key) or _kind(field)
        prop = {**prop, "description": field.doc}
        if field.default not in (None, [], {}):
            prop["default"] = field.default
        props[key] = prop
    return {"type": "object", "additionalProperties": False, "properties": props}


def schema() -> dict[str, Any]:
    ready = _table(fields.READY)
    ready["properties"]["http"]["pattern"] = "^/"
    ready["properties"]["timeout"]["exclusiveMinimum"] = 0
    ready["properties"]["timeout"].pop("minimum", None)
    health = _table(fields.HEALTH)
    health["properties"]["http"]["pattern"] = "^http://[^/]+"
    health["oneOf"] = [{"required": [k]} for k in ("http", "tcp", "cmd")]
    schedule = _table(fields.SCHEDULE)
    schedule["oneOf"] = [{"required": ["cron"]}, {"required": ["every"]}]
    notify = _table(fields.NOTIFY)
    notify["properties"]["webhook"]["pattern"] = "^https?://"
    process = _table(fields.PROCESS, {"ready": ready, "health": health, "schedule": schedule,
                                      "reload": _table(fields.RELOAD), "notify": notify})
    deploy = _table(fields.DEPLOY)
    deploy["required"] = ["source"]
    process["required"] = ["command"]
    process["not"] = {"required": ["restart", "restart_on_exit"]}     # one name for one setting
    # the canary is reached through the shared socket: ready.http needs listen
    process["dependentSchemas"] = {"ready": {"if": {"properties": {"ready": {"required": ["http"]}}},
                                             "then": {"required": ["listen"]}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "oxtui oxfile.toml",
        "description": "One [processes.NAME] table per program; see `oxtui check`.",
        "type": "object",
        "additionalProperties": False,
        "required": ["processes"],
        "properties": {
            "processes": {"type": "object", "minProperties": 1,
                          "propertyNames": {"pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
                          "additionalProperties": process},
            "logs": _table(fields.LOGS),
            "notify": notify,
            "metrics": _table(fields.METRICS),
            "deploy": deploy,
        },
    }


def schema_json() -> str:
    return json.dumps(schema(), indent=2) + "\n"


def fleet_schema() -> dict[str, Any]:
    """The fleet file's (fleet/fleetfile.py): [hosts.NAME] tables."""
    host = _table(fields.FLEET_HOST)
    host["required"] = ["ssh"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://oxtui.dev/fleet.schema.json",
        "title": "oxtui fleet.toml",
        "description": "One [hosts.NAME] table per server `oxtui fleet` reaches through SSH.",
        "type": "object",
        "additionalProperties": False,
        "required": ["hosts"],
        "properties": {"hosts": {"type": "object", "minProperties": 1,
                                 "propertyNames": {"pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
                                 "additionalProperties": host}},
    }


def fleet_schema_json() -> str:
    return json.dumps(fleet_schema(), indent=2) + "\n"
