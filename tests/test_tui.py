"""The TUI driven with Pilot against the real engine (embedded on its own thread) and real children."""

from __future__ import annotations

import signal

import pytest
from conftest import APPS, PY, free_port, screen_ready, until, write_oxfile

from oxtui.client.embedded import EmbeddedEngine
from oxtui.oxfile.config import load
from oxtui.tui.app import OxtuiApp
from oxtui.tui.screens import ConfirmScreen, HelpScreen, QuitScreen, SearchScreen


def proc(app: OxtuiApp, name: str = "app") -> dict:
    snap = app.client.snapshot()
    return next(p for p in snap["processes"] if p["name"] == name)


async def settled(pilot, app: OxtuiApp) -> None:
    """Every command sent so far has reached the engine: a status request sent after them has been
    answered (commands run in order), so a negative check after this needs no fixed sleep."""
    answered = []
    app.client.command({"cmd": "status"}, answered.append)
    await until(pilot, lambda: answered, what="the engine to answer")


def running(app: OxtuiApp, name: str = "app") -> list[dict]:
    return [w for w in proc(app, name)["workers"] if w["state"] == "running" and not w["role"]]


@pytest.fixture
def tui(tmp_path):
    """Yields a factory: oxfile body -> (engine, app). Every engine is stopped and joined after the test."""
    engines: list[EmbeddedEngine] = []

    def make(body: str) -> OxtuiApp:
        engine = EmbeddedEngine(load(write_oxfile(tmp_path, body)))
        engine.start()
        engines.append(engine)
        return OxtuiApp(engine, tmp_path / "oxfile.toml", host="testhost")

    yield make
    for e in engines:
        e.shutdown()
        assert e.join(30), "engine thread did not stop"


SLEEPERS = '''
[processes.app]
command = "sleep 60"
instances = 2
stop_timeout = 2
[processes.other]
command = "sleep 60"
'''


async def test_a_key_s_effect_is_drawn_on_the_engine_s_wake_up_without_any_poll(tui, monkeypatch):
    """Push, not poll: the once-a-second pull is put off for an hour, so the new row can only come from
    the engine waking the UI (EngineClient.set_wake); the same for the log line the new worker prints."""
    import oxtui.tui.app as tui_app
    monkeypatch.setattr(tui_app, "CHECK_INTERVAL", 3600)
    app = tui(f'''
[processes.app]
command = "{PY} -u -c 'import os, time; print(\\"hello from\\", os.environ[\\"OXTUI_INSTANCE\\"], flush=True); time.sleep(60)'"
stop_timeout = 2
''')

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: "w:app:0:" in app.grid.rows_by_key, what="the first row")
        pulls = []
        monkeypatch.setattr(app, "pull", lambda: pulls.append(1))
        await pilot.press("plus")
        await until(pilot, lambda: "w:app:1:" in app.grid.rows_by_key, what="the new worker's row")
        # the command's toast, held for the snapshot that shows its effect (tui/pacing.py), is said
        await until(pilot, lambda: any("app: 1 → 2 instance(s)" in str(n.message) for n in app._notifications),
                    what="the toast")
        await until(pilot, lambda: any(l.text == "hello from 1" for l in app.logview.all), what="its line")
        assert not pulls, "drawn by a poll, not by the engine's wake-up"
        app.client.shutdown()           # stopped from elsewhere (as `oxtui down` does): the app learns it at once
        await until(pilot, lambda: app.exit_message is not None, what="the app told the engine stopped")
        assert "has stopped" in app.exit_message and not pulls


async def test_scale_up_down_and_confirm_zero(tui):
    app = tui(SLEEPERS)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2, what="2 running")
        assert app.grid.selected_key() == "p:app"
        await pilot.press("plus")
        await until(pilot, lambda: len(running(app)) == 3 and "w:app:2:" in app.grid.rows_by_key, what="3rd row")
        await pilot.press("equals_sign")
        await until(pilot, lambda: proc(app)["instances"] == 4)
        for left in (3, 2, 1):
            await pilot.press("minus")
            await until(pilot, lambda left=left: proc(app)["instances"] == left, what=f"{left} instances")
        await until(pilot, lambda: "w:app:1:" not in app.grid.rows_by_key)
        assert app.grid.selected_key() == "p:app", "the selection must not jump"
        await pilot.press("minus")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await settled(pilot, app)
        assert proc(app)["instances"] == 1
        await pilot.press("minus")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: proc(app)["instances"] == 0 and not proc(app)["workers"])


