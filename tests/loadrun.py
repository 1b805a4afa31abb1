"""Bounded HTTP load from the command line, for places a test cannot reach with a thread (inside a
container's own network): `python loadrun.py PORT STOPFILE [MAX_SECONDS]` sends requests until
STOPFILE exists (or MAX_SECONDS pass), then prints {"ok": N, "failures": [...]} as JSON."""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import Load


def main() -> None:
    port, stop = int(sys.argv[1]), sys.argv[2]
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else 120.0
    deadline = time.monotonic() + limit
    with Load.steady(port, max_seconds=limit) as load:
        while not os.path.exists(stop) and time.monotonic() < deadline:
            time.sleep(0.05)
    print(json.dumps({"ok": len(load.bodies), "failures": load.failures, "pids": sorted({b.split()[1] for b in load.bodies if len(b.split()) > 1})}))


if __name__ == "__main__":
    main()
