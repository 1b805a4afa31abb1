"""The worker grid: a DataTable with stable row keys, updated cell by cell.

A refresh that changes only values calls update_cell for the cells that changed; only a change of
the row set (scale, reload surge, canary) rebuilds the table, and then the cursor goes back to the
same row key, so the selection never jumps.
"""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from ..protocol import WorkerState
from .model import COLUMNS, COMPACT, COMPACT_BELOW, Row

STATE_STYLES: dict[str, str] = {
    WorkerState.WAITING: "cyan",
    WorkerState.RUNNING: "green",
    WorkerState.STARTING: "yellow",
    WorkerState.STOPPING: "yellow",
    WorkerState.BACKOFF: "bold red",
    WorkerState.ERRORED: "bold white on red",
    WorkerState.EXITED: "dim",
    WorkerState.COMPLETED: "green dim",
    WorkerState.FAILED: "bold red",
    WorkerState.STOPPED: "dim",
}


def styled(row: Row, col: int, value: str) -> Text | str:
    if row.kind == "host":
        down = row.state != "up"
        return Text(value, style=("bold white on red" if down and col in (0, 2) else "bold reverse" if col == 0
                                  else "bold red" if down else "bold"))
    if row.kind == "engine":
        return Text(value, style="bold cyan" if col == 0 else "cyan")
    if row.kind == "process":
        if col == 0:
            return Text(value, style="bold")
        if col == 10 and value.startswith("⟳"):
            return Text(value, style="bold yellow")
        if col == 10 and "failed" in value:
            return Text(value, style="bold red")
        return Text(value, style="dim") if value else value
    if col == 2:
        return Text(value, style=STATE_STYLES.get(value, ""))
    if col in (4, 6):
        return Text(value, style="cyan" if col == 4 else "magenta")
    if col == 10 and "FAIL" in value:
        return Text(value, style="red")
    if col == 0:
        # Text keeps the indentation that a plain str cell would lose.
        return Text(value, style="italic yellow" if row.role is not None else "")
    return value


SORT_COLUMN = {"slot": 0, "cpu": 3, "memory": 5, "restarts": 7}    # model.SORTS -> column


