"""The oxtui terminal UI: live worker grid, keys that scale, kill and reload, a reload panel you can
watch, and the merged logs of every worker.

The app holds no engine state. The client wakes it when the engine has a new snapshot (a key's
effect is drawn as soon as the engine has it, not at a poll's next turn) or new log lines (pacing.py
says when they are taken); it sends commands through the client interface and replies come back as
messages. Nothing here waits on the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..client.link import CanDetach, CanHandOver, EngineClient
from ..protocol import LogBatch, ProcessSnapshot, Snapshot, process_named
from .details import details_text
from .grid import WorkerGrid
from .keys import KEYS, bindings
from .logpane import LogPane
from .messages import CommandDone, EngineStopped, EngineWoke, HandedOver
from .model import (
    SORTS,
    History,
    Row,
    apply_summary,
    build_rows,
    deploy_summary,
    header_text,
    process_info,
    quit_question,
    reload_lines,
    reload_news,
    row_instance,
    save_summary,
    snapshot_time,
    stopping_text,
)
from .pacing import Pacer
from .rowfilter import RowFilter
from .screens import ConfirmScreen, DetailsScreen, HelpScreen, QuitScreen, SearchScreen, SignalScreen

# A look without a wake-up, at the snapshot only: the load average and a client's link state change unseen.
# Not at the logs: new lines always wake the UI, and a take of them here was a frame of its own.
CHECK_INTERVAL = 1.0


class OxtuiApp(App[int]):
    TITLE = "oxtui"
    CSS = """
    Screen { layout: vertical; }
    #header { height: 1; background: $primary-background; color: $text; padding: 0 1; }
    #upper { height: auto; max-height: 60%; min-height: 5; }
    #grid { height: auto; max-height: 100%; }
    #info { height: 1; padding: 0 1; color: $text-muted; }
    #reload { height: auto; max-height: 8; display: none; border-top: solid $warning; padding: 0 1; }
    #reload.active { display: block; }
    Screen.logs-full #upper, Screen.logs-full #info, Screen.logs-full #reload { display: none; }
    """
    BINDINGS = bindings()

    def __init__(self, client: EngineClient, oxfile: Path | str, *, host: str | None = None, clock_free: bool = False,
                 loadavg: Callable[[], tuple[float, ...]] = os.getloadavg):
        super().__init__()
        self.client = client
        self.oxfile = str(oxfile)
        self.host = host or socket.gethostname()
        self.history = History()
        self.sort = "slot"
        self.row_filter = RowFilter()
        self.stopping = False
        self.detaching = False
        self.exit_message: str | None = None
        self._snapshot: Snapshot | None = None
        self._reload_states: dict[str, str] = {}
        self._shown: dict[int, str] = {}      # what each line shows now (_set)
        self.pacer = Pacer(self._post_woke, self.pull_snapshot, self.pull_logs,
                           lambda delay, fn: asyncio.get_running_loop().call_later(delay, fn))
        self._clock_free = clock_free      # snapshot tests: no timers, fixed data
        self._loadavg = loadavg

    # ---- command palette ----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action of the keys, findable by name in ctrl+p."""
        yield from super().get_system_commands(screen)
        for k in KEYS:
            if k.palette and k.action and hasattr(self, "action_" + k.action.split("(")[0]):
                yield SystemCommand(k.palette, f"{k.doc} ({k.shown})", partial(self.run_action, k.action))

    # ---- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept as attributes: App.query_one searches the active screen, which is a modal at times.
        self.header = Static(header_text(None, self.host), id="header")
        self.grid = WorkerGrid(id="grid")
        self.info = Static("", id="info")
        self.reload_panel = Static("", id="reload")
        self.logpane = LogPane(id="lower")
        self.logview, self.logs_title = self.logpane.view, self.logpane.title_bar
        yield self.header
        with Vertical(id="main"):
            # The grid in a container of its own: a widget is re-rendered whenever a change on screen
            # falls inside its container, and in #main each new log line re-rendered the grid too.
            with Vertical(id="upper"):
                yield self.grid
            yield self.info
            yield self.reload_panel
            yield self.logpane
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"oxtui · {self.oxfile}"
        self.grid.focus()
        self.pull()
        if not self._clock_free:
            self.client.set_wake(self.pacer.woken)
            self.set_interval(CHECK_INTERVAL, self.pull_snapshot)

    # ---- what the engine pushes, and taking it (pacing.py says when) ------------------------------

    def _post_woke(self, what: str) -> None:
        with contextlib.suppress(RuntimeError):     # the app's loop is closed: nobody to draw for
            self.post_message(EngineWoke(what))

    @on(EngineWoke)
    def _woke(self, msg: EngineWoke) -> None:
        self.pacer.handle(msg.what)

    def pull(self) -> None:
        """Take whatever is new (at start, once a second, and in tests)."""
        self.pull_snapshot()
        self.pull_logs()

    def pull_logs(self) -> None:
        self.pacer.logs_taken()
        if self.grid.is_attached:
            self._add_logs(*self.client.take_logs())

    def pull_snapshot(self) -> None:
        if not self.grid.is_attached:      # the app is closing: the timer may still fire once
            return
        if self.client.finished.is_set() and not self.stopping:
            # Stopped from elsewhere (`oxtui down`, a shutdown from another attached UI) or gone.
            if not self.detaching:
                self.exit_message = f"the engine for {self.oxfile} has stopped"
            self.exit(0)
            return
        snap = self.client.snapshot()
        if snap is not None and snap is not self._snapshot:
            self._snapshot = snap
            self._set(self.header, (stopping_text(snap) if self.stopping else "") + header_text(
                snap, self.host, self._loadavg(), attached=self.client.attached, width=self.size.width))
            self._show_rows()
            self._show_info()
            self._show_reloads(snap)

    def _add_logs(self, batches: list[LogBatch], dropped: int) -> None:
        self.logpane.add(batches, dropped)

    def _show_rows(self) -> None:
        if self._snapshot is not None:      # (filtered: every row's cells fresh, the filter reads them all)
            self.grid.show(self.row_filter.apply(build_rows(
                self._snapshot, self.history, self.sort, None if self.row_filter else self.grid.window(),
                self.grid.rows_by_key)))

    @on(WorkerGrid.Scrolled)
    def _grid_scrolled(self) -> None:
        self._show_rows()

    def _show_info(self) -> None:
        name = self._selected_process()
        self._set(self.info, Text(self.row_filter.said() + process_info(self._process_snapshot(name) if name else None),
                                  no_wrap=True, overflow="ellipsis"))

    @on(WorkerGrid.RowHighlighted)
    def _row_moved(self) -> None:
        self._show_info()

    @on(WorkerGrid.RowSelected)
    def _row_selected(self) -> None:
        self.show_details()

    def show_details(self) -> None:
        """Enter on a row: the worker's (or process's) details and exit history."""
        row = self.grid.selected()
        if row is None:
            return
        name, slot = row.process, row_instance(row)
        self.push_screen(DetailsScreen(lambda: self._details(name, slot), live=not self._clock_free))

    def _details(self, name: str, slot: int | None) -> str:
        """A worker's (slot None: a process's) details as Rich markup, from the newest snapshot."""
        p = self._process_snapshot(name)
        return details_text(p, slot, now=snapshot_time(self._snapshot)) if p else \
            f"{name} is gone (removed from the oxfile)"

    def _show_reloads(self, snap: Snapshot) -> None:
        self._show_reload_lines(reload_lines(snap, now=None if not self._clock_free else 0.0))
        self._reload_toasts(snap)

    def _show_reload_lines(self, lines: list[str]) -> None:
        self.reload_panel.set_class(bool(lines), "active")
        self._set(self.reload_panel, "\n".join(lines))

    def _set(self, widget: Static, content: str | Text) -> None:
        """Update a line only when its text changed (snapshots come several times a second; the fleet
        view: from every host on its own), and without a layout unless its height can change: a layout
        renders every widget of the screen again, the grid and the logs too, for a header's new CPU%."""
        if self._shown.get(id(widget)) != str(content):
            self._shown[id(widget)] = str(content)
            widget.update(content, layout=widget is self.reload_panel)    # the others are 1 row high (CSS)

    def _reload_toasts(self, snap: Snapshot, where: str = "") -> None:
        """A toast when a reload or run ends; `where` is the fleet's host ("web1/")."""
        for text, title, severity in reload_news(snap, self._reload_states, where):
            self.notify(text, title=title, severity=severity, timeout=10 if severity == "error" else 5)  # type: ignore[arg-type]

    # ---- selection helpers --------------------------------------------------------------------

    def _selected_process(self) -> str | None:
        row = self.grid.selected()
        return row.process if row else None

    def _process_snapshot(self, name: str) -> ProcessSnapshot | None:
        return process_named(self._snapshot, name)

    def send(self, label: str, req: dict[str, Any], describe: Callable[[Any], tuple[str, str]] | None = None) -> None:
        self.client_of_selection().command(req, done=lambda reply: self.post_message(CommandDone(label, reply, describe)))

    def client_of_selection(self) -> EngineClient:
        """The engine a key acts on (the fleet's: the selected row's host and engine)."""
        return self.client

    def where(self) -> str:
        """Where a question is about: "" on one host, " on web2" in the fleet."""
        return ""

    @on(CommandDone)
    def _command_done(self, msg: CommandDone) -> None:
        if msg.reply.get("ok"):
            self.pacer.hold(lambda: self._say_done(msg))     # drawn with the snapshot that shows its effect
        else:
            self.notify(msg.reply.get("error", "failed"), title="Refused", severity="error", timeout=8)

    def _say_done(self, msg: CommandDone) -> None:
        result = msg.reply.get("result")
        if msg.describe is not None:
            text, severity = msg.describe(result)
            self.notify(text, severity=severity, timeout=8)    # type: ignore[arg-type]
        elif msg.label and not (isinstance(result, dict) and result.get("ok") is False):
            self.notify(msg.label, timeout=3)     # (a reload that rolled back: its panel and toast say why)

    # ---- actions ------------------------------------------------------------------------------

    def action_scale(self, delta: int) -> None:
        name = self._selected_process()
        if name is None:
            self.notify("select a process first", severity="warning")
            return
        proc = self._process_snapshot(name)
        current = proc["instances"] if proc else 0
        target = current + delta
        if target < 0:
            return
        req = {"cmd": "scale", "name": name, "n": delta, "relative": True}
        label = f"{name}: {current} → {target} instance(s)"
        if target == 0:
            def answer(yes: bool | None) -> None:
                if yes:
                    self.send(label, req)
            self.push_screen(ConfirmScreen(f"Scale [b]{name}[/b]{self.where()} to 0 instances? It stops serving."),
                             answer)
            return
        self.send(label, req)

    def _signalled_row(self) -> Row | None:
        row = self.grid.selected()
        if row is None or row.kind != "worker" or row.role is not None:
            self.notify("select a worker row to signal it", severity="warning")
            return None
        return row

    def action_kill(self, signal_name: str) -> None:
        if (row := self._signalled_row()) is not None:
            self.send(f"{row.process}.{row.instance}: {signal_name} sent",
                      {"cmd": "kill", "name": row.process, "instance": row.instance, "signal": signal_name})

    def action_signal_menu(self) -> None:
        """S: the menu of every signal; the one chosen is sent as k sends SIGTERM (Esc: none)."""
        if (row := self._signalled_row()) is not None:
            self.push_screen(SignalScreen(f"{row.process}.{row.instance}{self.where()}"),
                             lambda name: self.action_kill(name) if name else None)

    def action_reload(self) -> None:
        name = self._selected_process()
        if name is None:
            self.notify("select a process first", severity="warning")
            return
        self.send("", {"cmd": "reload", "name": name})

    def action_reload_all(self) -> None:
        self.send("", {"cmd": "reload", "name": "all"})

    def action_stop_process(self) -> None:
        name = self._selected_process()
        if not name:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.send(f"{name}: stopped", {"cmd": "stop", "name": name})
        self.push_screen(ConfirmScreen(f"Stop every instance of [b]{name}[/b]{self.where()}? It stops serving: "
                                       "connections to its port are refused until X starts it again."), answer)

    def action_start_process(self) -> None:
        name = self._selected_process()
        if name:
            self.send(f"{name}: started", {"cmd": "start", "name": name})

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.grid.set_sort(self.sort)
        self._show_rows()
        self.notify(f"workers sorted by {self.sort}", timeout=2)

    def action_grid_filter(self) -> None:
        def apply(text: str | None) -> None:
            if text is not None and (problem := self.row_filter.set(text.strip())):
                self.notify(problem, severity="warning", timeout=5)
            elif text is not None:
                self._show_rows()
                self._show_info()
        self.push_screen(SearchScreen(self.row_filter.text, "filter the grid: a regex over each row (!regex: every row "
                                      "but those; empty: every row), Enter to apply, Esc to cancel"), apply)

    def action_toggle_logs(self) -> None:
        if self.logview.has_focus:
            self.grid.focus()
        else:
            self.logview.focus()

    def action_filter(self) -> None:
        self.logpane.next_filter(self.grid.selected())

    def action_invert_filter(self) -> None:
        self.logpane.invert()

    def action_stderr_only(self) -> None:
        self.logpane.stderr_only()

    def action_logs_full(self) -> None:
        full = not self.screen.has_class("logs-full")
        self.screen.set_class(full, "logs-full")
        (self.logview if full else self.grid).focus()

    def action_copy(self) -> None:
        """y: over SSH too, as OSC 52 (the terminal in front of the person puts it in its clipboard)."""
        row = self.grid.selected()
        if self.logview.has_focus:
            text, what = self.logview.visible_text(), "the log lines on screen"
        elif row is not None and row.process and self._process_snapshot(row.process) is not None:
            slot = row_instance(row)
            text = Text.from_markup(self._details(row.process, slot)).plain
            what = row.process + ("" if slot is None else f".{slot}") + "'s details"
        else:
            self.notify("select a process or worker row (or focus the logs) to copy", severity="warning")
            return
        self.copy_to_clipboard(text)
        self.notify(f"copied {what} ({text.count(chr(10)) + 1} lines) to your clipboard (OSC 52)", timeout=4)

    def action_search(self) -> None:
        def found(text: str | None) -> None:
            if text is not None:
                self.logpane.find(text)
        self.push_screen(SearchScreen(self.logpane.search_text), found)

    def action_clear_search(self) -> None:
        if self.logpane.search_text:
            self.logpane.search("")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_apply(self) -> None:
        self.send("", {"cmd": "apply"}, describe=apply_summary)

    def action_save(self) -> None:
        self.send("", {"cmd": "save"}, describe=save_summary)

    def action_deploy(self) -> None:
        def go(ref: str | None) -> None:
            if ref is not None:
                self.send("", {"cmd": "deploy", "ref": ref.strip() or None}, describe=deploy_summary)
        self.push_screen(SearchScreen("", f"ref to deploy{self.where()} (empty: [deploy] ref) · Enter deploys · "
                                      "Esc cancels"), go)

    async def action_quit(self) -> None:
        """Textual's own quit (ctrl+q, the palette's Quit) asks the same question as q."""
        self.action_quit_app()

    def action_quit_app(self) -> None:
        if self.stopping or isinstance(self.screen, QuitScreen):
            return
        question, choices = quit_question(self._snapshot, self.client.attached)

        def answer(key: str | None) -> None:
            if key == "s":
                self.stop_everything()
            elif key == "d":
                self.detach()
            elif key == "b":
                self.move_to_background()
        self.push_screen(QuitScreen(question, choices), answer)

    def move_to_background(self) -> None:
        if not isinstance(self.client, CanHandOver):
            return
        self.notify("moving the engine to the background…", timeout=5)
        self.client.hand_over(lambda reply: self.post_message(HandedOver(reply)))

    @on(HandedOver)
    def _handed_over(self, msg: HandedOver) -> None:
        if not msg.reply.get("ok"):
            self.notify(msg.reply.get("error", "failed"), title="Still running here", severity="error", timeout=10)
            return
        self.detaching = True
        pid = msg.reply["result"]["pid"]
        self.exit_message = (f"the engine now runs in the background as pid {pid}: "
                             f"`oxtui {self.oxfile}` attaches to it, `oxtui down -c {self.oxfile}` stops it")
        self.exit(0)

    def detach(self) -> None:
        self.detaching = True
        if isinstance(self.client, CanDetach):
            self.client.detach()
        self.exit(0)

    def stop_everything(self) -> None:
        """Graceful stop of every worker; the app exits once the engine has stopped them all."""
        if self.stopping:
            return
        self.stopping = True
        self.notify("stopping every worker gracefully…", timeout=30)
        self.client.shutdown(lambda: self.post_message(EngineStopped()))

    @on(EngineStopped)
    def _engine_stopped(self) -> None:
        self.exit(0)
