"""The engine's side of its keeper (keeper.py, inside the spawner helper): what the engine tells it so
that a new engine can take over should this one die. The descriptors to hold (the lock, the control
socket, each listening socket; an adopted worker's pipes), how to start a new engine (identity), that a
stop was asked for (bye); and under systemd, the engine's beats, so that the keeper can replace a hung
engine before systemd's watchdog fails the whole unit.

Why the engine, not the keeper, is systemd's MAINPID: systemd waits properly only for its own child
(made the main process, the keeper is "not our child": a user manager then SIGKILLs the whole unit at
`systemctl --user stop`, with no graceful stop). So the engine stays MAINPID, the unit has
ExitType=cgroup (systemd 250+: it stays active while its cgroup holds the workers), and a new engine
started by the keeper names itself with MAINPID=. On an older systemd an engine's death ends the unit
as before. A SIGKILLed keeper takes the workers with it, and the unit restarts as a whole.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING

from ..runtime import ENGINE_OUT

if TYPE_CHECKING:
    from ..observers.sdnotify import Notifier
    from .api import EngineApi
    from .spawn import Spawner


class KeeperLink:
    def __init__(self, spawner: Spawner, service: Notifier):
        self.spawner, self.service = spawner, service

    def arm(self, engine: EngineApi, lock_fd: int | None, recovered: bool) -> None:
        """At every start (a fresh one, a hand-over, a recovery): tell the keeper all it must know."""
        sp = self.spawner
        sp.ensure()
        self.hold("lock", lock_fd)
        if engine.control is not None:
            self.hold("control", engine.control.listener_fd())
        for g in engine.groups.values():
            self.hold(f"listen:{g.name}", g.listen_fd)
            # adopted ones: a keeper from before an upgrade has no copies (one that started us has them all)
            for w in ([] if recovered else g.all_workers()):
                info = w.handover_info()
                if info is not None and info["pid"] is not None and (info["stdout"] or -1) >= 0:
                    sp.tell({"cmd": "pipes", "pid": info["pid"], "tag": w.keeper_tag()},
                            [info["stdout"], info["stderr"]])
        systemd = self.service.active
        if systemd:
            # The keeper watches this engine's beats: silent for 3/4 of WatchdogSec, it is hung, and the
            # keeper replaces it before systemd's watchdog would fail the whole unit.
            self.service.beat = lambda: sp.tell({"cmd": "beat"})
            if recovered:
                self.service.send(f"MAINPID={os.getpid()}")     # (ExitType=cgroup kept the unit up)
        path = engine.config.path
        argv = [sys.executable, "-P", "-m", "oxtui", "run", *([] if systemd else ["--background"]), str(path)]
        watchdog = int(self.service.watchdog_s * 1e6) if systemd and self.service.watchdog_s else 0
        sp.tell({"cmd": "identity", "pid": os.getpid(), "argv": argv, "cwd": str(path.parent),
                 "out": None if systemd else str(engine.logs.dir / ENGINE_OUT), "systemd": systemd,
                 "watchdog_usec": watchdog})

    def replaced(self, engine: EngineApi, lock_fd: int | None) -> None:
        """The keeper died (its workers with it) and a new helper runs: make it the keeper. Under
        systemd this engine exits instead, so that the unit restarts as a whole (Restart=on-failure),
        as a person reading `systemctl status` would expect of an event that killed every app."""
        if self.service.active:
            engine.log("the keeper died, and every worker with it; under systemd the unit restarts as a whole")

            def leave() -> None:
                engine.logs.flush()
                sys.stdout.flush()
                os._exit(1)
            asyncio.get_running_loop().call_soon(leave)
            return
        self.arm(engine, lock_fd, recovered=False)

    def hold(self, key: str, fd: int | None) -> None:
        """The keeper keeps a copy of fd under key (replacing the one it had), or lets it go (None):
        a port closed on purpose must close in the keeper too, so clients are refused at once."""
        if fd is None:
            self.spawner.ask({"cmd": "drop", "key": key})     # closed there before the caller is answered
        else:
            self.spawner.tell({"cmd": "hold", "key": key}, [fd])

    def bye(self) -> None:
        """A stop was asked for: from now on the keeper stops with this engine instead of replacing it."""
        self.spawner.tell({"cmd": "bye"})

    def adopted(self) -> None:
        """This engine, started by the keeper, has taken every worker over."""
        self.spawner.tell({"cmd": "adopted"})
