"""Pictures of the TUI with fixed data (no live PIDs, CPU figures or clocks), compared with
pytest-textual-snapshot. Update them with `pytest tests/test_tui_snapshots.py --snapshot-update`
after a deliberate UI change, and look at the new pictures before committing them."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import pytest
from conftest import screen_ready, until

from oxtui.engine.logs import LogBatch
from oxtui.tui.app import OxtuiApp
from oxtui.tui.model import worker_key

T0 = 1_795_000_000.0


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def worker(i: int, pid: int | None, state: str = "running", role: str | None = None, **kw: Any) -> dict[str, Any]:
    base = {"instance": i, "pid": pid, "state": state, "restarts": 0, "uptime_s": 3723.0, "cpu_percent": 12.5,
            "rss_bytes": 48_500_000, "exit_code": None, "exit_signal": None, "ready": state == "running",
            "health": {"ok": True, "failures": 0, "threshold": 3, "reason": None}, "reason": None, "role": role, "release": 1}
    base.update(kw)
    return base


def snapshot(reloading: bool = False) -> dict[str, Any]:
    web_workers = [worker(0, 4101), worker(1, 4102, restarts=2, exit_signal="SIGKILL", cpu_percent=97.0),
                   worker(2, 4103), worker(3, 4104, cpu_percent=0.0, rss_bytes=41_000_000)]
    reload = None
    if reloading:
        web_workers[0] = worker(0, 5201, release=2, uptime_s=4.0)
        web_workers.append(worker(1, 5202, state="starting", role="surge", release=2, uptime_s=0.4,
                                  cpu_percent=55.0, rss_bytes=30_000_000, health=None))
        reload = {"state": "running", "release": 2, "slot": 1, "step": "slot 1: started new pid 5202, waiting until ready",
                  "reason": None, "started_at": T0, "finished_at": None,
                  "slots": [{"slot": 0, "old_pid": 4101, "new_pid": 5201, "state": "done"},
                            {"slot": 1, "old_pid": 4102, "new_pid": 5202, "state": "starting"}]}
    return {
        "oxfile": "/srv/app/oxfile.toml", "engine_pid": 4000,
        "engine": {"started_at": T0, "uptime_s": 7384.0, "cpu_percent": 0.4, "rss_bytes": 31_000_000},
        "processes": [
            {"name": "web", "instances": 4, "listen": "127.0.0.1:8080", "reload": reload, "log_file": "/x/web.log",
             "workers": web_workers},
            {"name": "worker", "instances": 1, "listen": None, "reload": None, "log_file": "/x/worker.log",
             "workers": [worker(0, 4200, health=None, cpu_percent=1.5)]},
            {"name": "flaky", "instances": 1, "listen": None, "reload": None, "log_file": "/x/flaky.log",
             "command": "python3 flaky.py", "cwd": "/srv/app", "user": "www-data", "env_names": ["API_TOKEN", "DEBUG"],
             "depends_on": {"migrate": "completed_successfully"}, "release": 1, "exits": FLAKY_EXITS,
             "workers": [worker(0, None, state="backoff", restarts=7, exit_code=1, health=None, cpu_percent=None,
                                rss_bytes=None, uptime_s=None, last_exit=FLAKY_EXITS[-1])]},
        ],
    }


FLAKY_EXITS = [
    {"at": T0 + 7384.0 - 600, "pid": 4290, "code": None, "signal": "SIGKILL", "cause": "oom", "uptime_s": 3000.0,
     "note": "probably killed by the kernel's OOM killer (/proc/vmstat oom_kill moved meanwhile)", "instance": 0,
     "release": 1, "tail": ["flaky: cache holds 1800 MB", "flaky: cache holds 1950 MB"]},
    {"at": T0 + 7384.0 - 12, "pid": 4300, "code": 1, "signal": None, "cause": "crash", "uptime_s": 12.0, "note": None,
     "instance": 0, "release": 1, "tail": ["Traceback (most recent call last):", '  File "flaky.py", line 9, in <module>',
                                           "ConnectionResetError: [Errno 104] connection reset by peer [x]"]},
]


def batches() -> list[LogBatch]:
    out = []
    lines = [
        ("web", 0, "event", "started pid 4101"), ("web", 1, "event", "started pid 4102"),
        ("web", 0, "out", "web: pid 4101 instance 0 listening on 127.0.0.1:8080"),
        ("web", 1, "out", "web: pid 4102 instance 1 listening on 127.0.0.1:8080"),
        ("worker", 0, "out", "worker: job 41 done in 120 ms"),
        ("flaky", 0, "err", "flaky: unhandled error: connection reset by peer"),
        ("flaky", 0, "event", "pid 4300 exited with code 1 after 12.0s"),
        ("flaky", 0, "event", "restarting in 0.80s"),
        ("web", 1, "event", "sent SIGKILL to pid 4102"),
        ("worker", 0, "out", "worker: job 42 done in 95 ms"),
        ("worker", 0, "err", "worker: job 42 was slow to fetch its input"),
        ("web", 2, "out", "GET /api/orders 200 12ms"),
    ]
    for i, (p, inst, stream, text) in enumerate(lines):
        out.append(LogBatch(i + 1, T0 + i * 0.731, p, inst, stream, text.encode(), 1, (text,)))
    return out


class FakeClient:
    def __init__(self, snap: dict[str, Any], attached: bool = False):
        self.snap = snap
        self.logs = batches()
        self.attached = attached
        self.finished = threading.Event()

    def snapshot(self):
        return self.snap

    def take_logs(self):
        out, self.logs = self.logs, []
        return out, 0

    def command(self, req, done=None, progress=None):
        if done:
            done({"ok": True, "result": {}})

    def shutdown(self, done):
        done()

    def set_wake(self, fn):
        pass        # clock_free: the tests call app.pull() themselves


def make_app(reloading: bool = False, attached: bool = False) -> OxtuiApp:
    snap = snapshot(reloading)
    app = OxtuiApp(FakeClient(snap, attached), "/srv/app/oxfile.toml", host="vps-1", clock_free=True,
                   loadavg=lambda: (0.42, 0.37, 0.30))
    # a fixed minute of history for the sparklines
    for p in snap["processes"]:
        for w in p["workers"]:
            key = worker_key(p["name"], w)
            app.history.cpu[key] = deque([(i * 7 + w["instance"] * 13) % 100 for i in range(60)], maxlen=60)
            app.history.rss[key] = deque([40e6 + i * 1e5 for i in range(60)], maxlen=60)
            app.history.last[key] = float("inf")
    return app


def test_grid_and_logs(snap_compare):
    assert snap_compare(make_app(), terminal_size=(120, 36))


def test_reload_in_progress(snap_compare):
    assert snap_compare(make_app(reloading=True), terminal_size=(120, 36))


def test_search_highlight(snap_compare):
    async def search(pilot):
        await pilot.press("slash", *"job 4", "enter")
        await pilot.pause()
    assert snap_compare(make_app(), terminal_size=(120, 36), run_before=search)


def test_help(snap_compare):
    async def help_(pilot):
        await pilot.press("question_mark")
        await pilot.pause()
    assert snap_compare(make_app(), terminal_size=(120, 36), run_before=help_)


def test_details_of_a_worker(snap_compare):
    async def details(pilot):
        for _ in range(8):              # down to flaky.0, the last row
            await pilot.press("down")
        await pilot.press("enter")
        await pilot.pause()
    assert snap_compare(make_app(), terminal_size=(120, 36), run_before=details)


def test_attached_header_and_quit_choices(snap_compare):
    async def quit_(pilot):
        await pilot.press("q")
    assert snap_compare(make_app(attached=True), terminal_size=(120, 36), run_before=quit_)


def test_small_terminal(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24))


def test_rows_keep_keys_in_place():
    """The model under the grid: stable keys, process rows first, surge rows after their slot."""
    from oxtui.tui.model import History, build_rows
    rows = build_rows(snapshot(reloading=True), History())
    keys = [r.key for r in rows]
    assert keys[:7] == ["p:web", "w:web:0:", "w:web:1:", "w:web:1:surge", "w:web:2:", "w:web:3:", "p:worker"]
    flaky = next(r for r in rows if r.key == "w:flaky:0:")
    assert flaky.cells[2] == "backoff" and flaky.cells[9] == "code 1 12s" and flaky.cells[1] == "-"
    assert next(r for r in rows if r.key == "w:web:1:").cells[9] == "SIGKILL"


async def test_enter_opens_the_details_and_esc_closes_them():
    from oxtui.tui.screens import DetailsScreen
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(8):
            await pilot.press("down")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen)
        text = str(app.screen.query_one("#details-text").render())
        assert "flaky.0" in text and "ConnectionResetError" in text and "oom" in text and "API_TOKEN" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DetailsScreen)


async def test_z_wraps_a_long_line_and_unwraps_it():
    app = make_app()
    long = "x" * 150 + " END"
    app.client.logs.append(LogBatch(99, T0 + 20, "web", 0, "out", long.encode(), 1, (long,)))
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        view = app.logview
        lines = len(view.view)
        assert view.virtual_size.height == lines and view.virtual_size.width > 120
        await pilot.press("l", "z")
        await pilot.pause()
        assert view.wrap and view.virtual_size.height == lines + 1 and view.virtual_size.width <= 120
        assert "wrapped" in str(app.logs_title.render())
        await pilot.press("z")
        await pilot.pause()
        assert not view.wrap and view.virtual_size.height == lines


async def test_a_pull_past_its_bound_says_in_the_title_how_many_lines_it_skipped():
    from oxtui.tui.logview import PER_PULL

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        app.client.logs = [LogBatch(200 + i, T0 + 30, "worker", 0, "out",
                                    "\n".join(f"line {i}.{j}" for j in range(1000)).encode(), 1000)
                           for i in range(PER_PULL // 1000 + 1)]
        app.pull()
        await pilot.pause()
        assert app.logview.dropped == 1000 and app.logview.all[-1].text == "line 5.999"
        assert "1000 lines skipped on screen (in the files)" in str(app.logs_title.render())


async def test_the_fleet_s_pull_past_its_bound_says_so_in_the_title_too(monkeypatch):
    from oxtui.tui.logview import PER_PULL
    app = make_fleet_app(monkeypatch)

    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        view = app.session.hosts[0].engines["/srv/app/oxfile.toml"]
        for i in range(PER_PULL // 1000 + 1):
            view._logs.add(LogBatch(200 + i, T0 + 30, "worker", 0, "out",
                                    "\n".join(f"line {i}.{j}" for j in range(1000)).encode(), 1000))
        app.pull()
        await pilot.pause()
        assert app.logview.dropped == 1000 and app.logview.all[-1].text == "line 5.999"
        assert app.logview.all[-1].process == "web1/worker"
        assert "1000 lines skipped on screen (in the files)" in str(app.logs_title.render())


async def test_wrapped_rows_lose_no_character_beside_the_scrollbar():
    """At 80x24 with more lines than fit (a vertical scrollbar), each wrapped row holds what is visible."""
    from oxtui.tui.logview import PREFIX
    app = make_app()
    long = "".join(chr(ord("a") + i % 26) for i in range(300)) + " END"
    for i in range(60):
        app.client.logs.append(LogBatch(100 + i, T0 + 21, "worker", 0, "out", f"filler {i}".encode(), 1))
    app.client.logs.append(LogBatch(200, T0 + 22, "web", 0, "out", long.encode(), 1, (long,)))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        view = app.logview
        await pilot.press("l", "z")
        await pilot.pause()
        top = int(view.scroll_offset.y)
        mine = [y for y in range(view.size.height) if top + y < len(view._rows)
                and view.view[view._rows[top + y][0]].text == long]
        assert len(mine) > 4, "the long line is on screen, wrapped"
        visible = view.scrollable_content_region.width
        text = "".join(view.render_line(y).text[PREFIX:visible] for y in mine)
        assert text.rstrip() == long, text


async def test_rows_added_mid_grid_land_in_their_place():
    """A reload's surge row appears under its slot, a scale removes rows: the grid patches rows and
    re-sorts instead of rebuilding (a `+` with 1000 workers), and the order on screen is the model's."""
    from oxtui.tui.model import History, build_rows
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        app.grid.move_cursor(row=3, animate=False)             # web.2
        for snap in (snapshot(reloading=True), snapshot()):
            app.client.snap = snap
            app.pull()
            await pilot.pause()
            want = [r.key for r in build_rows(snap, History())]
            assert app.grid.order == want
            assert app.grid.selected_key() == "w:web:2:"


