"""Prints N numbered lines as fast as it can, then idles (so the engine does not restart it)."""
import sys, time
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    out.write(f"line {i:07d} " + "x" * 80 + "\n")
out.flush()
print("done", flush=True)
while True:
    time.sleep(60)
