"""The fleet TUI (`oxtui fleet`): one grid over several hosts, one level more than on one host:

    ◆ web1   up · 12 ms                 3/3 running       (a host: reachable or not, round trip, totals)
    ■ shop   pid 1200, oxtui 0.2.0                        (an engine: its oxfile's folder)
    ▼ web    2/2 up                                       (its processes and workers, as on one host)
    ├ web.0 ...

Every key acts on the selected row's host and engine, and every question names the host. The merged
logs carry the host in each line's source (web1/web.0); `f` narrows them to a host, then a process,
then a worker; `:` jumps to a host by name. A host that drops shows since when and when it is tried
again, and comes back by itself; the others go on (each host has threads of its own: fleet/).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..client.link import EngineClient
from ..fleet.session import BridgedEngine, FleetHost, FleetSession, down_cells, engine_label, host_line
from ..format import count_text, human_bytes, human_duration
from ..protocol import LogBatch, ProcessSnapshot, Snapshot, WorkerState, process_named
from .app import OxtuiApp
from .keys import bindings
from .model import History, Row, build_rows, process_info, reload_lines
from .screens import DetailsScreen, SearchScreen


def host_row(h: FleetHost, snaps: list[Snapshot]) -> Row:
    workers = [w for s in snaps for p in s["processes"] for w in p["workers"] if not w.get("role")]
    running = sum(1 for w in workers if w["state"] == WorkerState.RUNNING)
    cpu = sum((w.get("cpu_percent") or 0) for w in workers) + sum(s["engine"].get("cpu_percent", 0) for s in snaps)
    rss = sum((w.get("rss_bytes") or 0) for w in workers) + sum(s["engine"].get("rss_bytes", 0) for s in snaps)
    link = h.link
    up = link.state == "up"
    if up:
        state = "up" + (f" {link.rtt * 1000:.0f}ms" if link.rtt is not None else "")
        cells = (f"◆ {h.name}", "", state, f"{cpu:.1f}", "", human_bytes(rss), "", "", "", "",
                 f"{running}/{len(workers)} up")
    else:
        since, retry = down_cells(h)
        # a host being tried again after a drop is still down: "…" is only for a first connect
        cells = (f"◆ {h.name}", "", "down" if link.since is not None else "…", "", "", "", "", "", "", since, retry)
    return Row(f"h:{h.name}", "host", "", None, None, cells, "up" if up else "down", host=h.name)


def engine_row(host: str, view: BridgedEngine, snap: Snapshot) -> Row:
    eng = snap["engine"]
    procs = snap["processes"]
    running = sum(1 for p in procs for w in p["workers"] if w["state"] == WorkerState.RUNNING and not w.get("role"))
    total = sum(1 for p in procs for w in p["workers"] if not w.get("role"))
    cells = (f"■ {engine_label(view.oxfile)}", str(snap["engine_pid"]), f"v{eng.get('version', '?')}",
             f"{eng.get('cpu_percent', 0):.1f}", "", human_bytes(eng.get("rss_bytes")), "", "",
             human_duration(eng.get("uptime_s"), coarse=True), "", f"{running}/{total} up")
    return Row(f"e:{host}|{view.oxfile}", "engine", "", None, None, cells, "engine", host=host, engine=view.oxfile)


class FleetApp(OxtuiApp):
    BINDINGS = bindings(("app", "fleet"))

    def __init__(self, session: FleetSession, **kw: Any):
        super().__init__(_NoEngine(), "fleet", **kw)
        self.session = session
        self.histories: dict[tuple[str, str], History] = {}
        self._seen: tuple = ()
        self._reloads_seen: tuple = ()
        self._built: dict[tuple[str, str], tuple[Any, tuple, list[Row]]] = {}   # (snapshot, window and sort, rows)

    # ---- what the single-host app asks for ------------------------------------------------------

    def client_of_selection(self) -> EngineClient:
        row = self.grid.selected()
        view = self._view(row.host, row.engine) if row is not None and row.engine else None
        return view if view is not None else _NoEngine()

    def where(self) -> str:
        row = self.grid.selected()
        return f" on [b]{row.host}[/b]" if row is not None and row.host else ""

    def _view(self, host: str | None, oxfile: str | None) -> BridgedEngine | None:
        h = self.session.host(host or "")
        return None if h is None else next((v for v in h.views() if v.oxfile == oxfile), None)

    def _process_snapshot(self, name: str) -> ProcessSnapshot | None:
        row = self.grid.selected()
        view = self._view(row.host, row.engine) if row is not None else None
        return process_named(view.snapshot() if view is not None else None, name)

    def _selected_process(self) -> str | None:
        row = self.grid.selected()
        return row.process if row is not None and row.process else None

    # ---- pulling from every host ----------------------------------------------------------------

    def on_mount(self) -> None:
        """(Textual calls OxtuiApp.on_mount too: handlers run for every class of the app.)"""
        if not self._clock_free:
            self.session.set_wake(self.pacer.woken)

    def pull_snapshot(self) -> None:
        if not self.grid.is_attached:
            return
        hosts = self.session.hosts
        views = [(h, v, v.snapshot()) for h in hosts for v in h.views()]
        narrow = self.size.width < 110         # the header gets short: 80 columns show it whole
        seen = tuple((h.name, h.link.state, h.link.rtt, h.link.retry_at) for h in hosts) + \
            tuple(id(s) for _, _, s in views) + (narrow,)
        if seen != self._seen:
            self._seen = seen
            self._show_rows()
            self._show_info()
            up = sum(1 for h in hosts if h.link.state == "up")
            workers = [w for _, _, s in views if s for p in s["processes"] for w in p["workers"] if not w.get("role")]
            running = sum(1 for w in workers if w["state"] == WorkerState.RUNNING)
            what, guide = ("running", "") if narrow else ("workers running", " · keys act on the selected host's engine")
            self._set(self.header, f"fleet · {up}/{len(hosts)} hosts up · {running}/{len(workers)} {what} · "
                      f"{len(views)} engine(s){guide} · : jumps to a host")
        if self._reloads_seen != (seen := tuple(id(s) for _, _, s in views)):
            self._reloads_seen = seen
            lines: list[str] = []
            for h, _v, snap in views:
                if snap is not None:
                    lines += [f"{h.name}: {line}" for line in reload_lines(snap)]
                    self._reload_toasts(snap, f"{h.name}/")
            self._show_reload_lines(lines)

    def pull_logs(self) -> None:
        self.pacer.logs_taken()
        if not self.grid.is_attached:
            return
        for h in self.session.hosts:
            for v in h.views():
                batches, dropped = v.take_logs()
                self._add_logs([LogBatch(b.seq, b.ts, f"{h.name}/{b.process}", b.instance, b.stream, b.data, b.count)
                                for b in batches], dropped)

    def _show_rows(self) -> None:
        rows: list[Row] = []
        lo, hi = self.grid.window() if not self.row_filter else (0, 1 << 30)   # filtered: every row's cells fresh
        for h in self.session.hosts:
            views = [(v, v.snapshot()) for v in h.views()]
            rows.append(host_row(h, [s for _, s in views if s]))
            for view, snap in views:
                if snap is None:
                    continue
                rows.append(engine_row(h.name, view, snap))
                window = (lo - len(rows), hi - len(rows))
                # Hosts send their figures at different moments: only the engine whose snapshot changed
                # (or that moved on screen) is built again, not every host's rows at each one's tick.
                cached = self._built.get((h.name, view.oxfile))
                if cached is not None and cached[0] is snap and cached[1] == (window, self.sort):
                    rows += cached[2]
                    continue
                history = self.histories.setdefault((h.name, view.oxfile), History())
                prefix = f"{h.name}|{view.oxfile}|"
                previous = {k[len(prefix):]: r for k, r in self.grid.rows_by_key.items() if k.startswith(prefix)}
                built = [r if r.host else dataclasses.replace(r, key=prefix + r.key, host=h.name, engine=view.oxfile)
                         # a row off screen comes back as it was shown: already with its host and engine
                         for r in build_rows(snap, history, self.sort, window, previous)]
                self._built[(h.name, view.oxfile)] = (snap, (window, self.sort), built)
                rows += built
        self.grid.show(self.row_filter.apply(rows))

    def _show_info(self) -> None:
        from rich.text import Text
        row = self.grid.selected()
        text = ""
        if row is not None and row.kind == "host":
            h = self.session.host(row.host or "")
            if h is not None:
                text = f"{h.name} ({h.host.ssh}): {host_line(h)}"
                if h.link.hello:
                    text += f" · oxtui {h.link.hello.get('version')} as {h.link.hello.get('user')}"
        elif row is not None and row.kind == "engine":
            text = f"{row.host}: {row.engine}"
        elif row is not None:
            text = f"{row.host}: " + process_info(self._process_snapshot(row.process))
        self._set(self.info, Text(self.row_filter.said() + text, no_wrap=True, overflow="ellipsis"))

    def show_details(self) -> None:
        """Enter: a host's link and its engines, an engine's oxfile, or a worker's details as on one host."""
        row = self.grid.selected()
        if row is None or row.kind not in ("host", "engine"):
            super().show_details()
            return
        h = self.session.host(row.host or "")
        if h is None:
            return

        def render() -> str:
            from rich.markup import escape
            lines = [f"[b]{escape(h.name)}[/b]  ssh {escape(h.host.ssh)}  {escape(host_line(h))}"]
            if h.link.hello:
                lines.append(f"oxtui {h.link.hello.get('version')} ({escape(h.host.oxtui)}) as "
                             f"{h.link.hello.get('user')} on {h.link.hello.get('host')}")
            lines.append(f"received {human_bytes(h.link.bytes_in)} over this link")
            for v in h.views():
                snap = v.snapshot()
                if snap is None:
                    continue
                mark = "▶ " if v.oxfile == row.engine else "  "
                procs = ", ".join(f"{p['name']} {count_text(p, '').strip()}" for p in snap["processes"])
                lines.append(f"{mark}{escape(v.oxfile)}: engine pid {snap['engine_pid']}, oxtui "
                             f"{snap['engine'].get('version', '?')}; {escape(procs)}")
            return "\n".join(lines)
        self.push_screen(DetailsScreen(render, live=True))

    # ---- fleet keys -----------------------------------------------------------------------------

    def action_filter(self) -> None:
        """all -> the selected host -> its process -> its worker -> all."""
        flt, row, pane = self.logview.filter, self.grid.selected(), self.logpane
        if row is None:
            pane.set_filter(None)
        elif flt is None:
            pane.set_filter((f"{row.host}/", None))
        elif flt[0].endswith("/") and row.process:
            pane.set_filter((f"{row.host}/{row.process}", None))
        elif flt[1] is None and row.kind == "worker":
            pane.set_filter((f"{row.host}/{row.process}", f"{row.host}/{row.process}.{row.instance}"))
        else:
            pane.set_filter(None)

    def action_reload_all(self) -> None:
        row = self.grid.selected()
        if row is None or not row.engine:
            self.notify("select an engine (or a row under it) to reload all its processes", severity="warning")
            return
        self.send("", {"cmd": "reload", "name": "all"})

    def action_jump(self) -> None:
        def go(name: str | None) -> None:
            if not name:
                return
            names = [h.name for h in self.session.hosts]
            target = next((n for n in names if n == name), None) or next((n for n in names if n.startswith(name)), None)
            if target is None:
                self.notify(f"no host {name!r} (hosts: {', '.join(names)})", severity="warning")
                return
            self.grid.move_cursor(row=self.grid.order.index(f"h:{target}"), animate=False)
        self.push_screen(SearchScreen("", placeholder="jump to a host: its name (or how it starts), Enter; Esc to cancel"), go)

    def action_quit_app(self) -> None:
        """Leaving the fleet view stops nothing: every engine runs on its host."""
        self.exit(0)


class _NoEngine:
    """The client of a selection that is no engine (a host row): every command says so."""

    attached = True

    def __init__(self) -> None:
        import threading
        self.finished = threading.Event()

    def snapshot(self) -> None:
        return None

    def take_logs(self) -> tuple[list, int]:
        return [], 0

    def command(self, req: dict[str, Any], done: Any = None, progress: Any = None) -> None:
        if done is not None:
            done({"ok": False, "error": "select an engine or a row under it (this host is not reachable, or a "
                                        "host row is selected)"})

    def shutdown(self, done: Any) -> None:
        done()

    def set_wake(self, fn: Any) -> None:
        pass