async def test_rows_off_screen_catch_up_when_they_scroll_into_view():
    """With many workers only rows on screen get fresh cells each refresh (1000 workers would cost a
    rebuild of every row a second); a row scrolled into view shows its current values at once."""
    def many(restarts: int, state: str) -> dict[str, Any]:
        snap = snapshot()
        snap["processes"][0]["workers"] = [worker(i, 6000 + i) for i in range(150)]
        snap["processes"][0]["instances"] = 150
        snap["processes"][0]["workers"][140] = worker(140, 6140, state=state, restarts=restarts)
        return snap

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        app.client.snap = many(0, "running")
        app.pull()
        await pilot.pause()
        far = "w:web:140:"
        app.client.snap = many(5, "backoff")
        app.pull()
        await pilot.pause()
        cells = lambda: app.grid.rows_by_key[far].cells
        assert str(cells()[2]) == "running", "an off-screen row is left as it was"
        app.grid.move_cursor(row=app.grid._order.index(far), animate=False)
        await pilot.pause()
        await pilot.pause(0.1)
        assert str(cells()[2]) == "backoff" and str(cells()[7]) == "5"
        assert app.grid.rows_by_key[far].cells[7] == "5"


async def test_a_changed_cell_is_painted_and_unchanged_rows_stay_as_they_were():
    """The grid updates cells in place and drops only the changed rows' cached renders
    (grid._set_cells): what is painted must be the new value, and every other row unchanged."""
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        grid = app.grid

        def painted(key: str) -> str:
            y = grid._order.index(key) + 1 - int(grid.scroll_y)
            return "".join(seg.text for seg in grid.render_line(y))

        before = {k: painted(k) for k in grid._order}
        assert " running " in before["w:web:1:"] and " 2 " in before["w:web:1:"]
        snap = snapshot()
        snap["processes"][0]["workers"][1].update(state="backoff", restarts=9)
        app.client.snap = snap
        app.pull()
        await pilot.pause()
        after = {k: painted(k) for k in grid._order}
        assert " backoff " in after["w:web:1:"] and " 9 " in after["w:web:1:"]
        assert "3/4 up" in after["p:web"]
        assert {k: v for k, v in after.items() if k not in ("w:web:1:", "p:web")} == \
            {k: v for k, v in before.items() if k not in ("w:web:1:", "p:web")}


