"""Engine benchmarks, each next to a raw subprocess.Popen baseline measured in the same run.

    .venv/bin/python bench/engine_bench.py [--idle 30] [--out bench/results/engine.md]

1. start 64 instances of `sleep` (until all 64 have exec'd `sleep`)      vs 64 Popen('sleep')
2. the engine's CPU and RSS over --idle seconds with 64 workers           (goal <= 1 % of a core, <= 60 MB)
3. kill -9 of a worker -> its replacement has exec'd, median of 10        vs Popen -> exec'd (goal <= 5x)
4. log capture: a child writing 100-byte lines flat out for 5 s under
   `oxtui run` -> lines/s in the log file, lines lost                    vs the same child writing to a file
The engine is the real `oxtui run` process (stdout to /dev/null), as in production.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import WRITER

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def exec_done(pid: int, name: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].endswith(name.encode())
    except OSError:
        return False


def status(oxfile: Path) -> dict:
    out = subprocess.run([PY, "-m", "oxtui", "status", "--json", "-c", str(oxfile)], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


class Engine:
    def __init__(self, folder: Path, body: str, stdout: str = "null"):
        """`stdout`: where `oxtui run` prints every line: null (/dev/null), file (a file in `folder`) or
        pipe (read and thrown away by `cat`), the last two as under a service manager."""
        self.folder = folder
        self.oxfile = folder / "oxfile.toml"
        self.oxfile.write_text(body + '\n[logs]\ndir = "logs"\nmax_size = "2G"\n')
        env = {**os.environ, "OXTUI_RUNTIME_DIR": str(folder)}
        os.environ["OXTUI_RUNTIME_DIR"] = str(folder)
        self.t0 = time.perf_counter()
        out = {"null": subprocess.DEVNULL, "file": open(folder / "stdout.txt", "wb"), "pipe": subprocess.PIPE}[stdout]
        self.proc = subprocess.Popen([PY, "-m", "oxtui", "run", str(self.oxfile)], stdout=out,
                                     stderr=subprocess.DEVNULL, env=env)
        if stdout == "pipe":
            self.cat = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)
            self.proc.stdout.close()
        self.ps = psutil.Process(self.proc.pid)
        # However the benchmark ends (an exception included), the engine and its workers stop.
        atexit.register(self.stop)

    def worker_pids(self) -> list[int]:
        # Workers are children of the engine's spawner helper (its only child). One cheap read of
        # the helper's children file, so the polling loop costs what the baseline's does.
        if not getattr(self, "helper", None):
            kids = _children(self.proc.pid)
            if not kids:
                return []
            self.helper = kids[0]
        return [k for k in _children(self.helper) if exec_done(k, "sleep")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        if getattr(self, "cat", None) is not None:
            self.cat.wait(10)        # ends at the pipe's EOF, once the engine has gone


def bench_start(tmp: Path, n: int = 64) -> tuple[float, float]:
    # baseline: Popen n sleeps, wait until each has exec'd
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["sleep", "1000"]) for _ in range(n)]
    while not all(exec_done(p.pid, "sleep") for p in procs):
        time.sleep(0.0005)
    raw = time.perf_counter() - t0
    for p in procs:
        p.kill()
        p.wait()
    # oxtui: from `oxtui run` start (interpreter start included) until all n have exec'd
    (tmp / "start").mkdir()
    eng = Engine(tmp / "start", f'[processes.s]\ncommand = "sleep 1000"\ninstances = {n}\n')
    while True:
        if len(eng.worker_pids()) == n:
            break
        time.sleep(0.0005)
    ox = time.perf_counter() - eng.t0
    eng.stop()
    return raw, ox


def bench_idle(tmp: Path, seconds: float, n: int = 64) -> tuple[float, int, float]:
    (tmp / "idle").mkdir()
    eng = Engine(tmp / "idle", f'[processes.s]\ncommand = "sleep 1000"\ninstances = {n}\n')
    while len(eng.worker_pids()) < n:
        time.sleep(0.05)
    time.sleep(3)                                   # let it settle: workers ready, first metrics
    c0 = sum(eng.ps.cpu_times()[:2])
    t0 = time.perf_counter()
    rss_max = 0
    while time.perf_counter() - t0 < seconds:
        rss_max = max(rss_max, eng.ps.memory_info().rss)
        time.sleep(0.5)
    cpu = (sum(eng.ps.cpu_times()[:2]) - c0) / (time.perf_counter() - t0) * 100
    states = {w["state"] for w in status(eng.oxfile)["processes"][0]["workers"]}
    eng.stop()
    return cpu, rss_max, seconds if states == {"running"} else -1


def bench_kill(tmp: Path, rounds: int = 10) -> tuple[float, float]:
    raw = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        p = subprocess.Popen(["sleep", "1000"])
        while not exec_done(p.pid, "sleep"):
            time.sleep(0.0002)
        raw.append(time.perf_counter() - t0)
        p.kill()
        p.wait()
    (tmp / "kill").mkdir()
    eng = Engine(tmp / "kill", '[processes.s]\ncommand = "sleep 1000"\ninstances = 1\nmax_restarts = 1000\nbackoff = 0\n')
    while len(eng.worker_pids()) < 1:
        time.sleep(0.01)
    ox = []
    for _ in range(rounds):
        time.sleep(0.3)
        (old,) = eng.worker_pids()
        t0 = time.perf_counter()
        os.kill(old, signal.SIGKILL)
        while True:
            if [k for k in eng.worker_pids() if k != old]:
                break
            time.sleep(0.0002)
        ox.append(time.perf_counter() - t0)
    eng.stop()
    return statistics.median(raw), statistics.median(ox)


def _direct_run(script: Path, out: Path, seconds: float) -> int:
    count = out.with_suffix(".count")
    count.unlink(missing_ok=True)
    with open(out, "wb") as f:
        p = subprocess.Popen([PY, str(script), str(seconds), str(count)], stdout=f)
        while not (count.exists() and count.read_text()):
            time.sleep(0.05)
        p.kill()
        p.wait()
    return int(count.read_text())


def _oxtui_run(folder: Path, script: Path, seconds: float) -> dict:
    folder.mkdir()
    count = folder / "written"
    eng = Engine(folder, f'[processes.w]\ncommand = "{PY} {script} {seconds} {count}"\n')
    log = folder / "logs" / "w.log"
    peak, wrote = 0, None
    deadline = time.time() + seconds + 60
    while time.time() < deadline:
        peak = max(peak, eng.ps.memory_info().rss)
        if count.exists() and count.read_text():
            wrote = int(count.read_text())
            break
        time.sleep(0.2)
    time.sleep(1)
    eng.stop()
    got = int(subprocess.run(["grep", "-c", "-a", " | ", str(log)], capture_output=True, text=True).stdout)
    return {"written": wrote or 0, "in_file": got, "peak_rss": peak}


def bench_logs(tmp: Path, seconds: float = 5.0, rounds: int = 3) -> dict:
    """Alternates the baseline and oxtui runs (the machine is shared and noisy) and takes medians."""
    script = tmp / "writer.py"
    script.write_text(WRITER)
    direct, runs = [], []
    for i in range(rounds):
        direct.append(_direct_run(script, tmp / "direct.out", seconds) / seconds)
        runs.append(_oxtui_run(tmp / f"logs{i}", script, seconds))
    return {"direct_lps": statistics.median(direct),
            "oxtui_lps": statistics.median(r["written"] for r in runs) / seconds,
            "written": sum(r["written"] for r in runs), "lost": sum(r["written"] - r["in_file"] for r in runs),
            "peak_rss": max(r["peak_rss"] for r in runs), "ratios": [r["written"] / seconds / d for r, d in zip(runs, direct)]}


# The fast writer: 100-byte numbered lines, 1000 per write(), N of them, then its elapsed time.
FAST_WRITER = """
import os, sys, time
n, out = int(sys.argv[1]), sys.argv[2]
block = 1000
t0 = time.perf_counter()
for start in range(0, n, block):
    os.write(1, b"".join(b"%09d " % i + b"x" * 89 + b"\\n" for i in range(start, start + block)))
