"""Soak: hours of churn against one real `oxtui run`, its RSS, fds and CPU sampled every minute.

    .venv/bin/python bench/soak.py --minutes 70 [--out bench/results/soak]

PM2's daemon is known to grow slowly over days (pm2#5145, pm2#6113). This runs what a busy VPS
does to an engine, many times faster:
- every 3 s  SIGKILL of a random instance (web or chatty), by the pid the engine reports;
- every 40 s scaling web to a random 2..6 instances;
- every 60 s a rolling reload of web (canary, surge, drain), while requests flow;
- every 45 s a restart of `flood`, which prints 200,000 lines at once when it starts;
- always     `chatty` printing 100 lines a second, `flaky` crashing after 2-12 s, HTTP requests;
- every 120 s a TUI attached in tmux for 20 s, then torn away (its tmux session killed).
Samples (minute, engine RSS, engine fds, helper RSS, CPU) go to soak.csv and soak.png.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_bench import status
from reload_bench import free_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

OXFILE = """
[processes.web]
command = "{py} {root}/sample_apps/web.py"
instances = 4
listen = "127.0.0.1:{port}"
stop_timeout = 10
[processes.web.ready]
log = "listening on"
http = "/health"
timeout = 15

[processes.chatty]
command = "{py} -u -c 'import time\\nwhile True:\\n    print(\\"chatty line \\" + \\"y\\" * 60)\\n    time.sleep(0.01)'"
instances = 2

[processes.flood]
command = "{py} {root}/tests/apps/lines.py 200000"
instances = 1

[processes.flaky]
command = "{py} -c 'import random, time, sys; time.sleep(random.uniform(2, 12)); sys.exit(1)'"
instances = 2
max_restarts = 1000

[logs]
dir = "logs"
max_size = "20M"
keep = 2
buffer_lines = {buffer_lines}
"""


def oxtui(oxfile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "oxtui", *args, "-c", str(oxfile)], capture_output=True, text=True,
                          timeout=timeout)


def wait_http(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def requests(port: int, stop: threading.Event, counts: dict[str, int]) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                r.read()
            counts["ok"] += 1
        except Exception:
            counts["failed"] += 1     # scaled to a handful of kills: a SIGKILLed instance drops its request
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=70)
    ap.add_argument("--sample", type=float, default=60, help="seconds between samples")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak"))
    ap.add_argument("--buffer-lines", type=int, default=10_000,
                    help="[logs] buffer_lines: each process's ring of recent lines grows until it holds this many; "
                         "web and flaky print ~90 and ~35 lines a minute, so with the default they are still "
                         "filling after 75 minutes (about 350 bytes a line). 1000 fills them within 30 minutes.")
    ap.add_argument("--trace", type=float, metavar="SECONDS",
                    help="run the engine under tracemalloc, a snapshot every SECONDS into OUT/trace "
                         "(then: bench/memtrace.py --diff OUT/trace)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="oxtui-soak-"))
    port = free_port()
    oxfile = folder / "oxfile.toml"
    oxfile.write_text(OXFILE.format(py=PY, root=ROOT, port=port, buffer_lines=args.buffer_lines))
    os.environ["OXTUI_RUNTIME_DIR"] = str(folder)
    cmd = [PY, "-m", "oxtui"]
    if args.trace:
        cmd = [PY, str(ROOT / "bench" / "memtrace.py"), str(out / "trace"), str(args.trace), "--"]
    engine = subprocess.Popen([*cmd, "run", str(oxfile)], stdout=subprocess.DEVNULL,
                              stderr=open(folder / "engine.err", "wb"), start_new_session=True)
    ps = psutil.Process(engine.pid)
    tmux = shutil.which("tmux")
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    rows: list[dict] = []
    events = {"kills": 0, "reloads": 0, "reload_failed": 0, "scales": 0, "floods": 0, "attaches": 0}
    try:
        wait_http(port, 30)
        loader = threading.Thread(target=requests, args=(port, stop, counts), daemon=True)
        loader.start()
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_sample = t0
        last = {"kill": t0, "scale": t0, "reload": t0, "flood": t0, "attach": t0}
        session = None
        attached_at = 0.0
        while time.monotonic() < end:
            now = time.monotonic()
            if engine.poll() is not None:
                raise SystemExit(f"the engine exited with {engine.returncode}; see {folder}/engine.err")
            if now >= next_sample:
                helper = ps.children()
                rows.append({"minute": round((now - t0) / 60, 2), "rss_mb": round(ps.memory_info().rss / 2**20, 2),
                             "fds": ps.num_fds(), "threads": ps.num_threads(),
                             "cpu_s": round(sum(ps.cpu_times()[:2]), 2),
                             "helper_rss_mb": round(helper[0].memory_info().rss / 2**20, 2) if helper else 0,
                             "requests_ok": counts["ok"], "requests_failed": counts["failed"], **events})
                print(rows[-1], flush=True)
                next_sample += args.sample
            if now - last["kill"] >= 3:
                last["kill"] = now
                snap = status(oxfile)
                pids = [w["pid"] for p in snap.get("processes", []) if p["name"] in ("web", "chatty")
                        for w in p["workers"] if w["pid"] and w["state"] == "running" and not w["role"]]
                if pids:
                    os.kill(random.choice(pids), signal.SIGKILL)
                    events["kills"] += 1
            if now - last["scale"] >= 40:
                last["scale"] = now
                oxtui(oxfile, "scale", "web", str(random.randint(2, 6)))
                events["scales"] += 1
            if now - last["reload"] >= 60:
                last["reload"] = now
                r = oxtui(oxfile, "reload", "web", timeout=300)
                events["reloads"] += 1
                events["reload_failed"] += r.returncode != 0
            if now - last["flood"] >= 45:
                last["flood"] = now
                oxtui(oxfile, "restart", "flood")
                events["floods"] += 1
            if tmux and session is None and now - last["attach"] >= 120:
                last["attach"] = attached_at = now
                session = f"oxtui-soak-{os.getpid()}"
                subprocess.run([tmux, "new", "-d", "-s", session, "-x", "120", "-y", "36",
                                f"OXTUI_RUNTIME_DIR={folder} PYTHONPATH={os.environ.get('PYTHONPATH', '')} "
                                f"{PY} -m oxtui {oxfile}"], check=True)
                events["attaches"] += 1
            if session is not None and now - attached_at >= 20:
                subprocess.run([tmux, "kill-session", "-t", session])
                session = None
            time.sleep(0.5)
        if session is not None:
            subprocess.run([tmux, "kill-session", "-t", session])
    finally:
        stop.set()
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()
    with open(out / "soak.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, out / "soak.png", args.minutes)
    print(f"wrote {out}/soak.csv and soak.png; engine folder {folder}")
    return 0


def plot(rows: list[dict], path: Path, minutes: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = [r["minute"] for r in rows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    a.plot(x, [r["rss_mb"] for r in rows], label="engine RSS")
    a.plot(x, [r["helper_rss_mb"] for r in rows], label="spawner helper RSS")
    a.set_ylabel("MiB")
    a.set_ylim(bottom=0)
    a.legend()
    b.plot(x, [r["fds"] for r in rows], label="engine open fds", color="tab:green")
    b.set_ylabel("fds")
    b.set_ylim(bottom=0)
    b.set_xlabel("minutes of churn")
    b.legend()
    last = rows[-1]
    fig.suptitle(f"oxtui soak, {minutes:g} min: {last['kills']} kills, {last['reloads']} reloads, "
                 f"{last['scales']} scalings, {last['floods']} floods, {last['attaches']} TUI attaches", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
