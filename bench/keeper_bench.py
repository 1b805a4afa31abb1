"""What a SIGKILLed engine costs now that the keeper outlives it, and what keeping history on disk costs.

    .venv/bin/python bench/keeper_bench.py [--workers 4 64] [--runs 3] [--soak 60]

1. For each worker count: N instances of sample_apps/server.js on one port under `oxtui up`, a
   keep-alive load from this process (8 connections, 127.0.0.1 only, bounded in time), then SIGKILL of
   the engine. Measured: the time from the SIGKILL to a new engine answering `status` on the control
   socket, the requests answered and failed from the kill until then, and the p99 latency of the
   requests sent in that gap, beside the p99 of an equally long window just before the kill (the
   baseline of the same run).
2. The journal (engine/journal.py): a soak of --soak seconds with a process that crashes every 0.2 s
   (5 exits, restarts and events a second: far more history than a real app writes) beside 4 idle
   workers. Measured: the engine's CPU, and the bytes and writes of the journal, from status --json.

Nothing is asserted: the numbers are printed as a Markdown table for README / docs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
sys.path.insert(0, str(ROOT))
from reload_bench import free_port

from oxtui.client.connection import status_of


def cli(*args: str, cwd: Path, tree: str | None = None) -> subprocess.CompletedProcess[str]:
    """`oxtui ARGS`, from this checkout or from another `tree` (a worktree of an older commit)."""
    env = {**os.environ, **({"PYTHONPATH": tree} if tree else {})}
    return subprocess.run([PY, "-m", "oxtui", *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=env)


def status(oxfile: Path) -> dict | None:
    return status_of(oxfile, timeout=2)


class KeepAlive:
    """Threads on persistent HTTP/1.1 connections; every request's (start, latency, ok)."""

    def __init__(self, port: int, threads: int = 8, seconds: float = 60):
        self.port, self.deadline = port, time.monotonic() + seconds
        self.samples: list[tuple[float, float, bool]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> KeepAlive:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            t0 = time.monotonic()
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
            with self.lock:
                self.samples.append((t0, time.monotonic() - t0, ok))
            time.sleep(0.002)
        conn.close()

    def window(self, a: float, b: float) -> list[tuple[float, float, bool]]:
        with self.lock:
            return [s for s in self.samples if a <= s[0] < b]


def p99(samples: list[tuple[float, float, bool]]) -> float:
    lat = sorted(s[1] for s in samples)
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")


def kill_once(workers: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        port = free_port()
        oxfile = folder / "oxfile.toml"
        oxfile.write_text(f'''
[processes.api]
command = "node {ROOT / 'sample_apps' / 'server.js'}"
instances = {workers}
listen = "127.0.0.1:{port}"
[processes.api.ready]
log = "listening on"
timeout = 60
[logs]
dir = "logs"
''')
        env_dir = folder / "run"
        env_dir.mkdir(mode=0o700)
        os.environ["OXTUI_RUNTIME_DIR"] = str(env_dir)
        r = cli("up", str(oxfile), cwd=folder)
        if r.returncode != 0:
            raise SystemExit(f"oxtui up failed: {r.stderr}")
        try:
            before = status(oxfile)
            assert before is not None
            pids = sorted(w["pid"] for w in before["processes"][0]["workers"])
            with KeepAlive(port, seconds=40) as load:
                time.sleep(3)
                killed = time.monotonic()
                os.kill(before["engine_pid"], signal.SIGKILL)
                while (s := status(oxfile)) is None or s["engine_pid"] == before["engine_pid"]:
                    time.sleep(0.002)
                answered = time.monotonic()
                time.sleep(2)
            gap = answered - killed
            during = load.window(killed, answered)
            baseline = load.window(killed - max(gap, 0.5), killed)
            after = status(oxfile)
            assert after is not None
            same = sorted(w["pid"] for w in after["processes"][0]["workers"]) == pids
            return {"gap_ms": gap * 1000, "served": sum(1 for s in during if s[2]),
                    "failed": sum(1 for s in load.samples if not s[2]), "p99_gap_ms": p99(during),
                    "p99_before_ms": p99(baseline), "same_pids": same,
                    "cause": after["engine"]["recovered"]["cause"]}
        finally:
            cli("down", "-c", str(oxfile), cwd=folder)


def soak(seconds: float, tree: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        oxfile = folder / "oxfile.toml"
        oxfile.write_text('''
[processes.idle]
command = "sleep 3600"
instances = 4
[processes.crashy]
command = "sh -c 'sleep 0.2; exit 1'"
backoff = 0
max_restarts = 100000
restart_window = 1
[logs]
dir = "logs"
''')
        (folder / "run").mkdir(mode=0o700)
        os.environ["OXTUI_RUNTIME_DIR"] = str(folder / "run")
        cli("up", str(oxfile), cwd=folder, tree=tree)
        try:
            first = status(oxfile)
            assert first is not None
            import psutil
            engine = psutil.Process(first["engine_pid"])
            cpu0, t0 = sum(engine.cpu_times()[:2]), time.monotonic()
            j0 = first["engine"].get("journal") or {}
            time.sleep(seconds)
            last = status(oxfile)
            assert last is not None
            cpu1, t1 = sum(engine.cpu_times()[:2]), time.monotonic()
            j1 = last["engine"].get("journal") or {}
            events = last["processes"][1]["workers"][0]["restarts"] - first["processes"][1]["workers"][0]["restarts"]
            minutes = (t1 - t0) / 60
            return {"cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100, "restarts_per_min": events / minutes,
                    "journal_bytes_per_min": (j1.get("bytes", 0) - j0.get("bytes", 0)) / minutes,
                    "journal_writes_per_min": (j1.get("writes", 0) - j0.get("writes", 0)) / minutes,
                    "bytes_per_restart": (j1.get("bytes", 0) - j0.get("bytes", 0)) / max(events, 1)}
        finally:
            cli("down", "-c", str(oxfile), cwd=folder, tree=tree)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[4, 64])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--soak", type=float, default=60)
    ap.add_argument("--baseline", metavar="TREE", help="also soak the oxtui of this checkout (e.g. a worktree "
                    "of the commit before the keeper), alternating with this one, for the CPU ratio")
    args = ap.parse_args()
    print(f"{time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"Python {sys.version.split()[0]}; median [min-max] of {args.runs} runs\n")
    print("| workers | SIGKILL -> new engine answers (ms) | served in the gap | failed (whole run) "
          "| p99 in the gap (ms) | p99 just before (ms) | same pids |")
    print("|---|---|---|---|---|---|---|")
    for n in args.workers:
        runs = [kill_once(n) for _ in range(args.runs)]

        def col(k: str, fmt: str = "{:.0f}") -> str:
            vals = [r[k] for r in runs]
            return f"{fmt.format(statistics.median(vals))} [{fmt.format(min(vals))}–{fmt.format(max(vals))}]"
        print(f"| {n} | {col('gap_ms')} | {col('served')} | {sum(r['failed'] for r in runs)} | "
              f"{col('p99_gap_ms', '{:.1f}')} | {col('p99_before_ms', '{:.1f}')} | "
              f"{all(r['same_pids'] for r in runs)} |", flush=True)
    if args.soak:
        trees = [None, args.baseline] if args.baseline else [None]
        for rnd in range(2 if args.baseline else 1):
            for tree in trees:
                s = soak(args.soak, tree)
                who = "baseline " + tree if tree else "this checkout"
                print(f"\nsoak {rnd + 1}, {who}, {args.soak:.0f} s, {s['restarts_per_min']:.0f} restarts/min: engine "
                      f"CPU {s['cpu_pct']:.2f} % of a core; journal {s['journal_bytes_per_min'] / 1024:.0f} KiB/min "
                      f"in {s['journal_writes_per_min']:.0f} state writes/min "
                      f"({s['bytes_per_restart']:.0f} bytes per restart)", flush=True)
    print(json.dumps({"note": "raw numbers above; nothing asserted"}))


if __name__ == "__main__":
    main()
