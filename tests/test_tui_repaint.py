"""What the TUI repaints, counted (no timing): an idle grid repaints no row whose values did not change;
new log lines and a header's new figure repaint no row of the grid at all. Over SSH every repainted
row is bytes on the link, and every render is the UI thread's time beside a chatty app."""

from __future__ import annotations

import copy
from collections import Counter

from conftest import screen_ready
from rich.cells import cell_len
from test_tui_snapshots import T0, make_app
from textual._compositor import Compositor

from oxtui.protocol import LogBatch
from oxtui.tui.grid import WorkerGrid


def counting(monkeypatch) -> Counter:
    """Each grid line rendered, by its y (a render of a line is a repaint of it on the screen), and under
    "frames" each frame the grid took part in at all: a frame renders every widget of the container a
    change falls in, from their caches, which is most of a frame's cost even when no line is new."""
    rendered: Counter = Counter()
    line, lines = WorkerGrid.render_line, WorkerGrid.render_lines

    def render_line(self, y: int):
        rendered[y] += 1
        return line(self, y)

    def render_lines(self, crop):
        rendered["frames"] += 1
        return lines(self, crop)
    monkeypatch.setattr(WorkerGrid, "render_line", render_line)
    monkeypatch.setattr(WorkerGrid, "render_lines", render_lines)
    return rendered


def counting_layouts(monkeypatch) -> Counter:
    """Each layout pass of the screen: it arranges every widget again, a cost of its own."""
    counted: Counter = Counter()
    reflow = Compositor.reflow

    def counting_reflow(self, *a, **kw):
        counted["layouts"] += 1
        return reflow(self, *a, **kw)
    monkeypatch.setattr(Compositor, "reflow", counting_reflow)
    return counted


def row_y(app, key: str) -> int:
    return 1 + app.grid._order.index(key)      # line 0 is the column titles


async def test_only_the_row_whose_values_changed_is_repainted(monkeypatch):
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await screen_ready(pilot)       # the start-up's last layout must not count
        rendered = counting(monkeypatch)
        snap = copy.deepcopy(app.client.snap)
        app.client.snap = snap             # a new snapshot, every value the same
        app.pull()
        await pilot.pause()
        assert not rendered, f"an unchanged snapshot repainted grid lines {dict(rendered)}"
        snap = copy.deepcopy(snap)
        snap["processes"][0]["workers"][2]["cpu_percent"] = 61.0     # web.2 only
        app.client.snap = snap
        app.pull()
        await pilot.pause()
        assert set(rendered) == {"frames", row_y(app, "w:web:2:")}, dict(rendered)


async def test_log_lines_and_a_new_header_repaint_no_row_of_the_grid(monkeypatch):
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await screen_ready(pilot)
        rendered, layouts = counting(monkeypatch), counting_layouts(monkeypatch)
        before = len(app.logview.all)
        for i in range(5):
            app.client.logs = [LogBatch(100 + i, T0 + 40 + i, "worker", 0, "out", b"x", 1, (f"job {i} done",))]
            app.pull()
            await pilot.pause()
        assert len(app.logview.all) == before + 5
        snap = copy.deepcopy(app.client.snap)
        snap["engine"]["cpu_percent"] = 3.7          # the header's figure, nothing of the grid
        app.client.snap = snap
        app.pull()
        await pilot.pause()
        assert "3.7% CPU" in str(app.header.render())
        assert not rendered, f"grid lines repainted by log lines or the header: {dict(rendered)}"
        assert not layouts, "new log lines or a header's new figure laid the whole screen out again"


async def test_every_log_line_is_the_pane_s_width_in_cells_whatever_it_holds():
    """LogView draws a plain ASCII line straight into its strip, counting one cell per character; any
    other line (wide characters, a tab, a control character, a search match, scrolled sideways) goes the
    general way. A line one cell off shifts every cell after it on the terminal."""
    app = make_app()
    texts = ["plain ascii", "日本語のログ行 wide", "tab\there", "bell\x07 char", "x" * 300, "ünïcödé", "emoji 🚀 ok"]
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.client.logs = [LogBatch(200 + i, T0 + 50 + i, "web", 0, "out", b"x", 1, (t,)) for i, t in enumerate(texts)]
        app.pull()
        await pilot.pause()
        view = app.logview
        width = view.size.width
        rows = {view.view[i].text: i - int(view.scroll_offset.y) for i in range(len(view.view) - len(texts), len(view.view))}
        drawn: dict[int, dict[str, str]] = {}
        for scroll_x in (0, 7):
            view.scroll_to(x=scroll_x, animate=False, immediate=True)
            await pilot.pause()
            view.render_lines(view.size.region)        # the frame's offset and style, as a repaint reads them
            drawn[scroll_x] = {}
            for text, y in rows.items():
                strip = view.render_line(y)
                # the cells the terminal gets, counted from the text (a strip can be told a wrong length)
                assert cell_len(strip.text) == width, (text, scroll_x, cell_len(strip.text))
                drawn[scroll_x][text] = strip.text
                if scroll_x == 0:
                    assert text.replace("\t", "    ")[:40] in strip.text or len(text) > width, text
        assert drawn[7]["plain ascii"][:width - 7] == drawn[0]["plain ascii"][7:], "scrolled sideways by 7 cells"


async def test_a_new_worker_draws_its_own_line_and_no_other(monkeypatch):
    """A `+`: one row more. The lines of the rows that did not change are kept as drawn and only moved
    (DataTable rendered every cell on screen again, most of a key's time to the screen)."""
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await screen_ready(pilot)       # the start-up's last layout must not count
        drawn: Counter = Counter()
        draw = WorkerGrid._draw
        layouts = counting_layouts(monkeypatch)

        def counting_draw(self, row):
            drawn[row.key] += 1
            return draw(self, row)
        monkeypatch.setattr(WorkerGrid, "_draw", counting_draw)
        snap = copy.deepcopy(app.client.snap)
        web = snap["processes"][0]
        new = copy.deepcopy(web["workers"][-1])
        new.update(instance=4, pid=4105)
        web["workers"].append(new)
        web["instances"] = 5
        app.client.snap = snap
        app.pull()
        await pilot.pause()
        assert "w:web:4:" in app.grid.order
        # the new row; web's count (5/5 up); web.3, whose tree mark turns from └ to ├; no other
        assert set(drawn) == {"w:web:4:", "p:web", "w:web:3:"}, f"drawn: {dict(drawn)}"
        # the grid's height grows in steps (grid.GROW): 10 lines and then 11 fit in the same 12, so the
        # screen is not laid out again and the logs below do not move
        assert app.grid.size.height == 12 and not layouts, dict(layouts)
        # and gone again: its kept line goes with it (a reload's surge rows come and go all day)
        snap = copy.deepcopy(snap)
        snap["processes"][0]["workers"].pop()
        snap["processes"][0]["instances"] = 4
        app.client.snap = snap
        app.pull()
        await pilot.pause()
        assert "w:web:4:" not in app.grid.order, app.grid.order
        assert "w:web:4:" not in app.grid._lines, list(app.grid._lines)
