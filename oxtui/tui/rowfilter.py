"""The grid's filter (`\\`, htop's key for it): the rows whose text matches a regex, or with `!regex`
every row but those. A worker row is matched on all its cells (name, pid, state, last exit,
readiness; in the fleet, its host's name first), so `backoff|errored` shows the workers in trouble
and `!web` hides a process. A process's row stays while any of its workers does (one without
workers: when its own row matches), so the tree reads the same; a fleet's host and engine rows
always stay. Pure: no widget here."""

from __future__ import annotations

import re

from .model import Row


class RowFilter:
    def __init__(self) -> None:
        self.text = ""                          # as typed; "" = every row
        self._regex: re.Pattern[str] | None = None
        self._invert = False

    def __bool__(self) -> bool:
        return self._regex is not None

    def set(self, text: str) -> str | None:
        """Filter by `text` ("" or "!": every row); an error message (the filter unchanged) for a bad regex."""
        invert = text.startswith("!")
        body = text[1:] if invert else text
        try:
            regex = re.compile(body, re.IGNORECASE) if body else None
        except re.error as e:
            return f"{body!r} is not a valid regex ({e})"
        self.text, self._regex, self._invert = (text if regex else ""), regex, invert
        return None

    def said(self) -> str:
        """What the line under the grid starts with while a filter hides rows: it must not be forgotten."""
        return f"grid filtered by {self.text!r} (\\ to change) · " if self._regex is not None else ""

    def keeps(self, row: Row) -> bool:
        text = " ".join((row.host or "", *row.cells))        # a fleet's rows: their host's name first
        return self._regex is None or bool(self._regex.search(text)) != self._invert

    def apply(self, rows: list[Row]) -> list[Row]:
        if self._regex is None:
            return rows

        def owner(r: Row) -> tuple[str | None, str | None, str]:
            return r.host, r.engine, r.process
        matched = {r.key for r in rows if r.kind == "worker" and self.keeps(r)}   # each worker looked at once
        shown = {owner(r) for r in rows if r.key in matched}
        with_workers = {owner(r) for r in rows if r.kind == "worker"}

        def kept(r: Row) -> bool:
            if r.kind == "worker":
                return r.key in matched
            if r.kind == "process":
                return owner(r) in shown or (owner(r) not in with_workers and self.keeps(r))
            return True         # a fleet's host and engine rows
        return [r for r in rows if kept(r)]
