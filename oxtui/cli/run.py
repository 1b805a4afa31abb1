"""`oxtui run`: the engine headless in the foreground, merged logs on stdout.

SIGINT/SIGTERM stop everything gracefully and exit 0 (a second Ctrl-C SIGKILLs what is left).
SIGHUP reloads every process when nothing but a service manager or a script can send it (no
controlling terminal: systemd, `oxtui up`, nohup); started from a terminal, a SIGHUP means the
terminal hung up (the SSH window closed), and the engine keeps serving without a reload. Under systemd (`oxtui startup`) only engine events are printed unless
[logs] stdout = "all". With `background` (how `oxtui up` starts it) nothing is printed but
errors: the workers' output is in the log files, the engine's own events in oxtui.log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping

from ..engine import Engine, EngineError
from ..observers.sdnotify import under_systemd
from ..oxfile.config import Config
from ..protocol import LogBatch
from .printer import Printer


def prints_everything(mode: str, environ: Mapping[str, str]) -> bool:
    """Under systemd, stdout is the journal: by default it gets the engine's events (starts, exits,
    restarts, reload steps), not the workers' lines, which are already in the log files."""
    return mode == "all" or (mode == "auto" and not under_systemd(environ))


def run(config: Config, background: bool = False, adopt: int | None = None, only: set[str] | None = None,
        recover: int | None = None) -> int:
    return asyncio.run(_run(config, background, adopt, only, recover))


async def _run(config: Config, background: bool, adopt: int | None, only: set[str] | None,
               recover: int | None = None) -> int:
    engine = Engine(config)
    engine.background = background
    printer = Printer(sys.stdout)
    if not background:
        if prints_everything(config.logs.stdout, os.environ):
            engine.logs.subscribers.append(printer.on_batch)
        else:
            def events_only(b: LogBatch) -> None:
                if b.stream == "event":
                    printer.on_batch(b)
            engine.logs.subscribers.append(events_only)
    try:
        if adopt is not None:
            await engine.adopt(adopt)     # an embedded engine moving to the background (handover.py)
        elif recover is not None:
            await engine.recover(recover)     # the keeper's new engine after one died (recovery.py)
        else:
            await engine.start(only)
    except (EngineError, OSError, ValueError, KeyError) as e:
        printer.close()
        if adopt is not None or recover is not None:
            print(f"oxtui: {config.path}: cannot take over the engine: {e}", file=sys.stderr, flush=True)
        else:
            print(f"oxtui: {e}", file=sys.stderr, flush=True)
        return 1
    loop = asyncio.get_running_loop()
    interrupts = 0
    terminal = not background and _has_terminal()

    def on_stop(signame: str) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            again = " (Ctrl-C again to force)" if signame == "SIGINT" and terminal else ""
            engine.log(f"{signame}: stopping every process gracefully{again}")
            loop.create_task(engine.shutdown())
        else:
            engine.log(f"{signame} again: SIGKILL to every process")
            engine.force_kill()

    def on_hangup() -> None:
        nonlocal terminal
        if not terminal:
            engine.reload_all_in_background()
            return
        # The terminal went away (an SSH window closed): that is not a deploy. Keep serving, and stop
        # writing to a terminal that no longer exists; the log files have every line.
        terminal = False
        _detach_from_terminal(printer)
        engine.log(f"SIGHUP: the terminal hung up; engine pid {os.getpid()} keeps every worker running "
                   "(no reload: `oxtui reload all` reloads, `oxtui down` stops it)")

    loop.add_signal_handler(signal.SIGINT, on_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGTERM, on_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    where = "in the background" if background else "in the foreground"
    if adopt is not None:
        where += ", taken over from the engine before it"
    elif recover is not None:
        where += ", started by the keeper after the engine before it died"
    engine.logs.emit("oxtui", None, "event", [(f"engine pid {_pid()} running {config.path} {where}; "
                                              f"logs in {engine.logs.dir}")])
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


def _has_terminal() -> bool:
    """Started from a terminal (a controlling tty): then SIGHUP means it hung up, not "reload"."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _detach_from_terminal(printer: Printer) -> None:
    printer.mute()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)       # whatever is still queued for the dead terminal lands nowhere, at once
    os.close(devnull)
