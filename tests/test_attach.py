"""A TUI attached over the control socket to an engine in another process (a real `oxtui run`),
driven with Pilot: the same keys act on that engine, and quitting can leave it running."""

from __future__ import annotations

import asyncio

import psutil
import pytest
from conftest import app_oxfile, await_until, free_port, oxtui_cli, wait_until
from load import Load, explain

from oxtui.client.connection import NoEngine
from oxtui.client.remote import RemoteEngine
from oxtui.tui.app import OxtuiApp
from oxtui.tui.screens import QuitScreen


def attach(oxfile) -> OxtuiApp:
    remote = RemoteEngine(oxfile.resolve())
    remote.connect()
    return OxtuiApp(remote, oxfile, host="testhost")


def attached_to_a_running_engine(tmp_path, engine_process):
    """(port, the engine process, a TUI attached to it): app_oxfile's two instances running."""
    port = free_port()
    oxfile = app_oxfile(tmp_path, port)
    ep = engine_process(oxfile)
    ep.wait_running("app", 2)
    return port, ep, attach(oxfile)


def pilot_until(pilot):
    return lambda pred, t=15, what="": await_until(pred, t, 0.05, what, sleep=pilot.pause)


def workers(app, state="running"):
    snap = app.client.snapshot()
    return [w for w in snap["processes"][0]["workers"] if w["state"] == state and not w["role"]]


def test_no_engine_means_nothing_to_attach_to(tmp_path):
    with pytest.raises(NoEngine):
        RemoteEngine((tmp_path / "oxfile.toml").resolve()).connect()


def test_a_command_s_effect_reaches_an_attached_view_whatever_the_push_interval(tmp_path, monkeypatch):
    """The engine in this process (embedded, with its control socket), its attach feed's interval put
    off for an hour: a scale sent over the socket still reaches the attached view, because a command
    that is done sends its effect at once (a chatty app keeps a push due every interval for the figures
    alone, and a key's effect waited for that slot)."""
    from conftest import write_oxfile

    from oxtui.client.connection import Client
    from oxtui.client.embedded import EmbeddedEngine
    from oxtui.engine import control
    from oxtui.oxfile.config import load
    monkeypatch.setattr(control, "PUSH_INTERVAL", 3600.0)
    oxfile = write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\nstop_timeout = 2\n').resolve()
    engine = EmbeddedEngine(load(oxfile))
    engine.start()
    remote = RemoteEngine(oxfile)
    try:
        remote.connect()
        wait_until(lambda: remote.snapshot() is not None, 10, 0.02, "the first snapshot")
        with Client(oxfile) as c:
            c.call({"cmd": "status"})                 # the feed has sent once: the interval now holds it
            c.call({"cmd": "scale", "name": "app", "n": 3})
        wait_until(lambda: remote.snapshot()["processes"][0]["instances"] == 3, 10, 0.02, "the scale, pushed")
    finally:
        remote.detach()
        engine.shutdown()
        assert engine.join(30)

async def test_an_attached_view_draws_on_the_engine_s_push_without_any_poll(tmp_path, engine_process, monkeypatch):
    """As embedded (tests/test_tui.py): the once-a-second pull put off, a key's effect and the new
    worker's lines still reach the screen, pushed over the socket and woken by the reader thread."""
    import oxtui.tui.app as tui_app
    monkeypatch.setattr(tui_app, "CHECK_INTERVAL", 3600)
    _, ep, app = attached_to_a_running_engine(tmp_path, engine_process)
    async with app.run_test(size=(120, 36)) as pilot:
        until = pilot_until(pilot)
        await until(lambda: "w:app:1:" in app.grid.rows_by_key, what="the rows")
        pulls = []
        monkeypatch.setattr(app, "pull", lambda: pulls.append(1))
        seen = len(app.logview.all)
        await pilot.press("plus")
        await until(lambda: "w:app:2:" in app.grid.rows_by_key, what="the new worker's row")
        await until(lambda: any(l.source == "app.2" for l in list(app.logview.all)[seen:]), what="its lines")
        assert not pulls, "drawn by a poll, not by the engine's push"
        ep.stop()                       # `oxtui down` from elsewhere: the view learns it when the socket ends
        await until(lambda: app.exit_message is not None, 30, what="the view told the engine stopped")
        assert "has stopped" in app.exit_message and not pulls


