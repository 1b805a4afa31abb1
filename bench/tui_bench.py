"""The TUI's own cost with N idle workers, and how fast a key press shows up.

    .venv/bin/python bench/tui_bench.py [--workers 1000] [--settle 10] [--idle 20] [--attached]

1. The real `oxtui OXFILE` (engine and UI in one process) in a 120x36 pseudo-terminal: CPU over
   --idle seconds with N `sleep` workers after --settle seconds, and its RSS. With --attached the
   engine runs in the background first (`oxtui up`) and the TUI attaches to it: CPU is both
   processes' together. (goal with 1000 workers: <= 5 % of a core from 10 s after attaching)
2. Pressing `+` -> the new worker's row is in the grid, with 64 workers (Pilot, headless driver),
   median of 5.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N = 64       # --workers

def oxfile_text() -> str:
    return f'[processes.s]\ncommand = "sleep 1000"\ninstances = {N}\n[logs]\ndir = "logs"\n'


def idle_cost(folder: Path, seconds: float, settle: float, attached: bool = False) -> tuple[float, int]:
    """CPU (% of a core) and peak RSS of the TUI process, plus the background engine's when `attached`."""
    oxfile = folder / "oxfile.toml"
    oxfile.write_text(oxfile_text())
    engine = None
    if attached:
        env = {**os.environ, "OXTUI_RUNTIME_DIR": str(folder)}
        subprocess.run([sys.executable, "-m", "oxtui", "up", str(oxfile)], env=env, check=True, timeout=300,
                       capture_output=True)
        out = subprocess.run([sys.executable, "-m", "oxtui", "status", "--json", str(oxfile)], env=env,
                             capture_output=True, text=True, check=True)
        import json
        engine = psutil.Process(json.loads(out.stdout)["engine_pid"])
    try:
        return _idle_cost(folder, oxfile, seconds, settle, engine)
    finally:
        if attached:
            subprocess.run([sys.executable, "-m", "oxtui", "down", str(oxfile)], timeout=300, capture_output=True,
                           env={**os.environ, "OXTUI_RUNTIME_DIR": str(folder)})


def _idle_cost(folder: Path, oxfile: Path, seconds: float, settle: float,
               engine: psutil.Process | None) -> tuple[float, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "OXTUI_RUNTIME_DIR": str(folder)}
    proc = subprocess.Popen([sys.executable, "-m", "oxtui", str(oxfile)], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True)
    os.close(slave)
    threading.Thread(target=lambda: [None for _ in iter(lambda: _read(master), b"")], daemon=True).start()
    ps = psutil.Process(proc.pid)
    try:
        deadline = time.time() + 30
        while sleepers(engine or ps) < N:   # workers are grandchildren, through the spawner helper
            if time.time() > deadline:
                raise SystemExit(f"tui_bench: only {sleepers(engine or ps)} of {N} workers started within 30 s")
            time.sleep(0.2)
        time.sleep(settle)
        measured = [ps] + ([engine] if engine else [])
        cpu_s = lambda: sum(sum(p.cpu_times()[:2]) for p in measured)
        c0 = cpu_s()
        t0 = time.perf_counter()
        rss = 0
        while time.perf_counter() - t0 < seconds:
            rss = max(rss, ps.memory_info().rss)
            time.sleep(0.5)
        cpu = (cpu_s() - c0) / (time.perf_counter() - t0) * 100
        return cpu, rss
    finally:
        # SIGHUP as when the terminal goes away (the engine then goes on headless, by design), then
        # SIGTERM, which stops it and every worker gracefully: nothing of the benchmark is left running.
        proc.send_signal(1)
        time.sleep(1.0)
        proc.send_signal(15)
        proc.wait(120)
        os.close(master)


def sleepers(ps: psutil.Process) -> int:
    """Descendants that have exec'd sleep: the workers, wherever they sit in the tree."""
    n = 0
    for child in ps.children(recursive=True):
        try:
            n += child.name() == "sleep"
        except psutil.Error:
            pass
    return n


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


async def plus_latency(folder: Path, rounds: int = 5) -> list[float]:
    from oxtui.client.embedded import EmbeddedEngine
    from oxtui.oxfile.config import load
    from oxtui.tui.app import OxtuiApp
    oxfile = folder / "oxfile.toml"
    oxfile.write_text(oxfile_text())
    os.environ["OXTUI_RUNTIME_DIR"] = str(folder)
    engine = EmbeddedEngine(load(oxfile))
    engine.start()
    app = OxtuiApp(engine, oxfile)
    out = []
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            while len([w for w in engine.snapshot()["processes"][0]["workers"] if w["pid"]]) < N:
                await pilot.pause(0.1)
            for i in range(rounds):
                await pilot.pause(1.0)
                key = f"w:s:{N + i}:"
                t0 = time.perf_counter()
                await pilot.press("plus")
                while key not in app.grid.rows_by_key:
                    await asyncio.sleep(0.002)
                out.append(time.perf_counter() - t0)
    finally:
        engine.shutdown()
        engine.join(60)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--settle", type=float, default=65,
                    help="seconds before measuring: the first minute fills the sparklines and counts uptime by the second")
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--attached", action="store_true",
                    help="`oxtui up` first, then the TUI attaches: CPU is the engine's and the TUI's together")
    args = ap.parse_args()
    global N
    N = args.workers
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "a").mkdir()
        cpu, rss = idle_cost(Path(d) / "a", args.idle, args.settle, args.attached)
        what = "background engine + attached TUI" if args.attached else "TUI process (engine + UI)"
        print(f"{what}, {N} idle workers, {args.idle:.0f} s after {args.settle:.0f} s: "
              f"{cpu:.2f} % of a core, TUI RSS {rss / 2**20:.1f} MB",
              flush=True)
        (Path(d) / "b").mkdir()
        lat = asyncio.run(plus_latency(Path(d) / "b"))
        print(f"`+` -> new worker row with {N} workers: median {statistics.median(lat) * 1000:.0f} ms "
              f"(min {min(lat) * 1000:.0f}, max {max(lat) * 1000:.0f}, n={len(lat)})")


if __name__ == "__main__":
    main()
