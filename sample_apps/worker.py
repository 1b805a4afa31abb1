"""A background worker: takes a fake job every second and logs it; stops cleanly on SIGTERM."""

import os
import random
import signal
import sys
import time

running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
print(f"worker: pid {os.getpid()} ready", flush=True)
job = 0
while running:
    job += 1
    took = random.uniform(0.05, 0.5)
    time.sleep(took)
    print(f"worker: job {job} done in {took * 1000:.0f} ms", flush=True)
    if job % 7 == 0:
        print(f"worker: job {job} was slow to fetch its input", file=sys.stderr, flush=True)
    time.sleep(max(0.0, 1.0 - took))
print(f"worker: finished after {job} jobs", flush=True)
