"""The keys added for what users of k9s, btop and lazydocker reach for, driven with Pilot on fixed data
(tests/test_tui_snapshots.py's): the log filter inverted and by stream, the logs full screen, copy to the
clipboard (OSC 52), and the sort marker that follows `s`."""

from __future__ import annotations

from test_tui_snapshots import make_app


def title(app) -> str:
    return str(app.logs_title.render())


async def test_the_log_filter_inverted_and_stderr_only():
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        every = len(app.logview.view)
        await pilot.press("down", "down", "down", "down", "down", "down", "f")   # worker.0's row: its process
        assert app.logview.filter == ("worker", None)
        mine = {l.text for l in app.logview.view}
        assert mine and all(l.process == "worker" for l in app.logview.view)
        await pilot.press("exclamation_mark")
        assert "all but worker" in title(app)
        assert app.logview.view and not any(l.process == "worker" for l in app.logview.view)
        assert len(app.logview.view) == every - len(mine)
        await pilot.press("e")
        assert "stderr only" in title(app)
        assert [l.text for l in app.logview.view] == ["flaky: unhandled error: connection reset by peer"]
        await pilot.press("f", "f")     # f to the worker and back to no filter: stderr only stays
        assert "stderr only" in title(app) and all(l.stream == "err" for l in app.logview.view)
        await pilot.press("f", "exclamation_mark")   # the process again, inverted, as before
        await pilot.press("e", "exclamation_mark")
        assert len(app.logview.view) == len(mine) and "all but" not in title(app)
        await pilot.press("f", "f")     # f cycles: the worker, then no filter: nothing left to invert
        await pilot.press("exclamation_mark")
        assert len(app.logview.view) == every and "all processes" in title(app)


async def test_the_logs_full_screen_and_back():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        small = app.logview.size.height
        await pilot.press("L")
        await pilot.pause()
        assert not app.grid.display or app.grid.region.height == 0
        assert app.logview.size.height > small + 8 and app.logview.has_focus
        await pilot.press("L")
        await pilot.pause()
        assert app.grid.region.height > 0 and app.grid.has_focus and app.logview.size.height == small


async def test_y_copies_the_selected_worker_s_details_or_the_lines_on_screen_as_osc_52():
    app = make_app()
    writes: list[str] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        real = app._driver.write
        app._driver.write = lambda data: (writes.append(data), real(data))[1]
        for _ in range(8):              # flaky.0
            await pilot.press("down")
        await pilot.press("y")
        copied = app.clipboard
        assert copied.startswith("flaky.0 · backoff") and "python3 flaky.py" in copied
        assert "[b]" not in copied, "plain text, not Rich markup"
        import base64
        assert f"\x1b]52;c;{base64.b64encode(copied.encode()).decode()}\a" in writes
        await pilot.press("l", "y")
        assert app.clipboard.splitlines()[-1].endswith("GET /api/orders 200 12ms")


async def test_the_sort_marker_follows_s():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        header = lambda: app.screen._compositor.render_strips()[1].text    # the grid's titles, as on screen
        assert "NAME▼" in header()
        await pilot.press("s")
        await pilot.pause()
        assert "CPU%▼" in header() and "NAME▼" not in header()
        await pilot.press("s")
        await pilot.pause()
        assert "MEM▼" in header() and "CPU%▼" not in header()


async def test_the_grid_s_cursor_keys_mouse_and_enter():
    """The grid (our own since DataTable re-rendered every cell on a new row): arrows, page keys, Home
    and End move the cursor and scroll it into view; a click puts it on a row, a second click or Enter
    opens that row's details; the row under the cursor is what the keys act on."""
    from oxtui.tui.screens import DetailsScreen
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        grid = app.grid
        assert grid.selected_key() == "p:web"
        await pilot.press("down", "down")
        assert grid.selected_key() == "w:web:1:" and "web" in str(app.info.render())
        await pilot.press("end")
        assert grid.selected_key() == grid.order[-1] == "w:flaky:0:"
        await pilot.press("up")
        assert grid.selected_key() == "p:flaky"
        await pilot.press("home")
        assert grid.selected_key() == "p:web"
        await pilot.press("pagedown")
        assert grid.selected_key() == grid.order[-1], "a page down from the top of a short grid: its last row"
        await pilot.click(grid, offset=(3, 1 + grid.order.index("w:worker:0:")))   # line 0: the titles
        assert grid.selected_key() == "w:worker:0:"
        assert not isinstance(app.screen, DetailsScreen)
        await pilot.click(grid, offset=(3, 1 + grid.order.index("w:worker:0:")))
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen) and "worker.0" in str(app.screen.query_one("Static").render())
        await pilot.press("escape")
        await pilot.press("up", "enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen)
