"""The worker grid: one line per worker, each drawn once and kept until its cells change.

A frame only crops the lines on screen and marks the cursor's. A key's effect (a `+`: one row more)
draws one new line, and a refresh that changes one worker's CPU redraws that line alone. Textual's
DataTable, which this replaces, re-rendered every cell on screen whenever a row was added or removed
(80-100 ms at 120x36: most of a key's time to the screen), and avoiding that meant reaching into its
private caches. Rows are keyed by worker, so the cursor stays on the same worker whatever moves.
"""

from __future__ import annotations

import os
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..protocol import WorkerState
from .columns import LAYOUTS, Layout
from .model import Row
from .sizing import set_virtual_size

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
GROW = 4            # lines the grid's height grows by (below)


def styled(row: Row, col: int, value: str) -> Text:
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
        return Text(value, style="dim")
    if col == 2:
        return Text(value, style=STATE_STYLES.get(value, ""))
    if col in (4, 6):
        return Text(value, style="cyan" if col == 4 else "magenta")
    if col == 10 and "FAIL" in value:
        return Text(value, style="red")
    if col == 0:
        return Text(value, style="italic yellow" if row.role is not None else "")
    return Text(value)


SORT_COLUMN = {"slot": 0, "cpu": 3, "memory": 5, "restarts": 7}    # model.SORTS -> column


