"""Prints "line <i> <padding> end" with i = 0, 1, 2 ..., in bursts of `burst` lines every `pause` s, for
ever: a test reading the log file back finds which numbers are there. A line cut by a full disk lacks
its " end", so only whole lines count. `stderr` as a third argument prints to stderr instead."""
import itertools
import sys
import time

pause = float(sys.argv[1]) if len(sys.argv) > 1 else 0.01
pad = "x" * (int(sys.argv[2]) if len(sys.argv) > 2 else 100)
out = sys.stderr if sys.argv[3:] == ["stderr"] else sys.stdout
burst = 10
for i in itertools.count(step=burst):
    out.write("".join(f"line {j} {pad} end\n" for j in range(i, i + burst)))
    out.flush()
    time.sleep(pause)
