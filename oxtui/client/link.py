"""What a UI needs from an engine, whether embedded in the same process (embedded.py) or attached
over the control socket (remote.py).

Both implement `EngineClient`. What only one kind can do is declared as an ability of its own,
checked with isinstance, never probed by attribute name: an embedded engine can move to a
background process (`CanHandOver`); an attached view can leave its engine running (`CanDetach`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..protocol import LogBatch, Reply, Snapshot

LOG_BUFFER_BYTES = 8 * 1024 * 1024     # batches waiting for the UI thread, per client

Wake = Callable[[str], None]


class Waker:
    """A client's wake-up, as set_wake set it: callable from any thread, and before set_wake too (then it
    does nothing). The fleet shares one among every engine of every host."""

    fn: Wake | None = None

    def __call__(self, what: str) -> None:
        fn = self.fn
        if fn is not None:
            fn(what)


@runtime_checkable
class EngineClient(Protocol):
    attached: bool                    # True when the engine runs in another process
    finished: threading.Event         # set once the engine has stopped (or the connection is gone)

    def snapshot(self) -> Snapshot | None: ...
    def take_logs(self) -> tuple[list[LogBatch], int]: ...
    def command(self, req: dict[str, Any], done: Callable[[Reply], object] | None = None,
                progress: Callable[[str], None] | None = None) -> None: ...
    def shutdown(self, done: Callable[[], object]) -> None: ...
    def set_wake(self, fn: Wake | None) -> None:
        """`fn(what)` is called, from any thread, as soon as there is something to take: "snapshot" (a new
        one: a key's effect, a state change, figures at most 10 times a second), "logs" (each time lines
        arrive: the UI coalesces, tui/pacing.py) or "finished". A UI draws on it instead of polling."""


@runtime_checkable
class CanHandOver(Protocol):
    """An engine in this process that can move, workers and all, to a background process (q, b)."""

    def hand_over(self, done: Callable[[Reply], object]) -> None: ...


@runtime_checkable
class CanDetach(Protocol):
    """A view of an engine in another process: leaving closes the view, the engine keeps running."""

    def detach(self) -> None: ...
