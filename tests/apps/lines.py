"""Prints N numbered lines as fast as it can, then idles (so the engine does not restart it).

The lines go out in writes of uneven sizes that never line up with line ends, so the engine's
reads split lines the way a real burst does (one write per line would never split one)."""
import os
import sys
import time

n = int(sys.argv[1])
data = "".join(f"line {i:07d} " + "x" * 80 + "\n" for i in range(n)).encode()
sizes = (65521, 4093, 7, 131071, 1)     # primes and odd sizes: cuts land inside lines
pos, k = 0, 0
while pos < len(data):
    end = min(len(data), pos + sizes[k % len(sizes)])
    while pos < end:
        pos += os.write(1, data[pos:end])
    k += 1
print("done", flush=True)
while True:
    time.sleep(60)
