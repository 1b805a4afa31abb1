"""Crashes now and then: runs 5-20 s, then exits with code 1 (or SIGABRT) so you can watch restarts."""

import os
import random
import sys
import time

life = random.uniform(5, 20)
print(f"flaky: pid {os.getpid()} up, will crash in {life:.1f}s", flush=True)
time.sleep(life)
if random.random() < 0.3:
    print("flaky: fatal: corrupted state, aborting", file=sys.stderr, flush=True)
    os.abort()
print("flaky: unhandled error: connection reset by peer", file=sys.stderr, flush=True)
sys.exit(1)