async def test_kill_keys_restart_the_selected_worker(tui):
    app = tui(SLEEPERS)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        await pilot.press("down")                       # app.0
        assert app.grid.selected_key() == "w:app:0:"
        old = running(app)[0]["pid"]
        await pilot.press("k")
        await until(pilot, lambda: (w := proc(app)["workers"][0])["restarts"] == 1 and w["pid"] not in (None, old),
                    what="SIGTERM restart")
        assert proc(app)["workers"][1]["restarts"] == 0
        await pilot.press("down")                       # app.1
        await pilot.press("K")
        await until(pilot, lambda: proc(app)["workers"][1]["restarts"] == 1)
        assert app.grid.selected_key() == "w:app:1:"
        await pilot.press("up", "up")                   # process row: k is refused politely
        await pilot.press("k")
        await settled(pilot, app)
        assert proc(app)["workers"][0]["restarts"] == 1


async def test_s_sends_any_signal_from_a_menu_and_esc_sends_none(tui):
    from textual.widgets import OptionList

    from oxtui.tui.screens import SignalScreen
    app = tui(SLEEPERS)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        await pilot.press("S")                          # on the process's row: a worker's signal, not a menu
        await until(pilot, lambda: any("select a worker row" in str(n.message) for n in app._notifications),
                    what="the refusal")
        assert not isinstance(app.screen, SignalScreen)
        await pilot.press("down", "S")                  # app.0
        await until(pilot, lambda: isinstance(app.screen, SignalScreen), what="the signal menu")
        menu = app.screen.query_one(OptionList)
        assert menu.border_title == "send a signal to app.0"
        assert menu.get_option_at_index(menu.highlighted or 0).id == "SIGTERM", "k's signal first"
        await pilot.press("escape")
        await settled(pilot, app)
        assert proc(app)["workers"][0]["restarts"] == 0, "Esc sends nothing"
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, SignalScreen), what="the signal menu again")
        await pilot.press(*["up"] * (signal.SIGTERM - signal.SIGUSR1), "enter")     # 15 -> 10
        await until(pilot, lambda: (w := proc(app)["workers"][0])["restarts"] == 1
                    and (w.get("last_exit") or {}).get("signal") == "SIGUSR1", what="sleep ended by SIGUSR1")
        assert proc(app)["workers"][1]["restarts"] == 0, "the selected worker only"


async def test_a_worker_of_several_processes_shows_its_tree_in_its_details(tui):
    from oxtui.tui.screens import DetailsScreen
    app = tui('''
        [processes.app]
        command = "sleep 60 & sleep 61 & wait"
        [processes.other]
        command = "sleep 60"
    ''')

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len((proc(app)["workers"][0]).get("tree") or []) == 3, 15,
                    what="the shell and its two sleeps sampled")
        w = proc(app)["workers"][0]
        sleeps = sorted(m["command"] for m in w["tree"] if m["ppid"] == w["pid"])
        assert sleeps == ["sleep 60", "sleep 61"], w["tree"]
        assert proc(app, "other")["workers"][0]["tree"] == [], "one process: no tree to show"
        await pilot.press("down", "enter")              # app.0
        await until(pilot, lambda: isinstance(app.screen, DetailsScreen), what="the details")
        text = str(app.screen.query_one("#details-text").render())
        assert "processes (3, whose sum CPU% and MEM show)" in text, text
        kids = sorted((m["pid"], m["command"]) for m in w["tree"] if m["ppid"] == w["pid"])
        assert f"  {w['pid']} /bin/sh -c sleep 60" in text, text
        assert f"├ {kids[0][0]} {kids[0][1]}" in text and f"└ {kids[1][0]} {kids[1][1]}" in text, text


