"""Modal screens: help, details, yes/no confirmation, the quit choices, the search prompt and the
signal menu."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

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
    """Enter on a row: everything about a worker or process, refreshed while open (details.details_text)."""

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


# What the signals servers are sent for mean, beside the system's own name of each (signal.strsignal).
SIGNAL_USES = {
    "SIGHUP": "reload the configuration, reopen log files (nginx, gunicorn's master)",
    "SIGINT": "interrupt, as Ctrl-C does",
    "SIGQUIT": "quit (gunicorn: at once; the JVM: a thread dump)",
    "SIGTERM": "stop gracefully: what k sends (the worker restarts as after a crash)",
    "SIGKILL": "end at once, no clean-up: what K sends",
    "SIGUSR1": "the app's own (Node: open the inspector; gunicorn: reopen log files)",
    "SIGUSR2": "the app's own (gunicorn: upgrade its binary in place)",
    "SIGTTIN": "gunicorn: one worker more",
    "SIGTTOU": "gunicorn: one worker fewer",
    "SIGWINCH": "gunicorn: stop its workers gracefully, keep the master",
    "SIGSTOP": "pause it (it cannot refuse; the engine may then find it not ready)",
    "SIGCONT": "go on after SIGSTOP",
}


class SignalScreen(ModalScreen[str | None]):
    """S: any signal to the selected worker, as btop and htop offer; the answer is the signal's name."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "cancel", "Cancel")]
    DEFAULT_CSS = """
    SignalScreen { align: center middle; }
    SignalScreen > OptionList { width: 100%; max-width: 96; height: auto; max-height: 100%;
                                border: round $warning; background: $surface; }
    """

    def __init__(self, worker: str):
        super().__init__()
        self.worker = worker

    def compose(self) -> ComposeResult:
        import signal

        from rich.table import Table

        def line(sig: signal.Signals) -> Table:       # what it is for wraps beside its name, not under it
            row = Table.grid(padding=(0, 1))
            row.add_column(width=2, justify="right")
            row.add_column(width=9)
            row.add_column()
            row.add_row(str(sig.value), sig.name, SIGNAL_USES.get(sig.name) or signal.strsignal(sig))
            return row
        menu = OptionList(*(Option(line(sig), id=sig.name) for sig in sorted(signal.valid_signals())
                            if isinstance(sig, signal.Signals)))
        menu.border_title = f"send a signal to {self.worker}"
        menu.border_subtitle = "↑ ↓ choose · Enter sends · Esc cancels"
        yield menu

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        menu.highlighted = menu.get_option_index("SIGTERM")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
