"""Forks a grandchild that ignores SIGTERM and stays in the group; writes its pid to ./grandchild.pid."""
import os
import signal
import sys
import time

pid = os.fork()
if pid == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(60)
with open("grandchild.pid", "w") as f:
    f.write(str(pid))
print(f"parent {os.getpid()} forked {pid}", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(60)
