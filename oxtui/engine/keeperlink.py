"""The engine's side of its keeper (keeper.py, inside the spawner helper): what the engine tells it so
that a new engine can take over should this one die. The descriptors to hold (the lock, the control
socket, each listening socket; an adopted worker's pipes), how to start a new engine (identity), that a
stop was asked for (bye); and under systemd, the keeper as the unit's main process: it passes on what
the engine says to systemd and feeds the watchdog while the engine beats.

Why the keeper and not the engine is systemd's MAINPID: the unit must stay active when the engine dies,
and only the process that outlives every engine can be its main process that way on every systemd
(ExitType=cgroup, the other way, needs systemd 250; Ubuntu 22.04 has 249). A SIGKILLed keeper takes
the workers with it, and systemd then restarts the whole unit: the one failure that is not survived.
"""

from __future__ import annotations

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
            for w in g.all_workers():       # adopted ones: a keeper from before an upgrade has no copies
                info = w.handover_info()
                if info is not None and info["pid"] is not None and (info["stdout"] or -1) >= 0:
                    sp.tell({"cmd": "pipes", "pid": info["pid"], "tag": w.keeper_tag()},
                            [info["stdout"], info["stderr"]])
        systemd = self.service.active
        if systemd and sp.helper_pid is not None:
            self.service.main_pid = sp.helper_pid        # named with READY=1 (sdnotify.py)
            self.service.beat = lambda: sp.tell({"cmd": "beat"})
            self.service.relay = lambda text: sp.tell({"cmd": "notify", "text": text})
            self.service.became_main = lambda: sp.tell({"cmd": "main"})
            if self.service.ready_sent:
                if not recovered:
                    # taken over (an upgrade made this engine the main process): the keeper is from now on
                    self.service.send_direct(f"MAINPID={sp.helper_pid}")
                sp.tell({"cmd": "main"})
        path = engine.config.path
        argv = [sys.executable, "-P", "-m", "oxtui", "run", *([] if systemd else ["--background"]), str(path)]
        watchdog = int(self.service.watchdog_s * 1e6) if systemd and self.service.watchdog_s else 0
        sp.tell({"cmd": "identity", "pid": os.getpid(), "argv": argv, "cwd": str(path.parent),
                 "out": None if systemd else str(engine.logs.dir / ENGINE_OUT), "systemd": systemd,
                 "watchdog_usec": watchdog})

    def hold(self, key: str, fd: int | None) -> None:
        """The keeper keeps a copy of fd under key (replacing the one it had), or lets it go (None):
        a port closed on purpose must close in the keeper too, so clients are refused at once."""
        if fd is None:
            self.spawner.tell({"cmd": "drop", "key": key})
        else:
            self.spawner.tell({"cmd": "hold", "key": key}, [fd])

    def bye(self) -> None:
        """A stop was asked for: from now on the keeper stops with this engine instead of replacing it."""
        self.spawner.tell({"cmd": "bye"})

    def adopted(self) -> None:
        """This engine, started by the keeper, has taken every worker over."""
        self.spawner.tell({"cmd": "adopted"})
