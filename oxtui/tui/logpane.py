"""The logs' half of the screen: the merged log view under a title bar that says what it shows
(which process, follow or paused, wrapped, the search and its match, lines skipped).

A container of its own on purpose: Textual re-renders every widget whose container a change falls
in, so new log lines, a few times a second, re-render this pane only and never the worker grid.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from ..protocol import LogBatch
from .logview import LogView
from .model import Row


class LogPane(Vertical):
    DEFAULT_CSS = """
    LogPane { height: 1fr; min-height: 5; }
    LogPane > #logs-title { height: 1; background: $boost; padding: 0 1; }
    LogPane > #logs-title.focused { background: $accent; color: $text; text-style: bold; }
    LogPane > LogView { height: 1fr; min-height: 4; }
    LogPane > LogView:focus { background: $boost; }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.title_bar = Static("logs · all processes · following", id="logs-title")
        self.view = LogView(id="logs")
        self.search_text = ""
        self._title = ""

    def compose(self) -> ComposeResult:
        yield self.title_bar
        yield self.view

    def on_mount(self) -> None:
        self.update_title()

    def add(self, batches: list[LogBatch], dropped: int) -> None:
        """Batches to the view; lines the client dropped or the view skipped are counted in the title."""
        dropped += self.view.add_batches(batches)
        if dropped:
            self.view.dropped += dropped
            self.update_title()

    def search(self, text: str) -> int:
        """Highlight `text` (a regex) and jump to its last match; the number of matching lines."""
        self.search_text = text
        n = self.view.search(text)
        self.update_title()
        return n

    def find(self, text: str) -> None:
        """/ : search, focus the lines, and say when the regex is wrong or nothing matches."""
        n = self.search(text)
        self.view.focus()
        if self.view.search_error:
            self.notify(f"{text!r} is {self.view.search_error}", severity="warning", timeout=5)
        elif text and not n:
            self.notify(f"no line matches {text!r}", severity="warning", timeout=3)

    def next_filter(self, row: Row | None) -> None:
        """f : every line -> the selected row's process -> its worker (a worker row) -> every line."""
        flt = self.view.filter
        if flt is None and row is not None:
            self.set_filter((row.process, None))
        elif flt is not None and flt[1] is None and row is not None and row.kind == "worker":
            self.set_filter((row.process, f"{row.process}.{row.instance}"))
        else:
            self.set_filter(None)

    def set_filter(self, flt: tuple[str, str | None] | None) -> None:
        """A new process or worker filter (f): not inverted, the stream choice kept."""
        self.view.set_filter(flt, stream=self.view.stream)
        self.update_title()

    def invert(self) -> None:
        """! : every line but the filter's."""
        v = self.view
        if v.filter is None:
            self.notify("f filters the logs to the selected process first; ! then shows all but it", timeout=4)
            return
        v.set_filter(v.filter, inverted=not v.inverted, stream=v.stream)
        self.update_title()

    def stderr_only(self) -> None:
        v = self.view
        v.set_filter(v.filter, v.inverted, stream=None if v.stream else "err")
        self.update_title()

    def update_title(self) -> None:
        title = self.view.title(self.search_text)
        if title != self._title:        # a 1-row bar: no layout (CSS height 1), and only when it changed
            self._title = title
            self.title_bar.update(title, layout=False)

    @on(LogView.MatchChanged)
    @on(LogView.FollowChanged)
    def _view_changed(self) -> None:
        self.update_title()

    def on_descendant_focus(self) -> None:
        """The focused pane is obvious: the title bar lights up while the logs have the keys."""
        self.title_bar.set_class(self.view.has_focus, "focused")
        self.update_title()

    on_descendant_blur = on_descendant_focus