async def test_reload_keys_and_the_reload_panel(tui):
    port = free_port()
    app = tui(f'''
        [processes.app]
        command = "{PY} {APPS / 'app.py'}"
        instances = 2
        listen = "127.0.0.1:{port}"
        [processes.app.ready]
        log = "^ready"
        [processes.other]
        command = "sleep 60"
    ''')

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2, 15)
        before = {w["pid"] for w in running(app)}
        seen_panel = []
        await pilot.press("r")
        await until(pilot, lambda: (seen_panel.append(app.reload_panel.has_class("active"))
                                    or proc(app)["reload"] and proc(app)["reload"]["state"] == "done"), 30)
        assert any(seen_panel), "the reload panel shows while the reload runs"
        assert not ({w["pid"] for w in running(app)} & before)
        await pilot.press("R")
        await until(pilot, lambda: proc(app, "other")["reload"] and proc(app, "other")["reload"]["state"] == "done", 30)
        assert proc(app)["reload"]["release"] == 3


async def test_logs_focus_filter_search_and_help(tui):
    app = tui('''
        [processes.app]
        command = "sh -c 'while true; do echo tick-$OXTUI_INSTANCE; sleep 0.05; done'"
        instances = 2
        [processes.other]
        command = "sh -c 'echo needle here; exec sleep 60'"
    ''')

    async with app.run_test(size=(120, 36)) as pilot:
        view = app.logview
        await until(pilot, lambda: any(l.text == "needle here" for l in view.all), what="output in the view")
        await pilot.press("l")
        assert view.has_focus
        await pilot.press("l")
        assert app.grid.has_focus
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"needle", "enter")
        await until(pilot, lambda: view.matches, what="a match")
        assert view.pattern.pattern == "needle" and not view.follow
        assert view.view[view.matches[view.current]].text == "needle here"
        await pilot.press("escape")
        assert view.pattern is None
        # filter: selected process, then selected worker, then all again
        await pilot.press("l")                          # back to the grid (search focused the logs)
        assert app.grid.has_focus
        await pilot.press("down")                       # app.0
        await pilot.press("f")
        await until(pilot, lambda: view.filter == ("app", None))
        assert all(l.process == "app" for l in view.view)
        await pilot.press("f")
        await until(pilot, lambda: view.filter == ("app", "app.0"))
        assert {l.source for l in view.view if l.stream != "event"} == {"app.0"}
        await pilot.press("f")
        assert view.filter is None
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        # snapshots and log lines keep arriving under a modal screen (a regression: the widgets
        # were looked up on the active screen, which the modal had replaced)
        seen = len(view.all)
        await until(pilot, lambda: len(view.all) > seen + 10, what="logs while the help is open")
        await pilot.pause(1.2)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_quit_stops_every_worker_gracefully(tui):
    app = tui(SLEEPERS)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuitScreen))
        assert [key for key, _ in app.screen.choices] == ["s", "b"]    # embedded: no detach
        await pilot.press("d")                                   # so d does nothing here
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("q")                                   # and q does not stack another
        assert len(app.screen_stack) == 2
        await pilot.press("y")                                   # y, as in "yes, quit": same as s
        await until(pilot, lambda: app.client.finished.is_set(), 20, what="engine stopped")
    assert app.return_value == 0
    assert all(w["state"] == "stopped" for p in app.client.snapshot()["processes"] for w in p["workers"])


