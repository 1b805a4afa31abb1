"""oxtui, PM2 and supervisord side by side: the same workloads, in one run, on one machine.

    .venv/bin/python bench/compare.py [--repeats 3] [--idle 30] [--quick]
    .venv/bin/python bench/compare.py --only-idle --idle 120      # workload 1 alone, long idle windows

Installs what is missing into a temporary folder: PM2 from npm, supervisor from PyPI (in a venv of
its own), wrk from Debian, matplotlib into this interpreter (for the chart). Each workload runs on
each manager in turn, the turns alternated, `--repeats` times; the table gives median [min-max].

1. start 64 instances of `sleep`: from the start command until all 64 have exec'd `sleep`;
   then the manager's CPU, RSS and PSS over `--idle` seconds with the 64 running.
2. kill -9 of a worker -> its replacement has exec'd `sleep`: median over 10 workers, each killed
   once (a first crash, restarted at once by every manager's defaults).
3. log capture: a child writing 100-byte lines flat out for 5 s; lines/s it managed (the pipe
   pushes back when the manager reads slowly) as a ratio of the same child writing to a file,
   lines missing from the manager's log file, the manager's peak RSS.
4. throughput of sample_apps/server.js (a node:http app): one process alone, then 2 instances on
   one port: oxtui (fd 3), PM2 cluster mode -i 2, supervisord fcgi-program numprocs=2 (its way of
   sharing a socket, as fd 0). `wrk -t2 -c100 -d10s`.
5. failed requests during 5 reloads of those 2 instances under `wrk -c100`: `oxtui reload`,
   `pm2 reload` (wait_ready), and for supervisord, which has no rolling reload,
   `supervisorctl restart` of one process after the other.

Manager CPU and RSS count every process of the manager: oxtui's engine and its spawner helper,
PM2's daemon, supervisord. All load goes to 127.0.0.1 and every run is bounded in time.
Writes bench/compare.md, bench/compare.png and bench/results/compare.json.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reload_bench import ensure_pm2, ensure_wrk, free_port, parse_wrk, wait_http

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
APP = ROOT / "sample_apps" / "server.js"
WRITER = """
import os, sys, time
out = os.fdopen(1, "wb", buffering=1 << 16)
line = b"x" * 90
n = 0
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(1000):
        out.write(b"%09d " % n + line + b"\\n")   # 100 bytes with the newline
        n += 1
out.flush()
with open(sys.argv[2], "w") as f:
    f.write(str(n))
time.sleep(3600)
"""
MARK = b"x" * 90


# ---- processes -----------------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def exec_is(pid: int, name: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].endswith(name.encode())
    except OSError:
        return False


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def descendants(pid: int, depth: int = 3) -> list[int]:
    found, level = [], [pid]
    for _ in range(depth):
        level = [c for p in level for c in children(p)]
        found += level
    return found


def usage(pids: list[int]) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) summed over the live pids."""
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            p = psutil.Process(pid)
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss


def pss(pids: list[int]) -> int:
    """PSS bytes summed over the live pids: a page shared by k processes counts 1/k in each, so a
    manager of several processes (oxtui's engine, helper and spare) is not charged twice for the
    pages they share, as RSS does."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration):
            pass
    return total


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True, timeout: float = 120) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    return r.stdout


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.0005) -> Any:
    deadline = time.monotonic() + timeout
    while not (v := pred()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return v


# ---- the managers --------------------------------------------------------------------------------
# Each takes a list of programs (dicts: name, cmd, args, instances, port, env, drain) and starts them
# in a folder of its own; `root()` is the process whose descendants the workers are.

class Manager:
    name = ""

    def __init__(self, tmp: Path):
        self.tmp = tmp

    def start(self, folder: Path, programs: list[dict]) -> None: ...
    def stop(self) -> None: ...
    def root(self) -> int: ...
    def manager_pids(self) -> list[int]: ...
    def log_file(self, name: str) -> Path: ...
    def reload(self, name: str, instances: int) -> None: ...


class Oxtui(Manager):
    name = "oxtui"

    def start(self, folder: Path, programs: list[dict]) -> None:
        self.folder = folder
        self.env = {**os.environ, "OXTUI_RUNTIME_DIR": str(folder), "NO_COLOR": "1"}
        lines = []
        for p in programs:
            lines += [f"[processes.{p['name']}]", f"command = {json.dumps(' '.join([p['cmd'], *p['args']]))}",
                      f"instances = {p['instances']}"]
            if p.get("port"):
                lines.append(f'listen = "127.0.0.1:{p["port"]}"')
            if p.get("env"):
                lines.append("env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in p["env"].items()) + " }")
            if p.get("ready_log"):
                lines += [f"[processes.{p['name']}.ready]", f"log = {json.dumps(p['ready_log'])}"]
        lines += ["[logs]", 'dir = "logs"', 'max_size = "2G"']
        self.oxfile = folder / "oxfile.toml"
        self.oxfile.write_text("\n".join(lines) + "\n")
        # `oxtui up` returns once all are up; the timer runs from its start, interpreter start included.
        self.up = subprocess.Popen([PY, "-m", "oxtui", "up", str(self.oxfile)], env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._engine: int | None = None

    def root(self) -> int:
        if self._engine is None:
            # OXTUI_RUNTIME_DIR is the runtime folder itself; a lock file reads "PID\nOXFILE"
            lock = wait_for(lambda: list(self.folder.glob("*.lock")), 30, "the engine's lock", 0.0005)
            self._engine = wait_for(lambda: int(lock[0].read_text().split("\n", 1)[0] or 0), 30, "the engine's pid",
                                    0.0005)
        return self._engine

    def manager_pids(self) -> list[int]:
        # the engine, its spawner helper, and the helper's spare (a forked child waiting for a restart)
        helpers = children(self.root())
        spares = [c for h in helpers for c in children(h) if comm(c) == "oxtui-spare"]
        return [self.root(), *helpers, *spares]

    def log_file(self, name: str) -> Path:
        return self.folder / "logs" / f"{name}.log"

    def reload(self, name: str, instances: int) -> None:
        run([PY, "-m", "oxtui", "reload", name, "-c", str(self.oxfile)], self.env)

    def stop(self) -> None:
        self.up.wait(120)
        run([PY, "-m", "oxtui", "down", "-c", str(self.oxfile)], self.env, check=False)


class PM2(Manager):
    name = "PM2"

    def __init__(self, tmp: Path, pm2: Path):
        super().__init__(tmp)
        self.pm2 = str(pm2)

    def start(self, folder: Path, programs: list[dict]) -> None:
        self.home = folder / "pm2home"
        self.env = {**os.environ, "PM2_HOME": str(self.home)}
        apps = []
        for p in programs:
            if p["cmd"] == "node":     # PM2 runs a JS file itself (and only then can cluster it)
                app: dict[str, Any] = {"script": p["args"][0], "args": p["args"][1:]}
            else:
                app = {"script": shutil.which(p["cmd"]) or p["cmd"], "args": p["args"], "interpreter": "none"}
            app.update(name=p["name"], instances=p["instances"], env={**p.get("env", {})}, merge_logs=True)
            if p.get("port"):          # cluster mode: PM2's own way to share a port
                app.update(exec_mode="cluster", wait_ready=True, listen_timeout=15000, kill_timeout=10000)
                app["env"].update(PORT=str(p["port"]), HOST="127.0.0.1")
            else:
                app.update(exec_mode="fork")
            apps.append(app)
        eco = folder / "ecosystem.config.js"
        eco.write_text("module.exports = " + json.dumps({"apps": apps}) + ";\n")
        self.starter = subprocess.Popen([self.pm2, "start", str(eco)], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._root: int | None = None

    def root(self) -> int:
        if self._root is None:
            pidfile = self.home / "pm2.pid"
            self._root = wait_for(lambda: pidfile.exists() and int(pidfile.read_text() or 0), 30, "PM2's daemon", 0.0005)
        return self._root

    def manager_pids(self) -> list[int]:
        return [self.root()]

    def log_file(self, name: str) -> Path:
        return self.home / "logs" / f"{name}-out.log"

    def reload(self, name: str, instances: int) -> None:
        run([self.pm2, "reload", name], self.env)

    def stop(self) -> None:
        self.starter.wait(120)
        run([self.pm2, "kill"], self.env, check=False)


class Supervisord(Manager):
    name = "supervisord"

    def __init__(self, tmp: Path, bindir: Path):
        super().__init__(tmp)
        self.bindir = bindir

    def start(self, folder: Path, programs: list[dict]) -> None:
        self.folder = folder
        self.conf = folder / "supervisord.conf"
        sock = folder / "supervisor.sock"
        lines = ["[unix_http_server]", f"file = {sock}", "[supervisord]", f"logfile = {folder / 'supervisord.log'}",
                 f"pidfile = {folder / 'supervisord.pid'}", f"childlogdir = {folder}", "loglevel = warn",
                 "[rpcinterface:supervisor]",
                 "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                 "[supervisorctl]", f"serverurl = unix://{sock}"]
        for p in programs:
            env = dict(p.get("env", {}))
            if p.get("port"):          # fcgi-program: supervisord's way to share one socket (as fd 0)
                env["SERVER_FD"] = "0"
                lines += [f"[fcgi-program:{p['name']}]", f"socket = tcp://127.0.0.1:{p['port']}",
                          "stopsignal = TERM", "stopwaitsecs = 10"]
            else:
                lines += [f"[program:{p['name']}]"]
            lines += [f"command = {' '.join([shutil.which(p['cmd']) or p['cmd'], *p['args']])}",
                      f"numprocs = {p['instances']}", "process_name = %(program_name)s_%(process_num)02d",
                      "autorestart = true", "startsecs = 1",
                      f"stdout_logfile = {folder / (p['name'] + '.log')}", "stdout_logfile_maxbytes = 0",
                      "redirect_stderr = true"]
            if env:
                lines.append("environment = " + ",".join(f'{k}="{v}"' for k, v in env.items()))
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([str(self.bindir / "supervisord"), "-n", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def root(self) -> int:
        return self.proc.pid

    def manager_pids(self) -> list[int]:
        return [self.proc.pid]

    def log_file(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def reload(self, name: str, instances: int) -> None:
        for i in range(instances):       # no rolling reload: one process after the other
            run([str(self.bindir / "supervisorctl"), "-c", str(self.conf), "restart", f"{name}:{name}_{i:02d}"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- the workloads -------------------------------------------------------------------------------

class Session:
    """One manager running some programs in a fresh folder; stopped whatever happens."""

    def __init__(self, mgr: Manager, tmp: Path, tag: str, programs: list[dict]):
        self.mgr = mgr
        self.folder = tmp / f"{mgr.name}-{tag}-{time.monotonic_ns()}"
        self.folder.mkdir()
        self.programs = programs

    def __enter__(self) -> Manager:
        self.mgr.start(self.folder, self.programs)
        atexit.register(self.mgr.stop)
        return self.mgr

    def __exit__(self, *exc: object) -> None:
        self.mgr.stop()
        atexit.unregister(self.mgr.stop)


def sleepers(mgr: Manager) -> list[int]:
    return [p for p in descendants(mgr.root()) if exec_is(p, "sleep")]


def start_and_idle(mgr: Manager, tmp: Path, idle: float, n: int = 64) -> dict:
    t0 = time.perf_counter()
    with Session(mgr, tmp, "start", [{"name": "s", "cmd": "sleep", "args": ["1000"], "instances": n}]):
        wait_for(lambda: len(sleepers(mgr)) >= n, 120, f"{n} sleeps under {mgr.name}")
        start = time.perf_counter() - t0
        time.sleep(3)                                   # settle: first metrics, readiness
        pids = mgr.manager_pids()
        c0, _ = usage(pids)
        t1, peak, peak_pss = time.perf_counter(), 0, 0
        while time.perf_counter() - t1 < idle:
            peak = max(peak, usage(pids)[1])
            peak_pss = max(peak_pss, pss(pids))
            time.sleep(0.5)
        c1, _ = usage(pids)
        cpu = (c1 - c0) / (time.perf_counter() - t1) * 100
        alive = len(sleepers(mgr))
    return {"start_ms": start * 1000, "idle_cpu": cpu, "idle_rss_mb": peak / 2**20, "idle_pss_mb": peak_pss / 2**20,
            "alive": alive}


def kill_latency(mgr: Manager, tmp: Path, kills: int = 10) -> dict:
    """Each of `kills` workers killed once: a first crash, which every manager restarts at once by
    default (a worker that keeps dying is backed off, by oxtui and the others alike)."""
    with Session(mgr, tmp, "kill", [{"name": "k", "cmd": "sleep", "args": ["1000"], "instances": kills}]):
        victims = wait_for(lambda: s if len(s := sleepers(mgr)) >= kills else None, 60,
                           f"{kills} sleeps under {mgr.name}", 0.01)
        time.sleep(2)                # past every manager's "started successfully" mark
        times = []
        for old in victims:
            before = set(sleepers(mgr))
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            wait_for(lambda: set(sleepers(mgr)) - before, 30, f"{mgr.name} to replace the sleep", 0.0002)
            times.append(time.perf_counter() - t0)
            time.sleep(0.3)
    return {"kill_ms": statistics.median(times) * 1000}


def direct_writer(tmp: Path, script: Path, seconds: float) -> float:
    count = tmp / f"direct-count-{time.monotonic_ns()}"
    with open(tmp / "direct.out", "wb") as f:
        p = subprocess.Popen([PY, str(script), str(seconds), str(count)], stdout=f)
        wait_for(lambda: count.exists() and count.read_text(), seconds + 30, "the writer", 0.05)
        p.kill()
        p.wait()
    return int(count.read_text()) / seconds


def log_capture(mgr: Manager, tmp: Path, script: Path, seconds: float, direct_lps: float) -> dict:
    count = tmp / f"count-{mgr.name}-{time.monotonic_ns()}"
    with Session(mgr, tmp, "logs", [{"name": "w", "cmd": PY, "args": [str(script), str(seconds), str(count)],
                                     "instances": 1}]):
        peak = 0
        pids: list[int] = []
        deadline = time.monotonic() + seconds + 60
        while not (count.exists() and count.read_text()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the writer under {mgr.name} never finished")
            # asked each time: taken once, oxtui's list could be the engine alone (its helper not started yet)
            pids = mgr.manager_pids()
            peak = max(peak, usage(pids)[1])
            time.sleep(0.1)
        written = int(count.read_text())
        log = mgr.log_file("w")
        last, still = -1, 0
        while still < 10 and time.monotonic() < deadline:      # until the file stops growing for 1 s
            got = int(run(["grep", "-c", "-a", MARK.decode(), str(log)], check=False).strip() or 0)
            still = still + 1 if got == last else 0
            last = got
            if got >= written:
                break
            peak = max(peak, usage(mgr.manager_pids())[1])
            time.sleep(0.1)
    lps = written / seconds
    return {"log_ratio": lps / direct_lps, "log_lps": lps, "log_lost": written - last, "log_written": written,
            "log_peak_rss_mb": peak / 2**20}


def wrk(wrk_bin: str, port: int, seconds: int) -> dict:
    return parse_wrk(run([wrk_bin, "-t2", "-c100", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                         timeout=seconds + 30))


def node_app(port: int) -> dict:
    return {"name": "api", "cmd": "node", "args": [str(APP)], "instances": 2, "port": port, "ready_log": "listening on"}


def throughput(mgr: Manager, tmp: Path, wrk_bin: str) -> dict:
    port = free_port()
    with Session(mgr, tmp, "rps", [node_app(port)]):
        wait_http(port)
        time.sleep(1.5)
        return {"rps": wrk(wrk_bin, port, 10)["rps"]}


def single_process(tmp: Path, wrk_bin: str) -> dict:
    port = free_port()
    p = subprocess.Popen(["node", str(APP)], env={**os.environ, "PORT": str(port), "HOST": "127.0.0.1"},
                         stdout=subprocess.DEVNULL)
    try:
        wait_http(port)
        time.sleep(1.5)
        return {"rps": wrk(wrk_bin, port, 10)["rps"]}
    finally:
        p.terminate()
        p.wait(15)


def reloads(mgr: Manager, tmp: Path, wrk_bin: str, n: int = 5, window: int = 30) -> dict:
    port = free_port()
    with Session(mgr, tmp, "reload", [node_app(port)]):
        wait_http(port)
        time.sleep(1.5)
        load = subprocess.Popen([wrk_bin, "-t2", "-c100", f"-d{window}s", f"http://127.0.0.1:{port}/"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        took = 0.0
        for _ in range(n):
            t0 = time.monotonic()
            mgr.reload("api", 2)
            took += time.monotonic() - t0     # the reload itself: the pause between reloads is not counted
            time.sleep(0.5)
        out, _ = load.communicate(timeout=window + 30)
    res = parse_wrk(out)
    if took + 0.5 * n + 2 > window:
        raise RuntimeError(f"{mgr.name}: the reloads took {took:.0f} s, longer than the {window} s load window")
    return {"reload_failed": res["failed"], "reload_requests": res["requests"], "reload_s": took / n}


# ---- installs ------------------------------------------------------------------------------------

def ensure_supervisor(tmp: Path) -> Path:
    found = shutil.which("supervisord")
    if found and shutil.which("supervisorctl"):
        return Path(found).parent
    venv = tmp / "supervisor-venv"
    subprocess.run([PY, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "supervisor"], check=True)
    return venv / "bin"


def ensure_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([PY, "-m", "pip", "install", "-q", "matplotlib"], check=True)


# ---- report --------------------------------------------------------------------------------------

ROWS = [  # key, label, unit, format, lower is better
    ("start_ms", "start 64 x `sleep` (until all exec'd)", "ms", "{:.0f}", True),
    ("idle_cpu", "manager CPU, 64 idle workers", "% of a core", "{:.2f}", True),
    ("idle_rss_mb", "manager RSS, 64 idle workers", "MB", "{:.1f}", True),
    ("idle_pss_mb", "manager PSS, 64 idle workers (shared pages split)", "MB", "{:.1f}", True),
    ("kill_ms", "kill -9 -> new process exec'd (median of 10 workers)", "ms", "{:.2f}", True),
    ("log_ratio", "log capture, ratio to writing a file", "ratio", "{:.2f}", False),
    ("log_lost", "log lines lost (of ~millions)", "lines", "{:.0f}", True),
    ("log_peak_rss_mb", "manager peak RSS during log capture", "MB", "{:.1f}", True),
    ("rps", "2 instances on one port, node:http", "req/s", "{:.0f}", False),
    ("reload_failed", "failed requests, 5 reloads under load", "requests", "{:.0f}", True),
    ("reload_s", "time per reload of 2 instances", "s", "{:.2f}", True),
]


def summary(values: list[float], fmt: str) -> str:
    if not values:
        return "n/a"
    med = fmt.format(statistics.median(values))
    return med if len(values) == 1 or min(values) == max(values) else \
        f"{med} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def report(results: dict[str, dict[str, list[float]]], single_rps: list[float], meta: dict, out_dir: Path) -> str:
    names = list(results)
    head = (f"Measured {meta['date']} on {meta['machine']}, {meta.get('load', 'load not recorded')}; "
            f"{meta['versions']}. Median [min–max] of "
            f"{meta['repeats']} runs, each workload alternating between the managers.\n\n")
    md = ["| workload | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label, unit, fmt, _ in ROWS:
        cells = [summary(results[n].get(key, []), fmt) for n in names]
        md.append(f"| {label} ({unit}) | " + " | ".join(cells) + " |")
    md.append(f"| one node:http process alone, for scale (req/s) | {summary(single_rps, '{:.0f}')} | | |")
    notes = ("\nsupervisord has no rolling reload: its row restarts one process after the other with "
             "`supervisorctl restart`. Its two instances share one socket through `[fcgi-program]` (as fd 0). "
             "PM2 shares the port through its cluster module (the master process accepts and hands over).\n")
    text = head + "\n".join(md) + "\n" + notes
    (out_dir / "compare.md").write_text(text)
    chart(results, out_dir / "compare.png", meta)
    return text


def chart(results: dict[str, dict[str, list[float]]], path: Path, meta: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [r for r in ROWS if r[0] not in ("log_lost", "log_peak_rss_mb")]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    colours = {"oxtui": "#2a9d8f", "PM2": "#e76f51", "supervisord": "#8d99ae"}
    for ax, (key, label, unit, fmt, lower) in zip(axes.flat, keys):
        names = [n for n in results if results[n].get(key)]
        meds = [statistics.median(results[n][key]) for n in names]
        lo = [m - min(results[n][key]) for n, m in zip(names, meds)]
        hi = [max(results[n][key]) - m for n, m in zip(names, meds)]
        bars = ax.bar(names, meds, yerr=[lo, hi], capsize=4, color=[colours.get(n, "#999") for n in names])
        for b, m, n in zip(bars, meds, names):     # the label sits above the error bar
            ax.annotate(fmt.format(m), (b.get_x() + b.get_width() / 2, max(results[n][key])), ha="center",
                        va="bottom", fontsize=9, xytext=(0, 3), textcoords="offset points")
        log = key == "kill_ms" and meds and max(meds) > 20 * max(min(meds), 1e-9)
        ax.set_title(f"{label}\n({unit}, {'lower' if lower else 'higher'} is better"
                     + (", log scale)" if log else ")"), fontsize=9)
        ax.tick_params(labelsize=9)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(top=max(max(results[n][key]) for n in names) * 4)
        else:
            ax.set_ylim(bottom=0, top=max([max(results[n][key]) * 1.2 for n in names] + [1]))
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"oxtui vs PM2 vs supervisord · {meta['date']} · {meta['machine']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


# ---- main ----------------------------------------------------------------------------------------

def machine() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {psutil.virtual_memory().total / 2**30:.0f} GiB"


def writable_dir(path: Path) -> Path:
    """Create the output folder and prove it can be written, or stop with one line saying why."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".compare-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise SystemExit(f"compare.py: --out {path}: cannot write there ({e.strerror}); pick a writable folder")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--quick", action="store_true", help="1 repeat, 5 s idle: checks that everything runs")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    ap.add_argument("--redraw", metavar="JSON", help="only redraw the table and chart from a saved compare.json")
    ap.add_argument("--only-idle", action="store_true",
                    help="only workload 1, for a long --idle: a manager's idle CPU is a few 10 ms ticks in 30 s, "
                         "too few to tell two managers apart; prints its table, leaves compare.md alone")
    args = ap.parse_args()
    out_dir = writable_dir(Path(args.out))     # before 20 minutes of measuring, not after
    if args.redraw:
        saved = json.loads(Path(args.redraw).read_text())
        print(report(saved["results"], saved["single_rps"], saved["meta"], out_dir))
        return
    if args.quick:
        args.repeats, args.idle = 1, 5.0
    wrk_bin = ensure_wrk()
    ensure_matplotlib()
    with tempfile.TemporaryDirectory(prefix="oxtui-compare-") as d:
        tmp = Path(d)
        pm2 = Path(shutil.which("pm2") or ensure_pm2(tmp / "pm2"))
        sup = ensure_supervisor(tmp)
        pm2_env = {**os.environ, "PM2_HOME": str(tmp / "v")}
        pm2_version = run([str(pm2), "--version"], pm2_env).split()[-1]
        run([str(pm2), "kill"], pm2_env, check=False)        # --version starts a daemon
        versions = (f"Python {sys.version.split()[0]}, Node {run(['node', '--version']).strip()}, "
                    f"PM2 {pm2_version}, supervisor {run([str(sup / 'supervisord'), '--version']).strip()}")
        print(versions, flush=True)
        managers: list[Manager] = [Oxtui(tmp), PM2(tmp, pm2), Supervisord(tmp, sup)]
        results: dict[str, dict[str, list[float]]] = {m.name: {} for m in managers}
        single: list[float] = []
        script = tmp / "writer.py"
        script.write_text(WRITER)

        def record(m: Manager, res: dict) -> None:
            print(f"  {m.name}: " + ", ".join(f"{k} {v:.4g}" for k, v in res.items()), flush=True)
            for k, v in res.items():
                results[m.name].setdefault(k, []).append(v)

        load_before = os.getloadavg()
        for r in range(args.repeats):
            order = managers[r % len(managers):] + managers[:r % len(managers)]
            print(f"round {r + 1}/{args.repeats}", flush=True)
            for m in order:
                record(m, start_and_idle(m, tmp, args.idle))
            if args.only_idle:
                continue
            for m in order:
                record(m, kill_latency(m, tmp))
            for m in order:
                direct = direct_writer(tmp, script, 5.0)
                record(m, log_capture(m, tmp, script, 5.0, direct))
            single.append(single_process(tmp, wrk_bin)["rps"])
            for m in order:
                record(m, throughput(m, tmp, wrk_bin))
            for m in order:
                record(m, reloads(m, tmp, wrk_bin))
    # The machine's own load before the run (other tenants), and at its end (mostly the benchmark itself).
    load = (f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, "
            f"at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "versions": versions, "repeats": args.repeats,
            "load": load}
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    if args.only_idle:
        meta["idle_s"] = args.idle
        (ROOT / "bench" / "results" / "compare-idle.json").write_text(json.dumps({"meta": meta, "results": results},
                                                                               indent=1))
        names = list(results)
        print(f"Measured {meta['date']}, {load}; {args.idle:g} s idle windows, median [min–max] of {args.repeats}.\n")
        print("| workload | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
        for key, label, unit, fmt, _ in ROWS[:4]:
            print(f"| {label} ({unit}) | " + " | ".join(summary(results[n].get(key, []), fmt) for n in names) + " |")
        return
    (ROOT / "bench" / "results" / "compare.json").write_text(json.dumps({"meta": meta, "results": results,
                                                                          "single_rps": single}, indent=1))
    print(report(results, single, meta, out_dir))


if __name__ == "__main__":
    main()
