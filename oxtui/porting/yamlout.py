"""A small YAML writer for the manifests `oxtui export kubernetes` makes: block style, strings as
JSON (valid YAML), and a comment beside any value (what did not carry over is said where it matters).
PyYAML writes no comments, hence this."""

from __future__ import annotations

import json
from typing import Any


class Note:
    """A value with a comment written beside it."""

    def __init__(self, value: Any, comment: str):
        self.value, self.comment = value, comment


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return json.dumps(str(v), ensure_ascii=False)


def _unwrap(v: Any) -> tuple[Any, str]:
    return (v.value, f"  # {v.comment}") if isinstance(v, Note) else (v, "")


def _lines(obj: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(obj, dict):
        for key, raw in obj.items():
            value, comment = _unwrap(raw)
            if isinstance(value, (dict, list)) and value:
                out.append(f"{pad}{key}:{comment}")
                out += _lines(value, indent + 2)
            else:
                empty = "{}" if isinstance(value, dict) else "[]" if isinstance(value, list) else _scalar(value)
                out.append(f"{pad}{key}: {empty}{comment}")
        return out
    for raw in obj:
        value, comment = _unwrap(raw)
        if isinstance(value, (dict, list)) and value:
            inner = _lines(value, indent + 2)
            out.append(f"{pad}- {inner[0].lstrip()}{comment}")
            out += inner[1:]
        else:
            out.append(f"{pad}- {_scalar(value)}{comment}")
    return out


def dump_all(docs: list[tuple[list[str], dict[str, Any]]]) -> str:
    """Documents, each with comment lines above it, separated by ---."""
    parts = []
    for comments, doc in docs:
        parts.append("\n".join([f"# {c}" for c in comments] + _lines(doc, 0)))
    return "---\n" + "\n---\n".join(parts) + "\n"