async def test_a_log_flood_keeps_keys_answered(tui):
    flood = ("import sys\\nw = sys.stdout.write\\nwhile True:\\n"
             "    [w('flood line with some text to make it about eighty bytes long .......\\\\n') for _ in range(1000)]")
    app = tui(f'''
        [processes.app]
        command = "sleep 60"
        [processes.flood]
        command = "{PY} -c \\"{flood}\\""
    ''')

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(app.logview.all) > 5000, 15, what="flood reaches the view")
        # The key as a terminal sends it. Not pilot.press: Pilot then waits (twice, up to 1 s each)
        # for the process to go idle, which a flood never lets it, so it timed Pilot, not the UI.
        app.simulate_key("plus")
        # The flood never ends: a UI that stalls under it never draws the row (no time bound here:
        # how fast is bench/'s to measure, not a test's)
        await until(pilot, lambda: "w:app:1:" in app.grid.rows_by_key, 30, what="new row during the flood")
        seen = app.logview.all[-1]
        await until(pilot, lambda: app.logview.all[-1] is not seen, what="the flood still flowing")
        assert len(app.logview.all) <= 20_000, "the view stays bounded"
        # far more than 5,000 lines a pull: the rest are skipped on screen, and the title says so
        assert app.logview.dropped > 0 and "skipped on screen" in str(app.logs_title.render())


async def test_a_pull_bigger_than_the_pane_makes_lines_of_the_newest_only():
    from oxtui.protocol import LogBatch
    from oxtui.tui.logview import MAX_LINES, _newest
    per = 1000
    batches = [LogBatch(i, float(i), "flood", 0, "out", "\n".join(f"{i}:{j}" for j in range(per)).encode(), per)
               for i in range(MAX_LINES // per + 5)]
    kept = _newest(batches, MAX_LINES)
    lines = [text for _, chunk in kept for text in chunk]
    assert len(lines) == MAX_LINES and lines[-1] == f"{len(batches) - 1}:{per - 1}", "the newest, in order"
    assert lines[0] == "5:0" and lines == sorted(lines, key=lambda t: tuple(map(int, t.split(":"))))
    assert all(b._lines is None for b in batches[:5]), "what the pane would drop at once is never decoded"
    odd = [LogBatch(0, 0.0, "a", 0, "out", b"x\ny\nz", 3), LogBatch(1, 0.0, "a", 0, "out", b"w", 1)]
    assert [(b.seq, list(c)) for b, c in _newest(odd, 2)] == [(0, ["z"]), (1, ["w"])], "a batch cut in the middle"

    # a pull makes lines of its newest PER_PULL only, and says how many it skipped
    from textual.app import App

    from oxtui.tui.logview import PER_PULL, LogView

    class One(App):
        def compose(self):
            yield LogView()

    async with One().run_test() as pilot:
        view = pilot.app.query_one(LogView)
        assert view.add_batches(batches) == len(batches) * per - PER_PULL
        assert len(view.all) == PER_PULL and view.all[-1].text == lines[-1]
        assert view.add_batches(batches[:2]) == 0 and len(view.all) == PER_PULL + 2 * per


async def test_sort_stop_start_and_the_command_palette(tui):
    app = tui(SLEEPERS)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        await pilot.press("s")
        assert app.sort == "cpu"
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="x asks first")
        await pilot.press("y")
        await until(pilot, lambda: all(w["state"] == "stopped" for w in proc(app)["workers"]), what="stopped")
        await pilot.press("X")
        await until(pilot, lambda: len(running(app)) == 2, what="started again")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("Scale up", "Kill worker (SIGKILL)", "Reload all", "Search logs", "Apply oxfile", "Quit"):
            assert wanted in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"scale up", "enter")
        await until(pilot, lambda: proc(app)["instances"] == 3, what="scale up from the palette")


async def test_the_header_counts_down_a_graceful_stop(tui):
    app = tui(f'''
        [processes.app]
        command = "{PY} -c 'import signal, time; signal.signal(signal.SIGTERM, lambda *a: None); time.sleep(60)'"
        instances = 2
        stop_timeout = 1.5
    ''')

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        app.stop_everything()
        await until(pilot, lambda: "STOPPING: 2 worker(s) left" in str(app.header.render()), what="countdown")
        await until(pilot, lambda: app.client.finished.is_set(), 20)


async def test_a_applies_the_edited_oxfile(tui, tmp_path):
    app = tui(SLEEPERS)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        before = {w["pid"] for w in running(app)}
        write_oxfile(tmp_path, SLEEPERS + '[processes.extra]\ncommand = "sleep 60"\nstop_timeout = 2\n')
        await pilot.press("a")
        await until(pilot, lambda: any(p["name"] == "extra" and p["workers"] and
                                       p["workers"][0]["state"] == "running"
                                       for p in app.client.snapshot()["processes"]), what="the new process")
        assert {w["pid"] for w in running(app)} == before, "an unchanged process is not touched"
        assert "extra" in app.grid.rows_by_key[app.grid.order[-2]].cells[0]


