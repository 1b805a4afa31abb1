import os
import signal
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"stubborn {os.getpid()}", flush=True)
while True:
    time.sleep(60)
