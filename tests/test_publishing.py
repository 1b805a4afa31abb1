"""How an embedded engine publishes snapshots for its UI (client/embedded.py), against a fake loop and
clock: a change after a quiet moment at once (after the step that made it), a burst of changes in one
snapshot, then at most one per PUBLISH_INTERVAL; nothing while headless. And the reload toasts'
decision (tui/model.reload_news), pure."""

from __future__ import annotations

from oxtui.client.embedded import PUBLISH_INTERVAL, EmbeddedEngine
from oxtui.tui.model import reload_news


class FakeLoop:
    def __init__(self) -> None:
        self.now = 50.0
        self.due: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, fn) -> Handle:
        return self.call_later(0, fn)

    def call_later(self, delay: float, fn) -> Handle:
        handle = Handle(self.now + delay, fn)
        self.due.append(handle)
        return handle

    def advance(self, seconds: float) -> None:
        self.now += seconds
        ready = sorted((h for h in self.due if h.at <= self.now), key=lambda h: h.at)
        self.due = [h for h in self.due if h.at > self.now]
        for handle in ready:
            if not handle.cancelled:
                handle.fn()


class Handle:
    def __init__(self, at: float, fn) -> None:
        self.at, self.fn, self.cancelled = at, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeEngine:
    def __init__(self) -> None:
        self.built = 0

    def snapshot(self) -> dict:
        self.built += 1
        return {"n": self.built}


def embedded() -> tuple[EmbeddedEngine, FakeLoop, FakeEngine, list[str]]:
    e = EmbeddedEngine(None)        # type: ignore[arg-type]  (never started: the loop and engine are fakes)
    loop, engine, woken = FakeLoop(), FakeEngine(), []
    e._loop, e.engine = loop, engine      # type: ignore[assignment]
    e.set_wake(woken.append)
    return e, loop, engine, woken


def test_a_burst_of_changes_is_one_snapshot_published_once_the_step_is_done():
    e, loop, engine, woken = embedded()
    for _ in range(5):
        e._on_change()                     # five changes in one step of the engine
    assert engine.built == 0, "not in the middle of the engine's work"
    loop.advance(0)
    assert engine.built == 1 and woken == ["snapshot"] and e.snapshot() == {"n": 1}


def test_after_a_publish_the_next_waits_for_the_interval_and_carries_every_change():
    e, loop, engine, woken = embedded()
    e._on_change()
    loop.advance(0)
    loop.advance(0.03)
    e._on_change()
    e._on_change()
    loop.advance(0)
    assert engine.built == 1, "within the interval of the last one"
    loop.advance(PUBLISH_INTERVAL - 0.03 - 0.001)
    assert engine.built == 1
    loop.advance(0.002)
    assert engine.built == 2 and woken == ["snapshot", "snapshot"]
    loop.advance(5)
    e._on_change()                         # quiet for 5 s: at once again
    loop.advance(0)
    assert engine.built == 3


def test_a_headless_engine_builds_no_snapshot_for_a_ui():
    e, loop, engine, woken = embedded()
    e.headless = True
    e._on_change()
    loop.advance(1)
    assert engine.built == 0 and woken == []


def snap(state: str, why: str | None = None, kind: str = "reload") -> dict:
    return {"processes": [{"name": "web", "reload": {"state": state, "why": why, "kind": kind, "reason": "canary died"}}]}


def test_a_toast_when_a_reload_ends_and_only_then():
    seen: dict[str, str] = {}
    assert reload_news(snap("done"), seen) == [], "an outcome seen at the start is old news"
    assert reload_news(snap("running"), seen) == []
    assert reload_news(snap("failed"), seen, "web1/") == []     # the fleet's name for it is another process
    assert reload_news(snap("failed"), seen) == [("web: canary died", "Reload failed, old instances kept", "error")]
    assert reload_news(snap("failed"), seen) == [], "once"
    reload_news(snap("running", kind="run"), seen)
    assert reload_news(snap("done", kind="run"), seen) == [("web: run done, every instance completed", "Run",
                                                            "information")]
    reload_news(snap("running", why="schedule"), seen)
    assert reload_news(snap("done", why="schedule"), seen) == [], "a schedule's tick says it under the grid"


def test_a_command_s_effect_is_published_at_once_whatever_the_interval(tmp_path, monkeypatch):
    """A real embedded engine, its publishing interval put off for an hour: a command's effect (a scale)
    is still in the snapshot as soon as the command is done. Beside a chatty app a publish is due every
    interval for the figures alone, and a key's effect waited for that slot."""
    import threading

    from conftest import write_oxfile

    from oxtui.client import embedded
    from oxtui.oxfile.config import load
    monkeypatch.setattr(embedded, "PUBLISH_INTERVAL", 3600.0)
    e = EmbeddedEngine(load(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\nstop_timeout = 2\n')))
    woken: list[str] = []
    e.set_wake(woken.append)
    e.start()
    try:
        e.command({"cmd": "status"})          # a first publish: from here on the interval holds the next back
        # a command that changes nothing publishes nothing: a script polling `status` costs the UI no frames
        # (a metrics sample may land meanwhile: a few wake-ups, never one per command)
        woken.clear()
        for _ in range(20):
            answered = threading.Event()
            e.command({"cmd": "status"}, lambda reply, answered=answered: answered.set())
            assert answered.wait(10)
        assert woken.count("snapshot") < 5, f"20 status commands woke the UI {woken.count('snapshot')} times"
        done = threading.Event()
        e.command({"cmd": "scale", "name": "app", "n": 3}, lambda reply: done.set())
        assert done.wait(30)
        snap = e.snapshot()
        assert snap is not None and snap["processes"][0]["instances"] == 3
        # and a script's command over the socket, as a key's
        from oxtui.client.connection import Client
        with Client(tmp_path / "oxfile.toml") as c:
            c.call({"cmd": "scale", "name": "app", "n": 2})
        snap = e.snapshot()
        assert snap is not None and snap["processes"][0]["instances"] == 2
    finally:
        e.shutdown()
        assert e.join(30)