class WorkerGrid(DataTable):
    class Scrolled(Message):
        """Rows came into view: their sparklines are drawn only now (model.build_rows' window)."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.rows_by_key: dict[str, Row] = {}
        self._order: list[str] = []
        self._columns: tuple[int, ...] = ()
        self.sorted_by = "slot"

    def _label(self, col: int) -> str:
        """The column title, with ▼ on the one the workers are sorted by."""
        name, width = COLUMNS[col]
        if SORT_COLUMN.get(self.sorted_by) != col:
            return name
        return f"{name}▼" if len(name) < width else f"{name[:width - 1]}▼"

    def set_sort(self, sort: str) -> None:
        self.sorted_by = sort
        for col in self._columns:
            self.columns[ColumnKey(str(col))].label = Text(self._label(col))
        self._require_update_dimensions = True
        self.refresh()

    def _wanted_columns(self) -> tuple[int, ...]:
        width = self.size.width or self.app.size.width
        return COMPACT if width < COMPACT_BELOW else tuple(range(len(COLUMNS)))

    def show(self, rows: list[Row]) -> None:
        order = [r.key for r in rows]
        columns = self._wanted_columns()
        if order == self._order and columns == self._columns:
            # rows_by_key holds what is displayed. Off-screen rows are left as they are (with 1000 workers
            # an update_cell for each would cost more than the rest of a refresh); they are brought up to
            # date when they scroll into view (the app rebuilds on Scrolled).
            lo, hi = self.window()
            changed: dict[str, list[tuple[int, Text | str]]] = {}
            for index in range(max(0, lo), min(hi, len(rows))):
                row = rows[index]
                old = self.rows_by_key[row.key]
                if old.cells == row.cells:
                    continue
                changed[row.key] = [(col, styled(row, col, row.cells[col])) for col in columns
                                    if old.cells[col] != row.cells[col]]
                self.rows_by_key[row.key] = row
            if changed:
                self._set_cells(changed)
            return
        selected = self.selected_key()
        if columns == self._columns and self._order and self._patch(rows, order, selected):
            return
        with self.app.batch_update():
            self.clear(columns=columns != self._columns)
            if columns != self._columns:
                for col in columns:
                    self.add_column(self._label(col), width=COLUMNS[col][1], key=str(col))
                self._columns = columns
            for row in rows:
                self.add_row(*(styled(row, c, row.cells[c]) for c in columns), key=row.key)
            self._order = order
            self.rows_by_key = {r.key: r for r in rows}
            if selected in self.rows_by_key:
                self.move_cursor(row=order.index(selected), animate=False)

    def _set_cells(self, changed: dict[str, list[tuple[int, Text | str]]]) -> None:
        """update_cell for each, without its cost. update_cell bumps a counter that is part of every
        render cache key of the table, so one changed cell re-renders every visible cell through Rich
        (about 0.1 ms each): with young workers, whose uptime changes every second, that was most of
        the TUI's CPU with 1000 workers. Here the values go in, only the changed rows' cached renders
        are dropped, and only their lines are repainted. This reaches into DataTable's caches (Textual
        8.2, pinned for the tests, which check what is painted); without them it falls back."""
        try:
            table: Any = self       # private: their types are Textual's business, their keys are read below
            data, cell_cache, row_cache = table._data, table._cell_render_cache, table._row_render_cache
            lines, renderables, count = table._line_cache, table._row_renderable_cache, table._update_count
            locations, offsets = table._row_locations, table._get_offsets
        except AttributeError:
            for key, cells in changed.items():
                for col, value in cells:
                    self.update_cell(key, str(col), value)
            return
        rows = {RowKey(k): cells for k, cells in changed.items()}
        dirty: set[tuple[RowKey, ColumnKey]] = set()
        for row, cells in rows.items():
            for col, value in cells:
                column = ColumnKey(str(col))
                data[row][column] = value
                dirty.add((row, column))
        # .keys(): Textual's LRUCache has no __iter__ (iterating it asks for [0], [1] ...: KeyError)
        for ck in [ck for ck in cell_cache.keys() if (ck[0], ck[1]) in dirty]:  # noqa: SIM118 (row key, column key, ...)
            cell_cache.discard(ck)
        for ck in [ck for ck in row_cache.keys() if ck[0] in rows]:  # noqa: SIM118 (row key, ...)
            row_cache.discard(ck)
        for ck in list(lines.keys()):              # keys start with the line's y
            try:
                stale = offsets(ck[0])[0] in rows
            except LookupError:                    # a y past the rows: dropped too
                stale = True
            if stale:
                lines.discard(ck)
        for row in rows:
            index = locations.get(row)
            renderables.discard((count, index))    # keyed (update count, row index)
            self.refresh_row(index)

    def _patch(self, rows: list[Row], order: list[str], selected: str | None) -> bool:
        """A scale or a reload's surge row: add and remove those rows and re-sort, instead of rebuilding
        every row (a `+` with 1000 workers). False when that does not apply (then the caller rebuilds)."""
        old, new = set(self._order), set(order)
        labels = [str(r.cells[0]) for r in rows]
        if len(set(labels)) != len(labels) or len(old ^ new) > 64:
            return False
        by_key = {r.key: r for r in rows}
        with self.app.batch_update():
            for key in old - new:
                self.remove_row(key)
                del self.rows_by_key[key]
            for key in order:
                row = by_key[key]
                if key not in old:
                    self.add_row(*(styled(row, c, row.cells[c]) for c in self._columns), key=key)
                    self.rows_by_key[key] = row
                elif self.rows_by_key[key].cells != row.cells:
                    # every changed row now, not only those on screen: the labels order the sort below
                    for col in self._columns:
                        if self.rows_by_key[key].cells[col] != row.cells[col]:
                            self.update_cell(key, str(col), styled(row, col, row.cells[col]))
                    self.rows_by_key[key] = row
            position = {label: i for i, label in enumerate(labels)}
            DataTable.sort(self, "0", key=lambda label: position[str(label)])   # self.sort is our sort mode
            self._order = order
            if selected in by_key:
                self.move_cursor(row=order.index(selected), animate=False)
        return True

    def window(self, margin: int = 10) -> tuple[int, int]:
        """The row indices on screen, with a margin."""
        top = int(self.scroll_y)
        return max(0, top - margin), top + (self.size.height or 40) + margin

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if int(old) != int(new):
            self.post_message(self.Scrolled())

    def on_key(self, event) -> None:
        # A test-only hook (tests/test_keeper.py): a failure inside a widget of a running TUI, driven as a
        # person would drive it, so the test proves that no exception in the UI stops an app.
        key = os.environ.get("OXTUI_TEST_RAISE_ON_KEY")
        if key and event.key == key:
            raise RuntimeError(f"test-only failure on key {key!r} (OXTUI_TEST_RAISE_ON_KEY)")

    def on_resize(self) -> None:
        if self.rows_by_key and self._wanted_columns() != self._columns:
            self.show([self.rows_by_key[k] for k in self._order])

    def selected_key(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def selected(self) -> Row | None:
        key = self.selected_key()
        return self.rows_by_key.get(key) if key else None
