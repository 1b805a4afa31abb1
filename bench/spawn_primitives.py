"""What starting N processes costs with each way Python can start one, in one run, rounds alternated.

    .venv/bin/python bench/spawn_primitives.py [-n 1000] [--rounds 3]

- `Popen`: subprocess.Popen, which vfork()s and exec's in C (the baseline of engine_bench.py);
- `posix_spawn`: os.posix_spawn with setsid (also a vfork in glibc, nothing in Python in between);
- `os.fork`: what the spawner helper does: fork the interpreter, run the set-up in Python in the
  child (setsid, close fds), then exec. The child cannot run Python after a vfork, and neither
  vfork path can call prctl(PR_SET_PDEATHSIG) in the child, which the helper needs so that no
  instance outlives it.

Each: from the first call until every child has exec'd `sleep` (seen in /proc), then all killed.
The interpreter is started with -I like the helper.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

SLEEP = "/usr/bin/sleep" if os.path.exists("/usr/bin/sleep") else "/bin/sleep"


def exec_done(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/exe").endswith("sleep")
    except OSError:
        return False


def start(mode: str, n: int) -> list[int]:
    if mode == "Popen":
        return [subprocess.Popen([SLEEP, "1000"]).pid for _ in range(n)]
    if mode == "posix_spawn":
        return [os.posix_spawn(SLEEP, [SLEEP, "1000"], os.environ, setsid=True) for _ in range(n)]
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                os.closerange(3, 1 << 20)
                os.execv(SLEEP, [SLEEP, "1000"])
            finally:
                os._exit(127)
        pids.append(pid)
    return pids


def one(mode: str, n: int) -> float:
    t0 = time.perf_counter()
    pids = start(mode, n)
    try:
        while not all(exec_done(p) for p in pids):
            time.sleep(0.0005)
        return time.perf_counter() - t0
    finally:
        for p in pids:
            os.kill(p, signal.SIGKILL)
        for p in pids:
            os.waitpid(p, 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not sys.flags.isolated:
        os.execv(sys.executable, [sys.executable, "-I", *sys.argv])
    modes = ("Popen", "posix_spawn", "os.fork")
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for m in modes:
            times[m].append(one(m, args.n))
    base = statistics.median(times["Popen"])
    print(f"{args.n} processes, median of {args.rounds} alternated rounds, {os.cpu_count()} cores")
    for m in modes:
        t = statistics.median(times[m])
        print(f"  {m:<12} {t * 1000:7.0f} ms  {t / args.n * 1e6:6.0f} us each  {t / base:4.2f}x Popen  "
              f"(rounds: {', '.join(f'{x * 1000:.0f}' for x in times[m])} ms)")


if __name__ == "__main__":
    main()