class WorkerGrid(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    WorkerGrid {
        background: $surface;
        color: $foreground;
        & > .worker-grid--header { text-style: bold; background: $panel; color: $foreground; }
        & > .worker-grid--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .worker-grid--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"worker-grid--header", "worker-grid--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Select", show=False),
        Binding("up", "cursor(-1)", "Cursor up", show=False),
        Binding("down", "cursor(1)", "Cursor down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home", "to(0)", "First row", show=False),
        Binding("end,ctrl+end", "to(-1)", "Last row", show=False),
    ]

    class Scrolled(Message):
        """Rows came into view: their sparklines are drawn only now (model.build_rows' window)."""

    class RowHighlighted(Message):
        """The cursor is on another row."""

    class RowSelected(Message):
        """Enter (or a click) on the cursor's row."""

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.rows_by_key: dict[str, Row] = {}
        self._order: list[str] = []
        self._layout: Layout | None = None     # which cells, titles and widths: the widest that fits
        self._lines: dict[str, Strip] = {}     # a row's drawn line, until its cells, the columns or the style change
        self._styles = (Style(), Style(), Style())      # this frame's: the widget's, the titles', the cursor's
        self._header: tuple[Style, list[Segment]] | None = None     # (its style, its line)
        self.cursor_row = 0
        self.sorted_by = "slot"

    # ---- what the app gives and asks --------------------------------------------------------------

    def show(self, rows: list[Row]) -> None:
        """The rows in their order. Lines whose cells did not change are kept as drawn."""
        selected = self.selected_key()
        layout = self._wanted_layout()
        new_layout = layout != self._layout
        if new_layout:
            self._layout, self._lines, self._header = layout, {}, None
        order = [r.key for r in rows]
        changed = [i for i, row in enumerate(rows) if self.rows_by_key.get(row.key) != row]   # (Row is frozen)
        by_key = {r.key: r for r in rows}
        gone = self.rows_by_key.keys() - by_key.keys() if order != self._order else set()
        for key in [*gone, *(order[i] for i in changed)]:      # rows gone or changed: their kept lines too
            self._lines.pop(key, None)
        self.rows_by_key = by_key
        if order == self._order and not new_layout:
            for index in changed:
                self._refresh_row(index)
            return
        self._order = order
        # The grid's height grows and shrinks in steps of GROW lines, not a line per row: a new height lays
        # the whole screen out again and repaints all of it (the logs move), which was most of a + or a -'s
        # time to the screen. Within a step a new row paints its own line and those below it, no more.
        height = -(-(len(order) + 1) // GROW) * GROW
        if self.styles.height is None or self.styles.height.value != height:
            self.styles.height = height
        set_virtual_size(self, Size(self._width(), len(order) + 1))      # + the header line
        if selected in self.rows_by_key:
            self.cursor_row = order.index(selected)
        self.cursor_row = max(0, min(self.cursor_row, len(order) - 1))
        self.refresh()
        if order and self.selected_key() != selected:
            self.post_message(self.RowHighlighted())

    def set_sort(self, sort: str) -> None:
        self.sorted_by = sort
        self._header = None
        self.refresh(self._line_region(0))

    def labels(self) -> list[str]:
        """The column titles shown, ▼ on the one the workers are sorted by."""
        layout = self._layout or self._wanted_layout()
        return [self._label(layout, i) for i in range(len(layout.cells))]

    def window(self, margin: int = 10) -> tuple[int, int]:
        """The row indices on screen, with a margin."""
        top = int(self.scroll_y)
        return max(0, top - margin), top + (self.size.height or 40) + margin

    @property
    def order(self) -> list[str]:
        """The row keys, top to bottom."""
        return self._order

    def selected_key(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    def selected(self) -> Row | None:
        key = self.selected_key()
        return self.rows_by_key.get(key) if key else None

    def move_cursor(self, row: int, animate: bool = False) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        if row == self.cursor_row:
            self._scroll_to_cursor()
            return
        before, self.cursor_row = self.cursor_row, row
        self._refresh_row(before)
        self._refresh_row(row)
        self._scroll_to_cursor()
        self.post_message(self.RowHighlighted())

    # ---- keys and the mouse ---------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_to(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else len(self._order) - 1)

    def action_select(self) -> None:
        if self.selected_key() is not None:
            self.post_message(self.RowSelected())

    def on_click(self, event: events.Click) -> None:
        """A click puts the cursor on a row; a click on the cursor's row selects it (as DataTable did)."""
        row = int(self.scroll_y) + event.y - 1
        if event.y >= 1 and 0 <= row < len(self._order):
            if row == self.cursor_row:
                self.post_message(self.RowSelected())
            self.move_cursor(row)

    def on_key(self, event: events.Key) -> None:
        # A test-only hook (tests/test_keeper.py): a failure inside a widget of a running TUI, driven as a
        # person would drive it, so the test proves that no exception in the UI stops an app.
        key = os.environ.get("OXTUI_TEST_RAISE_ON_KEY")
        if key and event.key == key:
            raise RuntimeError(f"test-only failure on key {key!r} (OXTUI_TEST_RAISE_ON_KEY)")

    def on_resize(self) -> None:
        if self._wanted_layout() != self._layout and self._order:
            self.show([self.rows_by_key[k] for k in self._order])

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if int(old) != int(new):
            self.post_message(self.Scrolled())

    # ---- drawing --------------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # The styles once a frame, not once a line: each look-up walks the widget's ancestors.
        base = self.rich_style
        if base != self._styles[0]:
            self._lines = {}            # drawn over another background (the focus tints it)
        self._styles = (base, self.get_component_rich_style("worker-grid--header"),
                        self.get_component_rich_style("worker-grid--cursor"))
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width, x = self.size.width, int(self.scroll_x)
        base, header, cursor = self._styles
        if y == 0:
            return Strip(self._header_line(header)).crop_extend(x, x + width, header).apply_style(base)
        index = int(self.scroll_y) + y - 1
        if not 0 <= index < len(self._order):
            return Strip.blank(width, base)
        key = self._order[index]
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = Strip(self._draw(self.rows_by_key[key])).apply_style(base)
        line = line.crop_extend(x, x + width, base)
        if index != self.cursor_row:
            return line
        return Strip(Segment.apply_style(line, post_style=cursor), width)   # over the cells' own colours

    def _draw(self, row: Row) -> list[Segment]:
        layout = self._layout or self._wanted_layout()
        text = Text(no_wrap=True, end="")
        for col, width in zip(layout.cells, layout.widths, strict=True):
            cell = styled(row, col, row.cells[col])
            cell.truncate(width, overflow="ellipsis", pad=True)
            text.append(" " * layout.lead)
            text.append_text(cell)
            text.append(" " * layout.trail)
        return list(text.render(self.app.console))

    def _header_line(self, style: Style) -> list[Segment]:
        """The column titles; drawn again when the titles or their style (the theme, the focus) change."""
        if self._header is None or self._header[0] != style:
            layout = self._layout or self._wanted_layout()
            titles = "".join(f"{' ' * layout.lead}{self._label(layout, i):<{width}}{' ' * layout.trail}"
                             for i, width in enumerate(layout.widths))
            self._header = (style, [Segment(titles, style)])
        return self._header[1]

    def _label(self, layout: Layout, i: int) -> str:
        name, width = layout.titles[i], layout.widths[i]
        if SORT_COLUMN.get(self.sorted_by) != layout.cells[i]:
            return name
        return f"{name}▼" if len(name) < width else f"{name[:width - 1]}▼"

    def _width(self) -> int:
        return (self._layout or self._wanted_layout()).width

    def _wanted_layout(self) -> Layout:
        width = self.size.width or self.app.size.width
        return next((layout for layout in LAYOUTS if layout.width <= width), LAYOUTS[-1])

    def _line_region(self, y: int) -> Region:
        return Region(0, y, self.size.width, 1)

    def _refresh_row(self, index: int) -> None:
        y = index - int(self.scroll_y) + 1
        if 1 <= y < self.size.height:
            self.refresh(self._line_region(y))

    def _scroll_to_cursor(self) -> None:
        top, rows = int(self.scroll_y), max(1, self.size.height - 1)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + rows:
            self.scroll_to(y=self.cursor_row - rows + 1, animate=False)
