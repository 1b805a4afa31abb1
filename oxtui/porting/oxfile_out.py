"""Writing an imported oxfile: tomlkit, so every value can carry a comment saying where it came from."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import tomlkit

from ..oxfile.config import ConfigError, load


class Table:
    """One [processes.NAME] being built: values with an optional comment each."""

    def __init__(self, name: str):
        self.name = name
        self.items: list[tuple[str, Any, str | None]] = []
        self.ready: list[tuple[str, Any, str | None]] = []
        self.schedule: list[tuple[str, Any, str | None]] = []
        self.notes: list[str] = []        # comment lines above the table

    def set(self, key: str, value: Any, comment: str | None = None) -> None:
        """Set a key (again: the new value and comment take the old one's place)."""
        at = next((i for i, item in enumerate(self.items) if item[0] == key), None)
        if at is None:
            self.items.append((key, value, comment))
        else:
            self.items[at] = (key, value, comment)


def render(tables: list[Table], header: list[str]) -> str:
    doc = tomlkit.document()
    for line in header:
        doc.add(tomlkit.comment(line))
    procs = tomlkit.table(is_super_table=True)
    for t in tables:
        tbl = tomlkit.table()
        for note in t.notes:
            tbl.add(tomlkit.comment(note))
        for key, value, comment in t.items:
            item = tomlkit.item(value)
            if isinstance(value, dict):
                item = tomlkit.inline_table()
                item.update(value)
            if comment:
                item.comment(comment)
            tbl.add(key, item)
        for name, entries in (("ready", t.ready), ("schedule", t.schedule)):
            if entries:
                sub = tomlkit.table()
                for key, value, comment in entries:
                    item = tomlkit.item(value)
                    if comment:
                        item.comment(comment)
                    sub.add(key, item)
                tbl.add(name, sub)
        procs.add(t.name, tbl)
    doc.add(tomlkit.nl())
    doc.add("processes", procs)
    return tomlkit.dumps(doc)


def check_text(text: str, where: Path) -> list[str]:
    """The problems `oxtui check` would report for this oxfile if it were saved at `where` (relative
    paths in it are resolved from there), or [] when that folder cannot be written to try."""
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=where.parent, delete=True) as f:
            f.write(text)
            f.flush()
            try:
                load(f.name)
            except ConfigError as e:
                return [line.replace(f.name, str(where)) for line in e.errors]
    except OSError:
        pass
    return []
