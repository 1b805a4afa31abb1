"""The restart policy on its own: exact delays with an injected clock and random source."""

from __future__ import annotations

from oxtui.engine.backoff import STABLE_UPTIME, RestartPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(rand: float = 1.0, **kw) -> tuple[RestartPolicy, Clock]:
    clock = Clock()
    return RestartPolicy(clock=clock, rand=lambda: rand, **kw), clock


def test_backoff_policy_first_restart_is_immediate_then_doubles_up_to_the_cap():
    p, clock = policy(base=0.2, cap=1.0, max_restarts=100)
    delays = []
    for _ in range(7):
        delays.append(p.on_exit(uptime=0.1))
        clock.now += 0.5
    assert delays == [0.0, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_backoff_policy_jitter_takes_at_most_a_quarter_off():
    p, _ = policy(rand=0.0, base=0.2, max_restarts=100)
    assert [p.on_exit(0.1) for _ in range(4)] == [0.0, 0.2 * 0.75, 0.4 * 0.75, 0.8 * 0.75]


def test_backoff_policy_a_stable_run_starts_the_backoff_over():
    p, clock = policy(base=0.2, max_restarts=100)
    for _ in range(4):
        p.on_exit(0.1)
        clock.now += 1
    assert p.on_exit(STABLE_UPTIME) == 0.0
    assert p.on_exit(0.1) == 0.2


def test_backoff_policy_crash_loop_within_the_window_gives_up():
    p, clock = policy(max_restarts=3, window=60.0)
    assert p.on_exit(0.1) is not None
    clock.now += 10
    assert p.on_exit(0.1) is not None
    clock.now += 10
    assert p.on_exit(0.1) is None          # the third crash within 60 s


def test_backoff_policy_old_crashes_leave_the_window():
    p, clock = policy(max_restarts=3, window=60.0)
    p.on_exit(0.1)
    clock.now += 10
    p.on_exit(0.1)
    clock.now += 55                          # the first crash is now 65 s old
    assert p.on_exit(0.1) is not None
    p.reset()
    assert p.on_exit(0.1) == 0.0