def test_attached_keys_scale_kill_reload_and_detach(tmp_path, engine_process):
    port, ep, app = attached_to_a_running_engine(tmp_path, engine_process)

    async def body():
        async with app.run_test(size=(120, 36)) as pilot:
            until = pilot_until(pilot)
            await until(lambda: len(workers(app)) == 2)
            assert f"attached to pid {ep.proc.pid}" in str(app.header.render())
            assert ep.status()["engine"]["viewers"] == 1
            await until(lambda: any(line.text.startswith("ready") for line in app.logview.all), what="earlier logs arrive")
            await pilot.press("plus")
            await until(lambda: len(workers(app)) == 3, what="scale up over the socket")
            await pilot.press("down", "k")
            await until(lambda: workers(app, "running")[0]["restarts"] == 1, what="kill restarts worker 0")
            before = {w["pid"] for w in workers(app)}
            (tmp_path / "release.txt").write_text("ok r2")
            with Load.steady(port) as load:
                load.wait_for(20)
                await pilot.press("r")
                await until(lambda: (app.client.snapshot()["processes"][0]["reload"] or {}).get("state") == "done",
                            30, "the reload")
                load.wait_for(20)
            assert load.failures == [], explain(load.failures, tmp_path)
            assert not before & {w["pid"] for w in workers(app)}
            await pilot.press("q")
            await until(lambda: isinstance(app.screen, QuitScreen))
            await pilot.press("d")
        return app.return_value

    assert asyncio.run(body()) == 0
    assert ep.proc.poll() is None, "detaching leaves the engine running"
    ep.wait_running("app", 3)
    wait_until(lambda: ep.status()["engine"]["viewers"] == 0, 5, 0.05, "the engine to notice the detach")


def test_attached_quit_can_stop_everything_and_down_ends_an_attached_view(tmp_path, engine_process):
    oxfile = app_oxfile(tmp_path, free_port())
    ep = engine_process(oxfile)
    pids = [w["pid"] for w in ep.wait_running("app", 2)]
    app = attach(oxfile)

    async def stop_from_the_ui():
        async with app.run_test(size=(120, 36)) as pilot:
            await await_until(lambda: len(workers(app)) == 2, 10, 0.05, sleep=pilot.pause)
            await pilot.press("q")
            await await_until(lambda: isinstance(app.screen, QuitScreen), 5, 0.05, sleep=pilot.pause)
            await pilot.press("s")
            await await_until(lambda: app.client.finished.is_set(), 30, 0.05, sleep=pilot.pause)

    asyncio.run(stop_from_the_ui())
    assert ep.proc.wait(10) == 0
    assert not any(psutil.pid_exists(p) for p in pids)

    second = EngineProcessFor(tmp_path, oxfile, engine_process)
    viewer = attach(oxfile)

    async def down_from_elsewhere():
        async with viewer.run_test(size=(120, 36)) as pilot:
            await await_until(lambda: len(workers(viewer)) == 2, 10, 0.05, sleep=pilot.pause)
            r = await asyncio.to_thread(oxtui_cli, "down", "-c", str(oxfile))
            assert r.returncode == 0, r.stderr
            await await_until(lambda: not viewer.is_running, 10, 0.05, sleep=pilot.pause)
        return viewer.exit_message

    assert "has stopped" in asyncio.run(down_from_elsewhere())
    assert second.proc.wait(10) == 0


def EngineProcessFor(tmp_path, oxfile, engine_process):
    ep = engine_process(oxfile)
    ep.wait_running("app", 2)
    return ep
