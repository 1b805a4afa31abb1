"""The process of `oxtui OXFILE`: a view attached to an engine elsewhere, or the UI of an engine
embedded in this process, and what becomes of that engine when the UI ends in any way but a stop:
q then b, a failure of the UI (handed to a background engine), a hang-up (headless, here).

The engine must outlive its UI: only a stop asked for stops the apps.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..oxfile.config import Config
from .hangup import Hangup

if TYPE_CHECKING:      # imported late on purpose: an attached view never loads the engine
    from ..client.embedded import EmbeddedEngine
    from ..tui.app import OxtuiApp


def open_tui(path: str, load_or_exit: Callable[[str], Config]) -> int:
    """`oxtui OXFILE`: attach to the engine already running for it, or embed a new one."""
    # From here on a hang-up is ours to handle: SIGHUP's default action would kill this process, and
    # the engine with it, in the moment between the engine's start and the UI's first frame (a CI run
    # lost its engine that way).
    terminal = _Terminal()
    from ..tui.app import OxtuiApp  # noqa: F401 (imported before any engine runs: see cli/hangup.py)
    for _attempt in range(2):
        remote = _attach(path)
        if remote is not None:
            return _attached_tui(remote)
        config = load_or_exit(path)
        from ..client.embedded import EmbeddedEngine
        from ..engine import AlreadyRunning, EngineError
        engine = terminal.engine = EmbeddedEngine(config)
        try:
            engine.start()
        except EngineError as e:
            if isinstance(e, AlreadyRunning) and _attempt == 0:
                terminal.engine = None
                continue      # another oxtui started this oxfile's engine a moment ago: attach to it
            print(f"oxtui: {e}", file=sys.stderr)
            return 1
        return _embedded_tui(engine, config, terminal)
    return 1


class _Terminal:
    """What a hang-up of the TUI's terminal ends: nothing yet, a view of an engine elsewhere, or the
    UI of the engine in this process, which then goes on headless."""

    def __init__(self) -> None:
        self.engine: EmbeddedEngine | None = None       # the embedded engine, once one is being started
        self.app: OxtuiApp | None = None                # its UI, once made
        Hangup(self.hung_up, self.freeze)

    def hung_up(self) -> None:
        """On the hang-up thread (cli/hangup.py)."""
        engine = self.engine
        if engine is None:
            os._exit(0)         # nothing of ours runs: a view only ends
        engine.wait_started()   # a hang-up while it starts: it runs, or it failed and nothing does
        if engine.engine is None:
            os._exit(1)
        _go_headless(self.app, engine)

    def freeze(self) -> None:
        """On the main thread, after hung_up."""
        _serve_headless(self.engine)


def _attach(path: str):
    from ..client.connection import ControlError, NoEngine
    from ..client.remote import RemoteEngine
    remote = RemoteEngine(Path(path).expanduser().resolve())
    try:
        remote.connect()
    except NoEngine:
        return None
    except ControlError as e:
        print(f"oxtui: the engine for {path} refused to attach: {e}", file=sys.stderr)
        raise SystemExit(1)
    return remote


def _attached_tui(remote) -> int:
    from ..tui.app import OxtuiApp
    app = OxtuiApp(remote, remote.oxfile)
    try:
        app.run()
    finally:
        remote.detach()
    if app.exit_message:
        print(f"oxtui: {app.exit_message}", file=sys.stderr)
    return 0


def _embedded_tui(engine, config, terminal: _Terminal) -> int:
    from ..tui.app import OxtuiApp
    app = terminal.app = OxtuiApp(engine, config.path)
    failed = False
    try:
        app.run()
    finally:
        if engine.handed_over is None and not app.stopping and not engine.finished.is_set():
            # The UI ended without q then s: an exception in a widget, or in Textual. Only a stop asked
            # for stops the apps, so the engine goes to the background exactly as q then b moves it.
            failed = True
            _ui_failed(app, engine)
        if engine.handed_over is not None:
            # Everything belongs to the background engine now; this process only has to go.
            if app.exit_message:
                print(f"oxtui: {app.exit_message}", file=sys.stderr, flush=True)
            os._exit(1 if failed else 0)
        # q then s, or the engine stopped from outside: nothing is left running.
        engine.shutdown()
        engine.join(config.longest_stop + 15)
    if app.exit_message:
        print(f"oxtui: {app.exit_message}", file=sys.stderr)
    return 0


def _ui_failed(app, engine) -> None:
    """Hand the engine over after a failure of the UI (Textual has printed the traceback by now). When
    the hand-over cannot be made, this process exits without a word to the keeper, which then starts
    a new engine that adopts every worker (engine/recovery.py): either way no app stops."""
    path = shlex.quote(str(engine.config.path))
    why = f"{type(app._exception).__name__}: {app._exception}" if getattr(app, "_exception", None) else "it ended"
    engine.note(f"the UI failed ({why}); handing every worker to a background engine")
    pid, error = engine.to_background()
    if pid is not None:
        app.exit_message = (f"the UI failed ({why}); every worker keeps running in the background engine "
                            f"(pid {pid}): `oxtui {path}` attaches, `oxtui down {path}` stops it")
        return
    print(f"oxtui: the UI failed ({why}) and the engine could not be handed over ({error}); every worker "
          f"keeps running: the keeper starts a new engine in a moment; `oxtui {path}` attaches", file=sys.stderr,
          flush=True)
    os._exit(70)


def _go_headless(app, engine) -> None:
    """The terminal is gone (the SSH connection dropped): every worker keeps serving and only the UI
    ends. Runs on the hang-up thread (cli/hangup.py), never needing the main thread, which may be
    stuck in Textual. The UI is never asked to do anything: drawing to, or restoring, a dead
    terminal can block forever. The engine goes on in its thread, reachable on its control socket
    (`oxtui` attaches, `oxtui down` stops it), logging to its files.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)    # any write still queued for the terminal now lands nowhere, at once
    os.close(devnull)
    engine.go_headless()
    driver = getattr(app, "_driver", None)
    if driver is not None and hasattr(driver, "exit_event"):
        driver.exit_event.set()  # Textual's input thread would spin on a stdin at end of file
    path = shlex.quote(str(engine.config.path))
    engine.note(f"the terminal hung up: engine pid {os.getpid()} keeps every worker running headless; "
                f"`oxtui {path}` attaches to it, `oxtui down {path}` stops it")


def _serve_headless(engine) -> None:
    """The main thread after a hang-up: it owns Textual's thread from here on, so the UI stays frozen,
    and answers SIGTERM and SIGINT with a graceful stop."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: engine.shutdown())
    while not engine.finished.wait(0.5):
        pass
    os._exit(0)
