"""Every key of the TUI, once: the bindings, the footer, the command palette, the help screen and
the manual's key table (docs/tui.md) are all made from this table (a test checks the page against it).

Pure data and formatting: no widget is built here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class Key:
    section: str                    # "Workers", "Logs" or "App" in the help screen
    shown: str                      # the key as the help screen and the manual write it
    doc: str                        # what it does
    binding: str | None = None      # Textual key names, for a key the app binds itself
    action: str | None = None
    label: str | None = None        # the footer's word; None keeps it out of the footer
    palette: str | None = None      # the command palette's title
    key_display: str | None = None
    where: str = "app"              # "app", "logs" for keys bound by the log view itself, "fleet" for its view
    group: str | None = None        # keys that share one word in the footer ("+ - Scale"): see FOOTER_GROUPS


KEYS: tuple[Key, ...] = (
    Key("Workers", "↑ ↓, mouse", "select a process or worker row"),
    Key("Workers", "+ or =", "add an instance to the selected process", "plus,equals_sign", "scale(1)", "+1",
        "Scale up", "+", group="Scale"),
    Key("Workers", "-", "remove one (the highest slot stops gracefully; asks before going to 0)", "minus",
        "scale(-1)", "-1", "Scale down", "-", group="Scale"),
    Key("Workers", "k", "SIGTERM the selected worker (it restarts as after a crash)", "k", "kill('SIGTERM')", "Kill",
        "Kill worker (SIGTERM)", group="Kill"),
    Key("Workers", "K", "SIGKILL the selected worker, without a grace period", "K", "kill('SIGKILL')", "Kill -9",
        "Kill worker (SIGKILL)", "K", group="Kill"),
    Key("Workers", "S", "send the selected worker any signal, from a menu that says what each is for (HUP, USR1, "
        "TTIN ...)", "S", "signal_menu", None, "Send a signal to the worker", "S"),
    Key("Workers", "r", "rolling reload of the selected process; the reload panel shows each slot live", "r",
        "reload", "Reload", "Reload process", group="Reload"),
    Key("Workers", "R", "rolling reload of every process, one after another", "R", "reload_all", "Reload all",
        "Reload all", "R", group="Reload"),
    Key("Workers", "Enter", "details of the selected worker or process: command, cwd, user, env names, log file, "
        "readiness and health, its processes as a tree, every recent exit with its last lines", where="grid"),
    Key("Workers", "s", "sort workers: slot, CPU, memory, restarts", "s", "sort", None, "Sort workers"),
    Key("Workers", "\\", "filter the grid (htop's key): only the rows whose cells match a regex (`backoff` shows the "
        "workers waiting to restart); !regex: every row but those; empty: every row", "backslash", "grid_filter",
        None, "Filter the grid", "\\"),
    Key("Workers", "y", "copy the selected row's details to the clipboard of the machine you type on, over SSH too "
        "(OSC 52; in tmux: set -g set-clipboard on); with the logs focused, the lines on screen", "y", "copy", None,
        "Copy to clipboard"),
    Key("Workers", "x", "stop the selected process gracefully", "x", "stop_process", None, "Stop process"),
    Key("Workers", "X", "start the selected process", "X", "start_process", None, "Start process"),
    Key("Logs", "l", "focus the merged logs (again: back to the grid)", "l", "toggle_logs", "Logs", "Focus logs",
        group="Logs"),
    Key("Logs", "/", "search the logs (regex) with highlights", "slash", "search", "Search", "Search logs", "/",
        group="Logs"),
    Key("Logs", "f", "filter the logs: all → selected process → selected worker", "f", "filter", "Filter",
        "Filter logs", group="Logs"),
    Key("Logs", "!", "invert the filter: every line but the filtered process's or worker's", "exclamation_mark",
        "invert_filter", None, "Invert the log filter", "!"),
    Key("Logs", "e", "stderr only (again: every stream)", "e", "stderr_only", None, "Logs: stderr only"),
    Key("Logs", "L", "the logs full screen (again: the grid comes back)", "L", "logs_full", None, "Logs full screen",
        "L"),
    Key("Logs", "n / N", "next / previous match", where="logs"),
    Key("Logs", "Esc", "clear the search", "escape", "clear_search"),
    Key("Logs", "End / G", "follow new lines again (scrolling up pauses follow)", where="logs"),
    Key("Logs", "z", "wrap long lines onto several rows (again: one row per line, ← → scroll sideways)",
        where="logs"),
    Key("Fleet", ":", "jump to a host by name (`oxtui fleet` only; there every key acts on the selected row's host)",
        "colon", "jump", "Host", "Jump to host", ":", where="fleet"),
    Key("App", "a", "apply the oxfile as it is now on disk: new processes start, removed ones stop, changed ones "
        "get a rolling reload", "a", "apply", None, "Apply oxfile"),
    Key("App", "D", "deploy: asks for a git ref (empty: the oxfile's [deploy] ref), then builds a release beside the "
        "live one and rolls every process under current onto it; the reload panel shows the build and each slot",
        "D", "deploy", None, "Deploy a release", "D"),
    Key("App", "w", "save the running instance counts into the oxfile (comments and layout kept)", "w", "save",
        None, "Save instance counts"),
    Key("App", "ctrl+p", "command palette: every action by name"),
    Key("App", "?", "help: every key, and what the columns mean", "question_mark", "help", "Help", "Help", "?"),
    Key("App", "ctrl+q", "the same as q (Textual's own quit key asks the same question)"),
    Key("App", "q", "quit: s stops every worker gracefully; b moves the engine to the background with every "
        "worker still running (embedded); d detaches (attached)", "q", "quit_app", "Quit"),
)

NOTES = ("CPU% is percent of one core, summed over the worker's process tree (4 busy threads show 400); "
         "MEM is the tree's RSS. The sparklines cover the last minute.")


# The footer shows bindings in order and cuts what does not fit: these come first, so a terminal of
# 80 columns still shows how to get help and how to leave.
FOOTER_FIRST = ("help", "quit_app")


# Keys side by side in the footer under one word, "+ - Scale  k K Kill  r R Reload  l / f Logs": the
# footer of 80 columns, the fleet's too, then holds every key it shows at 120 (each key's own words
# stay in the help, the palette and the tooltip).
FOOTER_GROUPS = {name: Binding.Group(name, compact=False) for name in ("Scale", "Kill", "Reload", "Logs")}


def bindings(where: tuple[str, ...] = ("app",)) -> list[BindingType]:
    keys = [k for k in KEYS if k.binding is not None and k.where in where and k.action is not None]
    keys.sort(key=lambda k: k.action not in FOOTER_FIRST)
    return [Binding(k.binding or "", k.action or "", k.label or k.palette or k.doc, show=k.label is not None,
                    key_display=k.key_display, group=FOOTER_GROUPS[k.group] if k.group else None)
            for k in keys]       # (binding and action: both set, filtered above)


def help_text() -> Group:
    """The help screen's text: a key per row, its words wrapped beside it (not under it) at 80 columns."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, width=15)
    table.add_column()
    for section in dict.fromkeys(k.section for k in KEYS):
        table.add_row(Text(section, style="bold"), "")
        for k in KEYS:
            if k.section == section:
                table.add_row(f"  {k.shown}", Text(k.doc))
    return Group(table, Text("\n" + NOTES + "\nScripts act on this engine too: `oxtui reload NAME` runs here and "
                                "you watch it live."))


def markdown_table() -> str:
    """The manual's key table (docs/tui.md)."""
    rows = ["| key | does |", "|---|---|"]
    rows += [f"| {_md_keys(k.shown)} | {k.doc} |" for k in KEYS]
    return "\n".join(rows) + "\n\n" + NOTES + "\n"


def _md_keys(shown: str) -> str:
    parts = [p.strip() for p in shown.replace(" or ", " / ").split(" / ")]
    return " / ".join(p if p in ("↑ ↓, mouse",) else f"`{p}`" for p in parts)