async def test_80x24_shows_the_servers_the_header_s_warnings_the_whole_help_and_short_finished_reloads():
    from textual.containers import VerticalScroll

    from oxtui.tui.screens import DetailsScreen, HelpScreen
    snap = snapshot()
    snap["processes"][0]["oxfile_instances"] = 2          # web runs 4, the oxfile says 2
    snap["processes"][0]["reload"] = {"state": "done", "release": 2, "slot": None, "step": "done", "reason": None,
                                      "started_at": T0, "finished_at": T0 + 7384.0 - 5, "kind": "rolling",
                                      "why": "reload", "slots": [{"slot": i, "old_pid": 1, "new_pid": 2, "state": "done"}
                                                                  for i in range(4)]}
    for name in ("migrate", "cleanup"):
        snap["processes"].insert(0, {"name": name, "instances": 1, "listen": None, "reload": None, "task": True,
                                     "log_file": "/x", "workers": [worker(0, None, state="completed")]})
    app = make_app()
    app.client.snap = snap
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        header = str(app.header.render())
        assert "web 4≠2 (w)" in header and len(header) <= 80, header
        grid = app.grid.region
        web_rows = [i for i, key in enumerate(app.grid.order) if key.startswith("w:web")]
        assert web_rows and max(web_rows) + 1 < grid.height, "every web row is on screen without scrolling"
        lines = str(app.reload_panel.render()).splitlines()
        assert lines == ["web: reload of release 2 done"], "a finished reload keeps one line, not one per slot"
        await pilot.press("question_mark")
        await pilot.pause()
        box = app.screen.query_one(VerticalScroll)
        assert isinstance(app.screen, HelpScreen) and box.region.right <= 80 and box.region.bottom <= 24
        assert box.max_scroll_y > 0, "the help scrolls to its last keys"
        assert box.border_subtitle.startswith("Esc to close"), "how to close it is on the border, always in sight"
        await pilot.press("escape", "end", "enter")     # the details of the last worker: two exits with tracebacks
        await until(pilot, lambda: isinstance(app.screen, DetailsScreen) and app.screen.query(VerticalScroll),
                    what="the details open")
        await pilot.pause()
        box = app.screen.query_one(VerticalScroll)
        assert box.max_scroll_y > 0 and box.region.bottom <= 24 and box.border_subtitle.startswith("Esc to close")


