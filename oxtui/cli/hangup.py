"""SIGHUP for a TUI process: handled from its first moment, and without waiting for the main thread.

`oxtui OXFILE` starts its engine before its UI has drawn anything (a second or more on a busy
machine): a connection that drops then must not meet SIGHUP's default action, which kills the
process and with it the engine (a CI run lost its engine that way; the keeper saved the workers).

And a Python signal handler runs only on the main thread, only once that thread runs bytecode
again. In a TUI the main thread is Textual's, and a dropped SSH connection is exactly when it can
be stuck: waiting for room in the queue of Textual's writer thread, which waits on a terminal
that takes nothing (a stalled link). If the kernel hands SIGHUP to any other thread, nothing wakes
the main thread. So the C-level handler's wakeup fd is read by a thread of our own, which does
what the hang-up means at once (`work`, which must not need the main thread), then sends SIGHUP to
the main thread itself, which interrupts its wait, so that `freeze` runs there (again every 20 ms until
it is not in the middle of an import): it never returns, so no widget ever draws to the dead
terminal again, and it may install handlers (only the main thread can).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType


class Hangup:
    """Runs `work` once on the first SIGHUP, from whichever thread sees it first."""

    def __init__(self, work: Callable[[], object], freeze: Callable[[], None] | None = None):
        self._work = work
        self._freeze = freeze
        self._lock = threading.Lock()
        self._done = False
        self._frozen = False
        self._main = threading.get_ident()   # built on the main thread (signal handlers can only be set there)
        # Set from the main thread, before Textual starts: the wakeup fd and the handler are per process.
        r, w = os.pipe()
        os.set_blocking(w, False)       # the C handler must never block in a signal context
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, self._on_main)
        threading.Thread(target=self._watch, args=(r,), name="oxtui-hangup", daemon=True).start()

    def _run_work(self) -> None:
        """The hang-up's work, once; a second caller waits until the first has done it."""
        with self._lock:
            if not self._done:
                self._done = True
                self._work()

    def _watch(self, fd: int) -> None:
        # Every signal with a Python handler writes its number here (Textual's SIGWINCH too).
        while data := os.read(fd, 256):
            if signal.SIGHUP in data:
                self._run_work()
                # Wake the main thread out of any wait; it freezes at the first moment it safely can.
                while self._freeze is not None and not self._frozen:
                    signal.pthread_kill(self._main, signal.SIGHUP)
                    time.sleep(0.02)
                return

    def _on_main(self, _signum: int, frame: FrameType | None) -> None:
        if self._frozen:        # a later SIGHUP (ours, or the kernel's) on this thread: handled already
            return
        self._run_work()
        if self._freeze is None or _importing(frame):
            # Frozen mid-import, the main thread would hold import locks for ever, and the engine
            # thread's next import would hang with it (a test saw `status` go unanswered that way).
            # The hang-up thread asks again in 20 ms.
            return
        self._frozen = True
        self._freeze()


def _importing(frame: FrameType | None) -> bool:
    """The interrupted thread is inside the import machinery (finding, loading or running a module)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
