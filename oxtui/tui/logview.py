"""The merged log pane: a scroll view that renders only the visible lines from a bounded buffer.

No widget per line and no refresh per line: new lines are appended in batches (about 10 a second)
and the view renders what is on screen. Follow mode sticks to the bottom until you scroll up;
`/` searches with highlights, n/N jump between matches; the filter narrows to a process or worker.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Offset, Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..protocol import STREAM_MARK, LogBatch, format_ts
from .sizing import set_virtual_size

MAX_LINES = 20_000
# At most this many lines are made per pull (10 a second): 25 ms of the UI's time here. A flood
# brings up to 8 MiB (about 100,000 lines) to one pull; making lines of all of them kept the UI
# thread busy for 0.1 s a pull, several times that on a loaded machine, and a key waited behind
# several pulls (1.9 s beside two busy loops, 0.65 s with this bound). Nobody reads 50,000 lines a
# second; the rest are counted as skipped on screen and are in the log files.
PER_PULL = 5_000
PREFIX = 13 + 11 + 2        # "HH:MM:SS.mmm " + the source in 10 + " " + the stream mark and a space
MAX_WIDTH = 1000
PALETTE = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow", "bright_green",
           "bright_magenta", "bright_blue")
TIME_STYLE = Style(dim=True)
MATCH_STYLE = Style(bgcolor="yellow", color="black")
CURRENT_MATCH_STYLE = Style(bgcolor="bright_red", color="white", bold=True)
ERR_STYLE = Style(color="red")
EVENT_STYLE = Style(italic=True, dim=True)


@dataclass(frozen=True, slots=True)
class LogLine:
    ts: float
    process: str
    source: str
    stream: str
    text: str


class LogView(ScrollView, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "next_match", "Next match", show=False),
        Binding("N", "previous_match", "Previous match", show=False),
        Binding("end,G", "follow", "Follow", show=False),
        Binding("home,g", "top", "Top", show=False),
        Binding("z", "toggle_wrap", "Wrap", show=False),
    ]

    class MatchChanged(Message):
        """The current search match moved (n, N, a new search): the title shows "match 3 of 32"."""

    class FollowChanged(Message):
        def __init__(self, follow: bool) -> None:
            super().__init__()
            self.follow = follow

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.all: deque[LogLine] = deque(maxlen=MAX_LINES)
        self.view: deque[LogLine] = deque(maxlen=MAX_LINES)
        self.filter: tuple[str, str | None] | None = None      # (process, source or None)
        self.inverted = False                                   # every line but the filter's
        self.stream: str | None = None                          # "err": stderr only
        self.pattern: re.Pattern[str] | None = None
        self.matches: list[int] = []
        self.search_error: str | None = None       # the typed text was not a regex
        self.current: int = -1
        self.follow = True
        self.dropped = 0
        self._colours: dict[str, Style] = {}
        self._base, self._offset = Style(), Offset(0, 0)      # read once a frame (render_lines)
        self._width = 40
        self.wrap = False
        self._rows: list[tuple[int, int]] = []      # wrapped: (index in view, start in its text) per screen row

    # ---- feeding ------------------------------------------------------------------------------

    def add_batches(self, batches: Iterable[LogBatch]) -> int:
        """Add the newest PER_PULL lines; returns how many older ones were skipped (the caller counts
        them as dropped for the screen)."""
        added = 0
        batches = list(batches)
        kept = _newest(batches, PER_PULL)
        skipped = sum(b.count for b in batches) - sum(len(lines) for _, lines in kept)
        for b, lines in kept:
            src = b.source
            for text in lines:
                line = LogLine(b.ts, b.process, src, b.stream, text)
                self.all.append(line)
                if self._wanted(line):
                    self.view.append(line)
                    added += 1
                    if len(text) + len(src) + 30 > self._width:
                        self._width = min(MAX_WIDTH, len(text) + len(src) + 30)
        if added:
            self._resize()
        return max(0, skipped)

    def _wanted(self, line: LogLine) -> bool:
        if self.stream is not None and line.stream != self.stream:
            return False
        if self.filter is None:
            return True
        return self._filtered(line) != self.inverted

    def _filtered(self, line: LogLine) -> bool:
        process, source = self.filter      # type: ignore[misc]
        if process.endswith("/"):           # the fleet's: a host ("web1/"), every line of its engines
            return line.process.startswith(process)
        return line.process == process and (source is None or line.source == source or line.stream == "event"
                                            and line.source == process)

    def set_filter(self, flt: tuple[str, str | None] | None, inverted: bool = False,
                   stream: str | None = None) -> None:
        self.filter, self.inverted, self.stream = flt, inverted and flt is not None, stream
        self.view = deque((l for l in self.all if self._wanted(l)), maxlen=MAX_LINES)
        self._rematch()
        self._resize()

    def _resize(self) -> None:
        if self.pattern is not None:
            self._rematch()
        if self.wrap:
            self._rewrap()
            set_virtual_size(self, Size(self.size.width, len(self._rows)))
        else:
            set_virtual_size(self, Size(self._width, len(self.view)))
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    # ---- wrapping -----------------------------------------------------------------------------

    def action_toggle_wrap(self) -> None:
        """Long lines on several rows (again: one row per line, scrolled sideways with ← →)."""
        self.wrap = not self.wrap
        self.scroll_to(x=0, animate=False, immediate=True)
        self._resize()
        self.post_message(self.FollowChanged(self.follow))     # the title says "wrapped"

    def _text_width(self) -> int:
        # the region the text is drawn in: without the vertical scrollbar, which would hide the row's end
        return max(10, (self.scrollable_content_region.width or 80) - PREFIX)

    def _rewrap(self) -> None:
        width = self._text_width()
        rows: list[tuple[int, int]] = []
        for i, line in enumerate(self.view):
            n = len(line.text.replace("\t", "    "))
            rows += [(i, start) for start in range(0, max(n, 1), width)]
        self._rows = rows

    def _row_of(self, index: int) -> int:
        """The first screen row of view[index]."""
        if not self.wrap:
            return index
        import bisect
        return bisect.bisect_left(self._rows, (index, 0))

    def on_resize(self) -> None:
        if self.wrap:
            self._resize()

    # ---- search -------------------------------------------------------------------------------

    def search(self, text: str) -> int:
        """Highlight `text` (a regex; a plain string when it does not compile); returns the match count."""
        self.search_error = None
        if not text:
            self.pattern = None
            self.matches = []
            self.refresh()
            return 0
        try:
            self.pattern = re.compile(text, re.IGNORECASE)
        except re.error as e:
            self.search_error = f"not a valid regex ({e}); searched as plain text"
            self.pattern = re.compile(re.escape(text), re.IGNORECASE)
        self._rematch()
        self.current = len(self.matches)
        self.action_previous_match()
        return len(self.matches)

    def _rematch(self) -> None:
        if self.pattern is None:
            self.matches = []
            return
        search = self.pattern.search
        self.matches = [i for i, l in enumerate(self.view) if search(l.text) or search(l.source)]

    def action_next_match(self) -> None:
        self._jump(+1)

    def action_previous_match(self) -> None:
        self._jump(-1)

    def _jump(self, step: int) -> None:
        if not self.matches:
            return
        self.current = (self.current + step) % len(self.matches)
        self.post_message(self.MatchChanged())
        self._set_follow(False)
        y = self._row_of(self.matches[self.current])
        self.scroll_to(y=max(0, y - self.size.height // 2), animate=False, immediate=True)
        self.refresh()

    # ---- follow -------------------------------------------------------------------------------

    def _set_follow(self, follow: bool) -> None:
        if follow != self.follow:
            self.follow = follow
            self.post_message(self.FollowChanged(follow))

    def action_follow(self) -> None:
        self._set_follow(True)
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def action_top(self) -> None:
        self._set_follow(False)
        self.scroll_home(animate=False, immediate=True, x_axis=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        # Scrolling up pauses follow; coming back to the bottom resumes it.
        at_end = new >= self.max_scroll_y - 0.5
        if new < old and not at_end:
            self._set_follow(False)
        elif at_end and not self.follow:
            self._set_follow(True)

    # ---- rendering ----------------------------------------------------------------------------

    def _colour(self, process: str) -> Style:
        style = self._colours.get(process)
        if style is None:
            style = self._colours[process] = Style(color=PALETTE[len(self._colours) % len(PALETTE)], bold=True)
        return style

    def render_lines(self, crop: Region) -> list[Strip]:
        # The pane's style and scroll offset once a frame, not once a line: both are properties that
        # walk the widget's ancestors each time they are read.
        self._base, self._offset = self.rich_style, self.scroll_offset
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self._offset
        index = scroll_y + y
        width = self.size.width
        base = self._base
        start = 0
        if self.wrap:
            if scroll_y + y >= len(self._rows):
                return Strip.blank(width, base)
            index, start = self._rows[scroll_y + y]
        if index >= len(self.view):
            return Strip.blank(width, base)
        line = self.view[index]
        body_style = ERR_STYLE if line.stream == "err" else EVENT_STYLE if line.stream == "event" else Style()
        if start:        # a continuation row: the text goes on under the text, not under the prefix
            chunk = line.text.replace("\t", "    ")[start:start + self._text_width()]
            strip = Strip([Segment(" " * PREFIX), *self._highlight(chunk, body_style, index)])
            return strip.apply_style(base).extend_cell_length(width, base).crop(0, width)
        head = [Segment(format_ts(line.ts)[11:] + " ", TIME_STYLE), Segment(f"{line.source:<10} ", self._colour(line.process)),
                Segment(STREAM_MARK[line.stream] + " ", ERR_STYLE if line.stream == "err" else TIME_STYLE)]
        text = line.text.replace("\t", "    ")[:self._text_width()] if self.wrap else line.text
        if scroll_x == 0 and self.pattern is None and text.isascii() and text.isprintable() \
                and line.source.isascii():
            # The common case, built as the strip it ends as: one cell per character, so the cut and
            # the padding are counted here instead of by three copies of the strip (apply_style, crop,
            # extend). (Rich caches base + style.)
            used = sum(len(s.text) for s in head)
            body = text[:max(0, width - used)]
            return Strip([*(Segment(s.text, base + s.style) for s in head), Segment(body, base + body_style),
                          Segment(" " * max(0, width - used - len(body)), base)],
                         max(width, used)).crop(0, width)
        strip = Strip([*head, *self._highlight(text, body_style, index)]).apply_style(base)
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, base)

    def visible_text(self) -> str:
        """The lines on screen, as plain text (y copies them)."""
        self._base, self._offset = self.rich_style, self.scroll_offset
        return "\n".join(self.render_line(y).text.rstrip() for y in range(self.size.height)).rstrip("\n")

    def _highlight(self, text: str, style: Style, index: int) -> list[Segment]:
        text = text.replace("\t", "    ")
        if self.pattern is None or not self.matches:
            return [Segment(text, style)]
        current = self.matches[self.current] == index if 0 <= self.current < len(self.matches) else False
        out, pos = [], 0
        for m in self.pattern.finditer(text):
            if m.start() == m.end():
                continue
            out.append(Segment(text[pos:m.start()], style))
            out.append(Segment(m.group(), CURRENT_MATCH_STYLE if current else MATCH_STYLE))
            pos = m.end()
        out.append(Segment(text[pos:], style))
        return out

    def title(self, search_text: str) -> str:
        """The bar above the logs: what is shown, follow, wrap, the search and its match, lines skipped."""
        what = "all processes" if self.filter is None else \
            ("all but " if self.inverted else "") + (self.filter[1] or self.filter[0])
        what += " · stderr only" if self.stream == "err" else ""
        mark = "▶ " if self.has_focus else ""
        parts = [f"{mark}logs · {what}", "following" if self.follow else "paused (End to follow)",
                 "wrapped (z: one row per line)" if self.wrap else "z wraps long lines"]
        if search_text:
            where = f"match {self.current + 1} of {len(self.matches)}" if self.matches else "no match"
            parts.append(f"search {search_text!r}: {where}, n/N" + (f" · {self.search_error}" if self.search_error
                                                                   else ""))
        if self.dropped:
            parts.append(f"{self.dropped} lines skipped on screen (in the files)")
        return " · ".join(parts)


def _newest(batches: list[LogBatch], limit: int) -> list[tuple[LogBatch, Sequence[str]]]:
    """The batches' last `limit` lines, oldest first, with their batch; the older batches are never
    decoded."""
    out: list[tuple[LogBatch, Sequence[str]]] = []
    n = 0
    for b in reversed(batches):
        if n >= limit:
            break
        lines = b.lines
        if n + len(lines) > limit:
            lines = lines[len(lines) - (limit - n):]
        out.append((b, lines))
        n += len(lines)
    out.reverse()
    return out
