"""When the UI takes what the engine pushes (tui/pacing.py), against a fake clock and a fake timer:
a snapshot at once, log lines at once after a quiet moment and then at most every interval, and never
two takes scheduled at once."""

from __future__ import annotations

from oxtui.tui.pacing import Pacer


class Timer:
    def __init__(self, at: float, fn):
        self.at, self.fn, self.cancelled = at, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class Harness:
    """A UI thread of its own: what `post` sends is handled when `run()` is called; time moves by hand."""

    def __init__(self, interval: float = 0.5):
        self.now = 100.0
        self.posted: list[str] = []
        self.timers: list[Timer] = []
        self.taken: list[tuple[str, float]] = []
        self.pacer = Pacer(self.posted.append, lambda: self.take("snapshot"), lambda: self.take("logs"),
                           self.later, clock=lambda: self.now, interval=interval)

    def take(self, what: str) -> None:
        self.taken.append((what, self.now))
        if what == "logs":
            self.pacer.logs_taken()       # as the app's pull_logs does

    def later(self, delay: float, fn) -> Timer:
        t = Timer(self.now + delay, fn)
        self.timers.append(t)
        return t

    def run(self) -> None:
        while self.posted:
            self.pacer.handle(self.posted.pop(0))

    def wake(self, *whats: str) -> None:
        """The client wakes the UI (for each of `whats`, from its thread), then the UI thread runs."""
        for what in whats:
            self.pacer.woken(what)
        self.run()

    def logs_then_more(self, after: float) -> None:
        """Lines, taken at once after the quiet start; more `after` s later."""
        self.wake("logs")
        self.advance(after)
        self.wake("logs")

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        for t in sorted(self.timers, key=lambda t: t.at):
            if t.at <= end and not t.cancelled:
                self.now = t.at
                t.cancelled = True
                t.fn()
                self.run()
        self.now = end

    def pending(self) -> list[Timer]:
        return [t for t in self.timers if not t.cancelled]


def test_a_snapshot_is_taken_at_once_and_one_wake_up_waits_at_a_time():
    h = Harness()
    h.pacer.woken("snapshot")
    h.pacer.woken("snapshot")          # the engine published again before the UI got to it
    assert h.posted == ["snapshot"]    # one message: its take reads the newest snapshot
    h.run()
    assert h.taken == [("snapshot", 100.0)]
    h.pacer.woken("snapshot")
    assert h.posted == ["snapshot"], "after the take, the next change wakes the UI again"


def test_log_lines_after_a_quiet_moment_are_taken_at_once_then_at_most_every_interval():
    h = Harness(interval=0.5)
    h.logs_then_more(0.1)              # more lines 0.1 s later: taken when the interval has passed
    assert h.taken == [("logs", 100.0)] and [t.at for t in h.pending()] == [100.5]
    h.advance(0.2)
    h.pacer.woken("logs")              # and more, twice: no wake-up while a take waits its turn
    h.pacer.woken("logs")
    assert not h.posted and len(h.pending()) == 1
    h.advance(0.3)
    assert h.taken == [("logs", 100.0), ("logs", 100.5)]
    h.advance(5)
    h.wake("logs")                     # quiet for 5 s: at once again
    assert h.taken[-1] == ("logs", h.now)


def test_a_snapshot_never_waits_behind_the_logs_interval_and_takes_the_waiting_lines_with_it():
    h = Harness(interval=0.5)
    h.wake("logs")
    h.advance(0.05)
    h.wake("logs", "snapshot")
    # one frame for both: the lines waiting for their turn are drawn with the snapshot, not 0.45 s later
    assert h.taken == [("logs", 100.0), ("snapshot", 100.05), ("logs", 100.05)]
    assert not h.pending()
    h.advance(0.1)
    h.wake("snapshot")                 # no lines waiting: the snapshot alone
    assert [w for w, _ in h.taken] == ["logs", "snapshot", "logs", "snapshot"]


def test_a_take_of_everything_cancels_the_take_waiting_for_its_turn():
    # The bug this guards: a pull of everything (once a second) took the lines and forgot the timer,
    # which fired anyway and began a second chain of takes beside the first: 31 takes a second.
    h = Harness(interval=0.5)
    h.logs_then_more(0.1)
    waiting = h.pending()
    assert len(waiting) == 1
    h.take("logs")                     # the once-a-second pull
    assert waiting[0].cancelled and not h.pending()
    h.advance(1.0)
    assert [w for w, _ in h.taken].count("logs") == 2


def test_a_command_s_toast_is_said_with_the_next_snapshot_or_after_note_wait():
    from oxtui.tui.pacing import NOTE_WAIT
    h = Harness()
    said: list[tuple[str, float]] = []
    h.pacer.hold(lambda: said.append(("scaled", h.now)))
    h.pacer.hold(lambda: said.append(("killed", h.now)))
    assert said == [], "not in a frame of its own: it waits for the snapshot that shows the effect"
    h.advance(0.01)
    h.wake("snapshot")
    assert said == [("scaled", 100.01), ("killed", 100.01)] and not h.pending()
    h.pacer.hold(lambda: said.append(("nothing changed", h.now)))
    h.advance(NOTE_WAIT)               # no snapshot comes: said all the same
    assert said[-1] == ("nothing changed", h.now) and not h.pending()
    h.wake("snapshot")
    assert len(said) == 3, "said once"
