"""`oxtui run`: the engine headless in the foreground, merged logs on stdout.

SIGINT/SIGTERM stop everything gracefully and exit 0 (a second Ctrl-C SIGKILLs what is left);
SIGHUP reloads every process. Under systemd (`oxtui startup`) only engine events are printed unless
[logs] stdout = "all". With `background` (how `oxtui up` starts it) nothing is printed but
errors: the workers' output is in the log files, the engine's own events in oxtui.log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Mapping

from .config import Config
from .engine import Engine, EngineError
from .engine.sdnotify import under_systemd
from .printer import Printer


def prints_everything(mode: str, environ: Mapping[str, str]) -> bool:
    """Under systemd, stdout is the journal: by default it gets the engine's events (starts, exits,
    restarts, reload steps), not the workers' lines, which are already in the log files."""
    return mode == "all" or (mode == "auto" and not under_systemd(environ))


def run(config: Config, background: bool = False, adopt: int | None = None) -> int:
    return asyncio.run(_run(config, background, adopt))


async def _run(config: Config, background: bool, adopt: int | None) -> int:
    engine = Engine(config)
    printer = Printer(sys.stdout)
    if not background:
        if prints_everything(config.logs.stdout, os.environ):
            engine.logs.subscribers.append(printer.on_batch)
        else:
            engine.logs.subscribers.append(lambda b: b.stream == "event" and printer.on_batch(b))
    try:
        if adopt is not None:
            await engine.adopt(adopt)     # an embedded engine moving to the background (handover.py)
        else:
            await engine.start()
    except (EngineError, OSError, ValueError, KeyError) as e:
        printer.close()
        if adopt is not None:
            print(f"oxtui: {config.path}: cannot take over the engine: {e}", file=sys.stderr, flush=True)
        else:
            print(f"oxtui: {e}", file=sys.stderr, flush=True)
        return 1
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_stop(signame: str) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            engine.logs.emit("oxtui", None, "event", [f"{signame}: stopping every process gracefully"
                                                      " (Ctrl-C again to force)"])
            loop.create_task(engine.shutdown())
        else:
            engine.logs.emit("oxtui", None, "event", [f"{signame} again: SIGKILL to every process"])
            engine.force_kill()

    loop.add_signal_handler(signal.SIGINT, on_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGTERM, on_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGHUP, engine.reload_all_in_background)
    where = "in the background" if background else "in the foreground"
    if adopt is not None:
        where += ", taken over from its TUI"
    engine.logs.emit("oxtui", None, "event", [f"engine pid {_pid()} running {config.path} {where}; "
                                              f"logs in {engine.logs.dir}"])
    try:
        await engine.stopped.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if not engine.stopped.is_set():
            await engine.shutdown()
        printer.close()
    return 0


def _pid() -> int:
    return os.getpid()
