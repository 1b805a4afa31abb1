"""Where a crash restart's time goes: kill -9 of a worker -> its replacement has exec'd.

    .venv/bin/python bench/restart_timeline.py [--rounds 30]

Every step is a CLOCK_MONOTONIC time (one clock for every process on the machine): the kill (here),
the exit reaped by the spawner helper and heard by the engine, the spawn asked, received by the
helper, the fork, the pid back at the engine (all from the engine's "start" event), and the
replacement's exec seen in /proc (here, polling). Next to it, in the same run, two raw baselines:
Python's subprocess.Popen(["sh", "-c", "exec sleep 3600"]) until its exec is seen the same way; and
the least a supervisor can do, a loop that waits for its `sleep` and Popen's the next one at once
(no log pipes, no records, no policy), measured the same way as the engine: kill -9 -> the
replacement has exec'd. Medians over --rounds.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_bench import Engine, _children, exec_done

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from oxtui.client.connection import Client

STEPS = ("exit_reaped_by_helper", "exit_heard_by_engine", "spawn_asked", "helper_got_request", "forked",
         "engine_got_pid", "exec_seen")
# A restart the engine approved in advance (oxtui/engine/approval.py): the helper forks on its own and
# the engine hears of the exit and the new pid together, after the fork.
APPROVED = ("exit_reaped_by_helper", "forked", "exit_heard_by_engine", "exec_seen")


def raw_baseline(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.monotonic_ns()
        p = subprocess.Popen(["sh", "-c", "exec sleep 3600"])
        while not exec_done(p.pid, "sleep"):
            pass
        times.append(time.monotonic_ns() - t0)
        p.kill()
        p.wait()
    return statistics.median(times) / 1e6


# The least a supervisor does: wait for the child, start the next at once.
SUPERVISOR = """
import subprocess
while True:
    subprocess.Popen(["sleep", "3600"]).wait()
"""


def raw_supervisor(rounds: int) -> float:
    sup = subprocess.Popen([sys.executable, "-I", "-c", SUPERVISOR])
    times = []
    try:
        while not [k for k in _children(sup.pid) if exec_done(k, "sleep")]:
            time.sleep(0.01)
        for _ in range(rounds):
            time.sleep(0.3)
            (pid,) = _children(sup.pid)
            t0 = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            while not [k for k in _children(sup.pid) if k != pid and exec_done(k, "sleep")]:
                pass
            times.append(time.monotonic_ns() - t0)
    finally:
        left = _children(sup.pid)       # before the loop goes: its child would be re-parented
        sup.kill()
        sup.wait()
        for k in left:
            os.kill(k, signal.SIGKILL)
    return statistics.median(times) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="oxtui-timeline-"))
    eng = Engine(folder, '[processes.s]\ncommand = "sleep 3600"\nbackoff = 0\nmax_restarts = 100000\n')
    client = lambda: Client(eng.oxfile, timeout=10)
    deltas: dict[str, list[float]] = {s: [] for s in STEPS}
    approved = 0
    totals = []
    try:
        while not eng.worker_pids():
            time.sleep(0.05)
        time.sleep(1.5)
        for _ in range(args.rounds):
            pid = eng.worker_pids()[0]
            with client() as c:
                seq = c.call({"cmd": "events", "n": 0})["seq"]
            t0 = time.monotonic_ns()
            os.kill(pid, signal.SIGKILL)
            while True:
                new = [p for p in eng.worker_pids() if p != pid]
                if new:
                    break
            seen = time.monotonic_ns()
            start = None
            while start is None:
                with client() as c:
                    evs = c.call({"cmd": "events", "n": 20})["events"]
                start = next((e for e in evs if e["seq"] > seq and e["event"] == "start"), None)
            tl = {**start["timeline"], "exec_seen": seen}
            steps = APPROVED if tl["spawn_asked"] == tl["exit_reaped_by_helper"] else STEPS
            approved += steps is APPROVED
            prev = t0
            for step in steps:
                deltas[step].append((tl[step] - prev) / 1e6)
                prev = tl[step]
            totals.append((seen - t0) / 1e6)
            time.sleep(1.2)            # past the backoff's "immediate restart" window
        raw = raw_baseline(args.rounds)
        least = raw_supervisor(args.rounds)
    finally:
        eng.stop()
    print(f"kill -9 -> replacement exec'd, median of {args.rounds} (ms); baseline Popen('sh -c exec sleep') "
          f"-> exec'd: {raw:.2f} ms")
    print(f"  {approved} of {args.rounds} restarts approved in advance (the helper restarted on its own)")
    prev = "kill -9 sent"
    for step in (APPROVED if approved * 2 > args.rounds else STEPS):
        print(f"  {prev:>24} -> {step:<24} {statistics.median(deltas[step]):7.2f}")
        prev = step
    total = statistics.median(totals)
    print(f"  {'total':>24}    {'':<24} {total:7.2f}   ({total / raw:.2f}x the raw baseline)")
    print(f"  the least supervisor (waitpid, then Popen): kill -9 -> replacement exec'd {least:.2f} ms; "
          f"oxtui {total / least:.2f}x that")
    return 0


if __name__ == "__main__":
    sys.exit(main())
