"""Modal screens: help, yes/no confirmation, the quit choices, and the search prompt."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from .keys import help_text


def closable_box() -> VerticalScroll:
    """A scrolling box whose bottom border says how to close it: on the border it stays in sight at
    80x24 however long the text inside (it was the text's last line, below the fold)."""
    box = VerticalScroll()
    box.border_subtitle = "Esc to close · ↑ ↓ scroll"
    return box


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 100%; max-width: 96; height: auto; max-height: 100%;
                                  border: round $accent; padding: 0 1; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        # scrolls: at 80x24 the keys do not fit on one screen
        with closable_box():
            yield Static(help_text(), id="help-text")


class DetailsScreen(ModalScreen[None]):
    """Enter on a row: everything about a worker or process, refreshed while open (model.details_text)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,enter", "dismiss", "Close")]
    DEFAULT_CSS = """
    DetailsScreen { align: center middle; }
    DetailsScreen > VerticalScroll { width: 95%; height: 90%; border: round $accent; padding: 0 1;
                                     background: $surface; }
    """

    def __init__(self, render: Callable[[], str], live: bool = True):
        super().__init__()
        self.render_text = render
        self.live = live

    def compose(self) -> ComposeResult:
        with closable_box():
            yield Static(self.render_text(), id="details-text")

    def on_mount(self) -> None:
        if self.live:
            self.set_interval(1.0, self._refresh)

    def _refresh(self) -> None:
        self.query_one("#details-text", Static).update(self.render_text())


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 64; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    """

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            yield Label("[b]y[/b] yes   [b]n[/b] no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class SearchScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    SearchScreen { align: center bottom; }
    SearchScreen > Input { width: 100%; margin-bottom: 1; }
    """

    def __init__(self, current: str = "", placeholder: str = "search the logs (regex), Enter to find, Esc to cancel"):
        super().__init__()
        self.current = current
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        yield Input(value=self.current, placeholder=self.placeholder)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class QuitScreen(ModalScreen[str | None]):
    """q: what to do with the workers. `choices` are (key, label); the answer is the key pressed."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,n", "choose(None)", "Cancel")]
    DEFAULT_CSS = """
    QuitScreen { align: center middle; }
    QuitScreen #choices { margin-top: 1; }
    QuitScreen > Vertical { width: 76; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    """

    def __init__(self, question: str, choices: list[tuple[str, str]]):
        super().__init__()
        self.question = question
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            lines = [f"[b]{key:<5}[/b]{label}" for key, label in self.choices] + [f"[b]{'Esc':<5}[/b]cancel"]
            yield Static("\n".join(lines), id="choices")

    def on_key(self, event) -> None:
        # y still means yes, as in the confirmation q used to ask: stop everything.
        key = "s" if event.character == "y" else event.character
        if any(key == k for k, _ in self.choices):
            event.stop()
            self.dismiss(key)

    def action_choose(self, key: str | None) -> None:
        self.dismiss(key)
