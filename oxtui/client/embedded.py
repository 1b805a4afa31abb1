"""The engine on a thread of its own, seen through the client interface a UI uses.

A UI never touches the engine's objects: it reads immutable snapshots and log batches that the
engine thread publishes, and sends commands that run on the engine's loop. A slow frame can delay
only the UI; pipe reads, restarts and health checks go on at the engine's own pace. The same
interface can be served over the control socket for a UI attached to a background engine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from ..batchqueue import BatchQueue
from ..engine import CommandError, Engine, EngineError
from ..oxfile.config import Config
from ..protocol import LogBatch, Reply, Snapshot, error, ok
from .link import LOG_BUFFER_BYTES, Wake, Waker

# Snapshots are published at once when a change comes after a quiet moment (a key's effect is on screen
# as soon as the engine has it), and then at most once per PUBLISH_INTERVAL (a burst of changes, the
# figures that move by themselves).
PUBLISH_INTERVAL = 0.1


class EmbeddedEngine:
    """An `EngineClient` for an engine on a thread of this process; `CanHandOver`."""

    attached = False

    def __init__(self, config: Config):
        self.config = config
        self.engine: Engine | None = None
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="oxtui engine", daemon=True)
        self._ready = threading.Event()
        self._snapshot: Snapshot | None = None
        self._publishing: asyncio.Handle | None = None     # the publish scheduled (the changes since the last wait for it)
        self._published_at = float("-inf")   # the engine loop's time of the last one
        self._logs = BatchQueue(LOG_BUFFER_BYTES)
        self._wake = Waker()
        self.headless = False
        self.handed_over: int | None = None      # the pid of the engine that took over
        self._stop_callbacks: list[Callable[[], object]] = []
        self.finished = threading.Event()

    # ---- lifecycle (UI thread) --------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Start the engine thread; raises EngineError when the engine cannot start."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise EngineError("the engine did not start within 30 s")
        if self.error is not None:
            raise EngineError(self.error)

    def wait_started(self) -> None:
        """Until start() has its answer: the engine runs, or it failed (then self.engine is None)."""
        self._ready.wait()

    def shutdown(self, done: Callable[[], object] | None = None) -> None:
        """Stop every worker gracefully; `done` runs (on the engine thread) when all are stopped."""
        if self.handed_over is not None:
            return
        if done is not None:
            self._stop_callbacks.append(done)
        if self._loop is not None and self.engine is not None and not self.finished.is_set():
            asyncio.run_coroutine_threadsafe(self.engine.shutdown(), self._loop)
        elif done is not None and self.finished.is_set():
            done()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- the client interface (UI thread) ---------------------------------------------------

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def take_logs(self) -> tuple[list[LogBatch], int]:
        """Batches captured since the last call, and how many lines were dropped for the UI."""
        return self._logs.take()

    def set_wake(self, fn: Wake | None) -> None:
        self._wake.fn = fn

    def hand_over(self, done: Callable[[Reply], object]) -> None:
        """Move the engine and every worker into a background process (nothing restarts), then let
        this process go. `done` gets {"ok": True, "result": {"pid": ...}} or the reason it cannot."""
        if self._loop is None or self.engine is None or self.finished.is_set():
            done(error("the engine is not running"))
            return
        engine = self.engine

        def go() -> None:
            try:
                pid = engine.hand_over()
            except CommandError as e:
                done(error(str(e)))
                return
            self.handed_over = pid
            done(ok({"pid": pid}))
            # This engine must never act again: its workers, sockets and files belong to the new
            # one now. Its loop stands still until the process exits.
            threading.Event().wait()

        self._loop.call_soon_threadsafe(go)

    def to_background(self, limit: float = 15.0) -> tuple[int | None, str | None]:
        """From the UI thread, after the UI itself failed: hand the engine and every worker to a background
        process, as q then b does, waiting up to `limit` s for a moment when nothing is half done.
        Returns (its pid, None), or (None, why not). This engine never acts again once it succeeded."""
        if self._loop is None or self.engine is None or self.finished.is_set():
            return None, "the engine is not running"
        engine, done = self.engine, threading.Event()
        result: dict[str, Any] = {}

        async def wait_then_go() -> None:
            try:
                await engine.until_it_can_hand_over(None, limit)
                result["pid"] = self.handed_over = engine.hand_over()
            except CommandError as e:
                result["error"] = str(e)
                done.set()
                return
            done.set()
            threading.Event().wait()      # as in hand_over: this loop stands still until the process exits

        asyncio.run_coroutine_threadsafe(wait_then_go(), self._loop)
        if not done.wait(limit + 30):
            return None, "the engine did not answer"
        return result.get("pid"), result.get("error")

    def note(self, text: str) -> None:
        """An engine event line, from any thread (logged to oxtui.log like the engine's own)."""
        if self._loop is not None and self.engine is not None and not self.finished.is_set():
            engine = self.engine
            self._loop.call_soon_threadsafe(lambda: engine.logs.emit("oxtui", None, "event", [text]))

    def go_headless(self) -> None:
        """No UI any more (the terminal hung up): stop buffering logs and snapshots for one."""
        self.headless = True
        if self._loop is not None and self.engine is not None:
            self._loop.call_soon_threadsafe(self.engine.looked_at, -1)

    def command(self, req: dict[str, Any], done: Callable[[Reply], object] | None = None,
                progress: Callable[[str], None] | None = None) -> None:
        """Run a command on the engine loop; `done` gets the reply on the engine thread."""
        if self._loop is None or self.engine is None or self.finished.is_set():
            if done is not None:
                done(error("the engine is not running"))
            return
        engine = self.engine

        async def run() -> Reply:
            try:
                return ok(await engine.execute(req, progress))
            except CommandError as e:
                return error(str(e))
            except Exception as e:  # a bug in one command must not kill the engine thread
                return error(f"internal error: {type(e).__name__}: {e}")

        fut = asyncio.run_coroutine_threadsafe(run(), self._loop)
        if done is not None:
            fut.add_done_callback(lambda f: done(f.result() if not f.cancelled() else
                                                 error("cancelled")))

    # ---- the engine thread ------------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        finally:
            self.finished.set()
            self._ready.set()
            for fn in self._stop_callbacks:
                fn()
            self._wake("finished")

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        engine = Engine(self.config)
        engine.embedded = True
        engine.logs.subscribers.append(self._on_batch)
        engine.on_change(self._on_change)
        engine.on_change(self._command_done, after_commands=True)
        try:
            await engine.start()
        except EngineError as e:
            self.error = str(e)
            return
        except OSError as e:
            self.error = f"{self.config.path}: cannot start the engine ({e.strerror or e})"
            return
        self.engine = engine
        engine.looked_at(+1)          # the TUI shows live metrics
        self._snapshot = engine.snapshot()
        self._ready.set()
        try:
            await engine.stopped.wait()
        finally:
            self._snapshot = engine.snapshot()
            self._wake("snapshot")

    def _on_change(self) -> None:
        """The engine changed something (engine thread, in the middle of its work): publish once this
        step is done, or, within PUBLISH_INTERVAL of the last one, when that interval ends."""
        if self._publishing is not None:
            return
        assert self._loop is not None       # set before the engine exists, and the engine calls this
        delay = self._published_at + PUBLISH_INTERVAL - self._loop.time()
        if delay > 0:
            self._publishing = self._loop.call_later(delay, self._publish)
        else:
            self._publishing = self._loop.call_soon(self._publish)

    def _command_done(self) -> None:
        """A command has run (a key's, or a script's over the socket): what it changed goes to the screen
        now, not after the cap on publishing. Beside a chatty app a publish is due every PUBLISH_INTERVAL
        for the figures alone, and a key waited for the next slot (half of it on average). A command that
        changed nothing (`status`, `logs`: a script polling) publishes nothing."""
        if self._publishing is not None:
            self._publish()

    def _publish(self) -> None:
        if self._publishing is not None:
            self._publishing.cancel()
            self._publishing = None
        if self.headless or self.engine is None:
            return      # (before start() is done, the first snapshot is taken there)
        assert self._loop is not None       # set before the engine exists
        self._published_at = self._loop.time()
        self._snapshot = self.engine.snapshot()
        self._wake("snapshot")

    def _on_batch(self, batch: LogBatch) -> None:
        if not self.headless:
            self._logs.add(batch)
            self._wake("logs")