with open(out, "w") as f:
    f.write(str(time.perf_counter() - t0))
time.sleep(3600)
"""


def bench_logs_fast(tmp: Path, n: int = 2_000_000, rounds: int = 3, stdout: str = "null") -> dict:
    """2 M lines at once: to a file, and through `oxtui run` until every line is in its log file
    (rounds alternated, medians)."""
    script = tmp / "fast_writer.py"
    script.write_text(FAST_WRITER)
    direct, teed, ox, peaks, lost = [], [], [], [], 0
    for i in range(rounds):
        done = tmp / f"direct{i}.time"
        with open(tmp / "direct.out", "wb") as f:
            p = subprocess.Popen([PY, str(script), str(n), str(done)], stdout=f)
            while not (done.exists() and done.read_text()):
                time.sleep(0.01)
            p.kill()
            p.wait()
        direct.append(n / float(done.read_text()))
        if stdout == "file":
            # The least any capture that also prints to a file must do: `tee` (C) copying the pipe to
            # a log file and to its stdout, a file; no prefix, no lines.
            done = tmp / f"tee{i}.time"
            with open(tmp / "tee.out", "wb") as f:
                tee = subprocess.Popen(["tee", str(tmp / "tee.log")], stdin=subprocess.PIPE, stdout=f)
                p = subprocess.Popen([PY, str(script), str(n), str(done)], stdout=tee.stdin)
                tee.stdin.close()
                while not (done.exists() and done.read_text()):
                    time.sleep(0.01)
                p.kill()
                p.wait()
                tee.wait()
            teed.append(n / float(done.read_text()))
        folder = tmp / f"fast{i}"
        folder.mkdir()
        eng = Engine(folder, f'[processes.w]\ncommand = "{PY} {script} {n} {folder / "done"}"\n', stdout)
        log = folder / "logs" / "w.log"
        size_wanted = n * 100          # at least: every line plus its prefix
        peak = 0
        while True:
            peak = max(peak, eng.ps.memory_info().rss)
            if (folder / "done").exists() and log.exists() and log.stat().st_size >= size_wanted:
                last = subprocess.run(["tail", "-c", "300", str(log)], capture_output=True).stdout
                if b"%09d " % (n - 1) in last:
                    break
            time.sleep(0.005)
        # The writer's own time: under oxtui it blocks whenever the pipe is full, so it measures how fast
        # the engine drains it (the pipe holds at most 1 MB, 0.5 % of the lines, at the end).
        elapsed = float((folder / "done").read_text())
        eng.stop()
        got = int(subprocess.run(["grep", "-c", "-a", " | ", str(log)], capture_output=True, text=True).stdout)
        lost += n - got
        ox.append(n / elapsed)
        peaks.append(peak)
    return {"direct_lps": statistics.median(direct), "oxtui_lps": statistics.median(ox), "lost": lost,
            "peak_rss": max(peaks), "n": n, "tee_lps": statistics.median(teed) if teed else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")], default=[64],
                    help="instance counts for the start and idle rows, e.g. 64,256,1000")
    ap.add_argument("--only-logs", action="store_true", help="just the fast-writer log capture")
    ap.add_argument("--stdout", choices=("null", "file", "pipe"), default="null",
                    help="with --only-logs: where `oxtui run` prints the lines (file/pipe: as under systemd)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "engine.md"))
    args = ap.parse_args()
    rows = []
    if args.only_logs:
        with tempfile.TemporaryDirectory() as d:
            r = bench_logs_fast(Path(d), stdout=args.stdout)
        print(f"fast writer, {r['n']} lines: file {r['direct_lps'] / 1e6:.2f} M lines/s, oxtui run > {args.stdout} "
              f"{r['oxtui_lps'] / 1e6:.2f} M lines/s (ratio {r['oxtui_lps'] / r['direct_lps']:.2f}), "
              f"{r['lost']} lost, peak engine RSS {r['peak_rss'] / 2**20:.0f} MB")
        if r["tee_lps"]:
            print(f"  `tee log > file` (C, no prefix): {r['tee_lps'] / 1e6:.2f} M lines/s "
                  f"(ratio {r['tee_lps'] / r['direct_lps']:.2f}); oxtui run / tee {r['oxtui_lps'] / r['tee_lps']:.2f}")
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in args.workers:
            (tmp / str(n)).mkdir()
            raw, ox = bench_start(tmp / str(n), n)
            rows.append((f"start {n} x `sleep` (until all exec'd)", f"{ox * 1000:.0f} ms (incl. engine start)",
                         f"{raw * 1000:.0f} ms", f"{ox / raw:.1f}x"))
            print(rows[-1], flush=True)
            cpu, rss, ok = bench_idle(tmp / str(n), args.idle, n)
            rows.append((f"engine idle {args.idle:.0f} s, {n} workers, nobody watching",
                         f"{cpu:.2f} % of a core, {rss / 2**20:.1f} MB RSS max", "-",
                         "all running" if ok > 0 else "NOT all running"))
            print(rows[-1], flush=True)
        raw_k, ox_k = bench_kill(tmp)
        rows.append(("kill -9 -> new process exec'd (median of 10)", f"{ox_k * 1000:.2f} ms", f"{raw_k * 1000:.2f} ms (Popen -> exec'd)", f"{ox_k / raw_k:.1f}x"))
        print(rows[-1], flush=True)
        lg = bench_logs(tmp)
        rows.append(("log capture, 100-byte lines for 5 s (median of 3, alternated)", f"{lg['oxtui_lps'] / 1e3:.0f}k lines/s, {lg['lost']} lost of {lg['written']}, peak RSS {lg['peak_rss'] / 2**20:.0f} MB",
                     f"{lg['direct_lps'] / 1e3:.0f}k lines/s to a file", f"{lg['oxtui_lps'] / lg['direct_lps']:.2f}"))
        print(rows[-1], flush=True)
    md = ["| benchmark | oxtui | raw baseline | ratio |", "|---|---|---|---|"]
    md += [f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows]
    text = f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, Python {sys.version.split()[0]}\n\n" + "\n".join(md) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
