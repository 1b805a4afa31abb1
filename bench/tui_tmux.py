"""The TUI as a person over SSH meets it: a real terminal (tmux), keys typed with `send-keys`, the
screen read with `capture-pane` every 2 ms, the bytes the TUI writes to its terminal recorded with
`pipe-pane`.

    .venv/bin/python bench/tui_tmux.py [--rounds 8] [--idle 20] [--settle 120] [--lines 200] [--workers 16]
                                       [--attach]

The oxfile: --workers idle workers (`sleep`) and one process printing --lines lines a second (a quiet web
app's access log). The TUI embeds the engine, or with --attach attaches to one started by `oxtui up`
(then the TUI's process and the engine's are measured apart). Printed, each with the floor measured in
the same run:
1. CPU of the TUI's process (engine and UI in one) over --idle s, with the logger running, once --settle s
   have passed (the default, 120 s: every worker past its first minute, when its uptime stops counting
   seconds, and the log pane's buffer full, when its scroll bar stops moving: the steady state of a TUI
   left open beside a chatty app).
2. `+` until the process row counts the new worker on screen, median and range of --rounds presses; then `k`
   on the first worker until its row shows the kill (pid, state or restarts), and `r` on the process until the reload panel shows
   the reload running (each reload waited to its end before the next). The floor is tmux's own echo of a
   key typed into `cat` in a pane beside it.
3. Bytes written to the terminal per second over --idle s with the logger stopped (the idle workers and
   the stopped logger's row), after --settle s.
Each is bounded in time; everything started is stopped at the end (`oxtui down`, then the tmux server).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

LOGGER = """import sys, time
n, rate = 0, float(sys.argv[1])
start = time.monotonic()
while True:
    n += 1
    print(f'127.0.0.1 - - "GET /items/{n} HTTP/1.1" 200 512 0.8ms', flush=True)
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
"""


class Tmux:
    def __init__(self, folder: Path):
        self.socket = str(folder / "tmux.sock")

    def __call__(self, *args: str, check: bool = True) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=check,
                              timeout=30).stdout

    def screen(self, target: str) -> str:
        return self("capture-pane", "-p", "-t", target)


def wait_screen(tmux: Tmux, target: str, text: str, timeout: float, poll: float = 0.002,
                t0: float | None = None, row: str = "") -> float:
    """Seconds from `t0` (default: now) until `text` is on the pane's screen (polled every `poll` s), in a
    line that starts with `row` when given."""
    t0 = time.perf_counter() if t0 is None else t0
    while not any(text in line and line.lstrip().startswith(row) for line in tmux.screen(target).splitlines()):
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"tui_tmux: {text!r} not on screen after {timeout} s:\n{tmux.screen(target)}")
        time.sleep(poll)
    return time.perf_counter() - t0


def row_state(tmux: Tmux, label: str) -> tuple[str, ...] | None:
    """The PID, STATE and RESTARTS cells of the grid row whose name is `label`, as on screen (120 columns:
    every cell, the sparklines one word each)."""
    for line in tmux.screen("bench:tui").splitlines():
        cells = line.replace("├", " ").replace("└", " ").split()
        if cells and f"{cells[0]} " == label and len(cells) > 7:
            return cells[1], cells[2], cells[7]
    return None


def echo_floor(tmux: Tmux, rounds: int) -> list[float]:
    """tmux's own path: a key typed into `cat` until its echo is on the screen."""
    tmux("new-window", "-d", "-t", "bench", "-n", "echo", "cat")
    time.sleep(0.3)
    out = []
    for i in range(rounds):
        ch = "abcdefghijklmnop"[i % 16]
        t0 = time.perf_counter()
        tmux("send-keys", "-t", "bench:echo", ch * 3)
        while ch * 3 not in tmux.screen("bench:echo"):
            time.sleep(0.002)
        out.append(time.perf_counter() - t0)
        tmux("send-keys", "-t", "bench:echo", "Enter")
        time.sleep(0.1)
    return out


def tui_process(oxfile: Path, env: dict[str, str]) -> psutil.Process:
    """The embedded engine's pid is the TUI's process (tmux's server is not our child)."""
    out = subprocess.run([PY, "-m", "oxtui", "status", "--json", "-c", str(oxfile)], env=env, capture_output=True,
                         text=True, check=True, timeout=60)
    return psutil.Process(json.loads(out.stdout)["engine_pid"])


def pane_process(tmux: Tmux) -> psutil.Process:
    """The TUI's own process: the pane's shell, or the python it runs."""
    shell = psutil.Process(int(tmux("display-message", "-p", "-t", "bench:tui", "#{pane_pid}").strip()))
    for p in [shell, *shell.children(recursive=True)]:
        if "oxtui" in " ".join(p.cmdline()):
            return p
    raise SystemExit("tui_tmux: the TUI's process is not in its pane")


def cpu_percent(ps: psutil.Process, seconds: float) -> float:
    c0, t0 = sum(ps.cpu_times()[:2]), time.perf_counter()
    time.sleep(seconds)
    return (sum(ps.cpu_times()[:2]) - c0) / (time.perf_counter() - t0) * 100


