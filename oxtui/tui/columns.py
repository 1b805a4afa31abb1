"""The grid's columns: each cell's title and width, and the layouts a terminal's width chooses from
(the grid draws the widest that fits; model.py fills the cells, whatever the layout)."""

from __future__ import annotations

from dataclasses import dataclass

# (title, width) of each of a row's cells, in the widest layout.
COLUMNS = (("NAME", 11), ("PID", 7), ("STATE", 9), ("CPU%", 5), ("CPU 1 min", 9), ("MEM", 7),
           ("MEM 1 min", 9), ("RESTARTS", 8), ("UPTIME", 6), ("LAST EXIT", 13), ("READY/HEALTH", 12))


@dataclass(frozen=True)
class Layout:
    """Which of a row's cells the grid shows, under which titles, how wide, with `lead` spaces before
    each cell and `trail` after it."""

    cells: tuple[int, ...]
    titles: tuple[str, ...]
    widths: tuple[int, ...]
    lead: int = 1
    trail: int = 1

    @property
    def width(self) -> int:
        return sum(self.widths) + len(self.cells) * (self.lead + self.trail)


def _wide(cells: tuple[int, ...]) -> Layout:
    return Layout(cells, tuple(COLUMNS[c][0] for c in cells), tuple(COLUMNS[c][1] for c in cells))


NO_SPARKLINES = (0, 1, 2, 3, 5, 7, 8, 9, 10)
# The widest that fits is drawn: 118 columns with every cell; 96 without the sparklines; 78 with short
# titles and one space between cells, so that 80 columns, scroll bar included, keep every column but
# the sparklines. Narrower still, the grid scrolls sideways.
LAYOUTS = (
    _wide(tuple(range(len(COLUMNS)))),
    _wide(NO_SPARKLINES),
    Layout(NO_SPARKLINES, ("NAME", "PID", "STATE", "CPU%", "MEM", "RST", "UP", "LAST EXIT", "READY"),
           (11, 7, 9, 5, 6, 4, 6, 10, 11), trail=0),
)
# "SIGKILL 2m ago" where the narrowest LAST EXIT column holds it, "SIGKILL 2m" where it would not: the
# same words whatever the terminal's width
LAST_EXIT_WIDTH = min(layout.widths[layout.cells.index(9)] for layout in LAYOUTS)
