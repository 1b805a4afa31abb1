"""`oxtui fleet [HOST...]`: the TUI over several hosts (tui/fleet.py), each reached by its own SSH link."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..fleet.fleetfile import FleetError, pick
from ..fleet.session import FleetSession
from .hangup import Hangup


def fleet_tui(names: list[str], fleet_file: Path | None) -> int:
    try:
        hosts = pick(names or None, fleet_file)
    except FleetError as e:
        for line in e.errors:
            print(f"oxtui fleet: {line}", file=sys.stderr)
        return 2
    from ..tui.fleet import FleetApp
    session = FleetSession(hosts)
    session.start()
    app = FleetApp(session)
    # Leaving (or losing the terminal) ends only this view and its SSH links: the engines run on their hosts.
    def leave() -> None:
        session.close()
        os._exit(0)
    Hangup(leave)
    try:
        app.run()
    finally:
        session.close()
    return 0