async def test_a_scheduled_run_makes_no_toast_and_a_task_run_says_run():
    app = make_app()

    def with_run(state: str, why: str) -> dict:
        snap = snapshot()
        snap["processes"].append({"name": "backup", "instances": 1, "listen": None, "task": True, "log_file": "/x",
                                  "workers": [worker(0, None, state="completed")],
                                  "reload": {"state": state, "release": 1, "slot": None, "step": "", "reason": None,
                                             "started_at": T0, "finished_at": None, "kind": "run", "why": why,
                                             "slots": []}})
        return snap
    async with app.run_test(size=(120, 36)) as pilot:
        for why in ("schedule", "reload"):
            for state in ("running", "done"):
                app.client.snap = with_run(state, why)
                app.pull()
                await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert messages == ["backup: run done, every instance completed"], messages
        assert "run done" in str(app.grid.rows_by_key["p:backup"].cells), "a task's row says run, not reload"


def make_fleet_app(monkeypatch) -> Any:
    """The fleet view with fixed data: two hosts up (one engine each), one unreachable."""
    import types

    import oxtui.fleet.session as fleet_session
    from oxtui.fleet.fleetfile import Host
    from oxtui.fleet.session import BridgedEngine, FleetSession
    from oxtui.tui.fleet import FleetApp
    now = T0 + 7384.0
    monkeypatch.setattr(fleet_session, "time", types.SimpleNamespace(time=lambda: now, strftime=time.strftime,
                                                                     localtime=time.localtime))
    session = FleetSession([Host("web1", "deploy@web1.example.com"), Host("web2", "deploy@web2.example.com"),
                            Host("db1", "deploy@db1.example.com")])
    web1, web2, db1 = session.hosts
    second = snapshot()
    second["processes"] = [{**second["processes"][0], "instances": 2, "workers": [
        worker(0, 7301, cpu_percent=31.0), worker(1, 7302, cpu_percent=28.5)]}]
    for h, snap, rtt in ((web1, snapshot(), 0.012), (web2, second, 0.034)):
        h.link.state, h.link.rtt = "up", rtt
        h.link.hello = {"version": "0.2.0", "user": "deploy", "host": h.name}
        view = h.engines["/srv/app/oxfile.toml"] = BridgedEngine(h.link, "/srv/app/oxfile.toml")
        snap["engine"] = {**snap["engine"], "version": "0.2.0"}
        view._snapshot = snap
        for b in batches()[:6]:
            view._logs.add(b)
    db1.link.state, db1.link.since, db1.link.retry_at = "unreachable", now - 95, now + 8
    db1.link.reason = "ssh: connect to host db1.example.com port 22: Connection refused"
    return FleetApp(session, host="laptop", clock_free=True, loadavg=lambda: (0.1, 0.1, 0.1))


