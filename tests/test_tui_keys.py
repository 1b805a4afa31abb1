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
