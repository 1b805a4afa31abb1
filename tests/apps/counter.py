"""Prints "n <i> <t>" with i = 0, 1, 2, ... every few milliseconds, for ever (t: CLOCK_MONOTONIC, the
machine's): a test reads the log file back and finds every number once, in order, whatever happened to
the engine in between, and can tell when a missing one was printed (tests/test_keeper.py)."""
import itertools
import sys
import time

pause = float(sys.argv[1]) if len(sys.argv) > 1 else 0.005
for i in itertools.count():
    print(f"n {i} {time.monotonic():.4f}", flush=True)
    time.sleep(pause)