def report(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{name}: median {statistics.median(ms):.0f} ms [{ms[0]:.0f}-{ms[-1]:.0f}] (n={len(ms)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--idle", type=float, default=20)
    ap.add_argument("--settle", type=float, default=120)
    ap.add_argument("--lines", type=float, default=200, help="the logger's lines a second")
    ap.add_argument("--size", default="120x36")
    ap.add_argument("--workers", type=int, default=16, help="idle workers beside the logger")
    ap.add_argument("--attach", action="store_true", help="the TUI attaches to an engine started by `oxtui up`")
    args = ap.parse_args()
    n = args.workers
    # a bench stopped with SIGTERM still runs its `finally`: `oxtui down` and the tmux server's end (tmux
    # detaches from us: left behind it would keep the TUI and every worker running)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not shutil.which("tmux"):
        raise SystemExit("tui_tmux: needs tmux (apt-get install -y tmux)")
    cols, rows = args.size.split("x")
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        (folder / "logger.py").write_text(LOGGER)
        oxfile = folder / "oxfile.toml"
        oxfile.write_text(f'[processes.idle]\ncommand = "sleep 100000"\ninstances = {n}\n'
                          f'[processes.log]\ncommand = "{PY} -u logger.py {args.lines}"\n[logs]\ndir = "logs"\n')
        env = {**os.environ, "OXTUI_RUNTIME_DIR": str(folder), "TERM": "xterm-256color"}
        tmux = Tmux(folder)
        if args.attach:
            subprocess.run([PY, "-m", "oxtui", "up", str(oxfile)], env=env, check=True, capture_output=True,
                           timeout=120, cwd=folder)
        tmux("-f", "/dev/null", "new-session", "-d", "-s", "bench", "-n", "tui", "-x", cols, "-y", rows,
             "-e", f"OXTUI_RUNTIME_DIR={folder}", f"cd {folder} && {PY} -m oxtui {oxfile}")
        tmux("set-option", "-g", "status", "off")
        try:
            wait_screen(tmux, "bench:tui", f"{n}/{n}", 60 + n / 10, poll=0.1, row="▼ idle")
            wait_screen(tmux, "bench:tui", "log.0", 30, poll=0.1)
            engine = tui_process(oxfile, env)
            ps = pane_process(tmux) if args.attach else engine
            floor = echo_floor(tmux, args.rounds)
            time.sleep(args.settle)
            e0 = sum(engine.cpu_times()[:2])
            cpu = cpu_percent(ps, args.idle)
            engine_cpu = (sum(engine.cpu_times()[:2]) - e0) / args.idle * 100
            lat = []
            for i in range(args.rounds):
                time.sleep(1.0)
                # the process row's count ("16/17 up"): the new worker's own row is below the grid's fold
                label = f"/{n + 1 + i}"     # (from 100 workers without " up": the grid's 9 cells hold the numbers)
                t0 = time.perf_counter()
                tmux("send-keys", "-t", "bench:tui", "+")
                lat.append(wait_screen(tmux, "bench:tui", label, 10, t0=t0, row="▼ idle"))
            # k on the first worker: until its row shows the kill (its pid, state or restart count changes;
            # the restart itself may wait for its backoff: a second crash within 10 s of a start does)
            tmux("send-keys", "-t", "bench:tui", "Down")
            kills = []
            for _ in range(args.rounds):
                time.sleep(1.0)
                before = row_state(tmux, "idle.0 ")
                t0 = time.perf_counter()
                tmux("send-keys", "-t", "bench:tui", "k")
                while row_state(tmux, "idle.0 ") in (before, None):
                    if time.perf_counter() - t0 > 10:
                        raise SystemExit("tui_tmux: k changed nothing on idle.0's row within 10 s")
                    time.sleep(0.002)
                kills.append(time.perf_counter() - t0)
            # r on the process: until the reload panel shows the reload running (its first step on screen)
            tmux("send-keys", "-t", "bench:tui", "Up")
            reloads = []
            for i in range(args.rounds):
                time.sleep(1.0)
                t0 = time.perf_counter()
                tmux("send-keys", "-t", "bench:tui", "r")
                reloads.append(wait_screen(tmux, "bench:tui", f"reload of release {2 + i} running", 10, t0=t0,
                                           row="idle:"))
                wait_screen(tmux, "bench:tui", f"reload of release {2 + i} done", 120, poll=0.1, row="idle:")
            print(report("tmux echo floor", floor))
            how = "attached" if args.attach else "embedded"
            print(report(f"`+` -> new row ({how}, {n + args.rounds} workers, logger at {args.lines:.0f}/s)", lat))
            print(report(f"`k` -> the worker's row shows the kill ({how})", kills))
            print(report(f"`r` -> the reload panel shows the reload running ({how})", reloads))
            print(f"TUI CPU ({how}) with the logger at {args.lines:.0f} lines/s, {n + 1} workers: {cpu:.1f} % of a "
                  f"core over {args.idle:.0f} s" + (f" (the engine beside it: {engine_cpu:.1f} %)" if args.attach else ""))
            subprocess.run([PY, "-m", "oxtui", "stop", "log", "-c", str(oxfile)], env=env, check=True,
                           capture_output=True, timeout=60)
            # back to the idle workers and the stopped logger
            subprocess.run([PY, "-m", "oxtui", "scale", "idle", str(n), "-c", str(oxfile)], env=env, check=True,
                           capture_output=True, timeout=60)
            time.sleep(args.settle)
            dump = folder / "bytes"
            tmux("pipe-pane", "-O", "-t", "bench:tui", f"cat >> {dump}")
            t0 = time.perf_counter()
            time.sleep(args.idle)
            tmux("pipe-pane", "-t", "bench:tui")
            took = time.perf_counter() - t0
            size = dump.stat().st_size if dump.exists() else 0
            print(f"bytes to the terminal ({how}), idle, {n + 1} workers: {size / took / 1024:.2f} KB/s over "
                  f"{took:.0f} s ({size} bytes)")
        finally:
            subprocess.run([PY, "-m", "oxtui", "down", "-c", str(oxfile)], env=env, capture_output=True, timeout=120,
                           check=False)
            tmux("kill-server", check=False)


if __name__ == "__main__":
    main()