def test_fleet(snap_compare, monkeypatch):
    assert snap_compare(make_fleet_app(monkeypatch), terminal_size=(120, 36))


async def test_the_fleet_at_80x24_keeps_its_header_and_its_host_key_and_filters_by_host(monkeypatch):
    app = make_fleet_app(monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await screen_ready(pilot)
        await until(pilot, lambda: "hosts up" in str(app.header.render()), what="the fleet's header")
        header = str(app.header.render())
        assert len(header) <= 80 and header.endswith(": jumps to a host"), header
        host_key = next(k for k in app.screen.query("FooterKey") if k.key == "colon")
        assert host_key.region.width and host_key.region.right <= 80
        await pilot.press("backslash", *"web1.*flaky", "enter")     # the fleet's grid filters too
        await until(pilot, lambda: [k for k in app.grid.order if k.startswith("web")] == [
            "web1|/srv/app/oxfile.toml|p:flaky", "web1|/srv/app/oxfile.toml|w:flaky:0:"], what="web1's flaky")
        assert [k for k in app.grid.order if k.startswith("h:")] == ["h:web1", "h:web2", "h:db1"], "hosts stay"


def test_the_header_says_which_logs_are_not_written_while_it_lasts():
    from oxtui.tui.model import header_text
    snap = snapshot()
    assert "logs" not in header_text(snap, "web1")
    snap["processes"][0]["log_error"] = {"since": 1.0, "error": "ENOSPC", "text": "No space left on device",
                                         "lines_not_written": 3320, "file": "/x/web.log"}
    name = snap["processes"][0]["name"]
    assert f"logs not written: {name} (ENOSPC, 3320 lines)" in header_text(snap, "web1")
    assert "logs: ENOSPC" in header_text(snap, "web1", width=80)


def test_the_grid_filter_keeps_matching_rows_with_their_process_and_inverts_with_a_bang():
    from oxtui.tui.model import History, build_rows
    from oxtui.tui.rowfilter import RowFilter
    rows = build_rows(snapshot(), History())
    f = RowFilter()
    assert f.apply(rows) == rows and f.said() == ""
    assert f.set("backoff") is None
    assert [r.key for r in f.apply(rows)] == ["p:flaky", "w:flaky:0:"], "the worker and its process's row"
    assert f.set("!WEB") is None            # case does not matter
    kept = [r.key for r in f.apply(rows)]
    assert kept == ["p:worker", "w:worker:0:", "p:flaky", "w:flaky:0:"], kept
    problem = f.set("web[")
    assert problem and "not a valid regex" in problem and f.text == "!WEB", "a bad regex changes nothing"
    assert f.set("4101") is None and [r.key for r in f.apply(rows)] == ["p:web", "w:web:0:"], "any cell: a pid"
    assert f.set("") is None and f.apply(rows) == rows and not f


async def test_backslash_filters_the_grid_and_says_so_until_it_is_emptied():
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await screen_ready(pilot)
        everything = list(app.grid.order)
        await pilot.press("backslash", *"flaky", "enter")
        await until(pilot, lambda: app.grid.order == ["p:flaky", "w:flaky:0:"], what="only flaky's rows")
        assert str(app.info.render()).startswith("grid filtered by 'flaky'")
        await pilot.press("backslash", *"(", "enter")
        await until(pilot, lambda: any("not a valid regex" in n.message for n in app._notifications))
        assert app.grid.order == ["p:flaky", "w:flaky:0:"], "a bad regex leaves the filter as it was"
        await pilot.press("backslash", *["backspace"] * 5, "enter")
        await until(pilot, lambda: app.grid.order == everything, what="every row back")
        assert not str(app.info.render()).startswith("grid filtered")