async def test_w_saves_running_counts_and_the_header_shows_the_difference(tui, tmp_path):
    app = tui(SLEEPERS)
    oxfile = tmp_path / "oxfile.toml"

    async with app.run_test(size=(160, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        assert "oxfile says" not in str(app.header.render())
        await pilot.press("plus")
        await until(pilot, lambda: "app 3, oxfile says 2 (w saves)" in str(app.header.render()),
                    what="the difference in the header")
        before = oxfile.read_text()
        await pilot.press("w")
        await until(pilot, lambda: "instances = 3" in oxfile.read_text(), what="the count saved")
        assert oxfile.read_text() == before.replace("instances = 2", "instances = 3")
        await until(pilot, lambda: "oxfile says" not in str(app.header.render()), what="no difference left")


async def test_x_asks_before_stopping_a_process(tui):
    app = tui(SLEEPERS)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await settled(pilot, app)
        assert len(running(app)) == 2, "n keeps it running"
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: all(w["state"] == "stopped" for w in proc(app)["workers"]), what="stopped")


async def test_search_counts_matches_and_says_when_a_regex_is_invalid(tui):
    app = tui(f'''
        [processes.app]
        command = "{PY} -c 'import time; [print(f\\"needle {{i}}\\", flush=True) for i in range(5)]; time.sleep(60)'"
    ''')

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: sum(1 for l in app.logview.all if l.text.startswith("needle")) == 5)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"needle", "enter")
        title = lambda: str(app.logs_title.render())
        await until(pilot, lambda: "match 5 of 5" in title(), what="match 5 of 5")
        await pilot.press("N")
        await until(pilot, lambda: "match 4 of 5" in title(), what="N moves back")
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, SearchScreen))
        for _ in range(6):
            await pilot.press("backspace")
        await pilot.press(*"needle (", "enter")
        await until(pilot, lambda: "not a valid regex" in title(), what="the invalid regex said")


async def test_the_sorted_column_and_the_focused_pane_show(tui):
    app = tui(SLEEPERS)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        labels = app.grid.labels
        assert "NAME▼" in labels()
        await pilot.press("s")
        await until(pilot, lambda: "CPU%▼" in labels() and "NAME" in labels(), what="CPU marked")
        assert not app.logs_title.has_class("focused")
        await pilot.press("l")
        await until(pilot, lambda: app.logs_title.has_class("focused"), what="the logs' title lit")
        assert str(app.logs_title.render()).startswith("▶ logs")
        await pilot.press("l")
        await until(pilot, lambda: not app.logs_title.has_class("focused"))


async def test_80_columns_show_every_footer_key_and_every_column_but_the_sparklines(tui):
    from oxtui.tui.keys import KEYS
    app = tui(SLEEPERS)

    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: len(running(app)) == 2)
        await screen_ready(pilot)
        footer = app.screen.query_one("Footer")
        keys = list(footer.query("FooterKey"))
        cut = [k.key for k in keys if not k.region.width or k.region.right > 80]
        assert not cut, f"cut from the footer: {cut}"
        assert {k.key for k in keys} >= {k.binding.split(",")[0] for k in KEYS
                                        if k.label and k.where == "app" and k.binding}, "every key of the footer"
        assert not any(a.region.overlaps(b.region) for a in keys for b in keys if a is not b)
        grid = app.grid
        assert grid.labels() == ["NAME▼", "PID", "STATE", "CPU%", "MEM", "RST", "UP", "LAST EXIT", "READY"]
        assert grid.virtual_size.width <= grid.size.width, "no column off screen: no sideways scroll bar"
        line = grid.render_line(1 + grid.order.index("w:app:0:")).text
        assert line.rstrip().endswith(" ready") and len(line) <= 80, f"READY/HEALTH on screen: {line!r}"
