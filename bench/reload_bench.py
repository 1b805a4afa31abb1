"""Rolling reloads under load: oxtui vs PM2 cluster mode, same Node app, same machine, one run.

    .venv/bin/python bench/reload_bench.py [--instances 4] [--reloads 5] [--seconds 45]

Installs what is missing (wrk from Debian, PM2 from npm into a temporary prefix). For each manager:
4 instances of sample_apps/server.js on 127.0.0.1, `wrk -t2 -c100` for a fixed window, and within it
5 rolling reloads one after another (`oxtui reload api` / `pm2 reload api`). PM2 gets its best
settings: cluster mode, wait_ready (the app sends 'ready' once listening), kill_timeout long enough
for the app's drain. Reports requests/s over the window, failed requests (socket errors + non-2xx)
and how long the reloads took. Load goes only to 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "sample_apps" / "server.js"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        path = shutil.which("wrk")
    assert path, "wrk could not be installed (apt-get install wrk)"
    return path


def ensure_pm2(prefix: Path) -> Path:
    pm2 = prefix / "node_modules" / ".bin" / "pm2"
    if not pm2.exists():
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), "pm2"],
                       check=True, capture_output=True)
    return pm2


def wait_http(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port}")


def parse_wrk(out: str) -> dict:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {"rps": rps, "requests": total, "failed": errors}


def load_with_reloads(wrk: str, port: int, seconds: float, reloads: int, reload_cmd: list[str],
                      env: dict[str, str]) -> dict:
    load = subprocess.Popen([wrk, "-t2", "-c100", f"-d{int(seconds)}s", f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    took = []
    failed = []
    for _ in range(reloads):
        t0 = time.monotonic()
        r = subprocess.run(reload_cmd, capture_output=True, text=True, env=env, timeout=120)
        took.append(time.monotonic() - t0)
        if r.returncode != 0:
            failed.append(f"{' '.join(reload_cmd[-4:])}: exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")
        time.sleep(0.5)
    out, _ = load.communicate(timeout=seconds + 30)
    res = parse_wrk(out)
    res["reload_s"] = [round(t, 2) for t in took]
    res["reloads_done_in_window"] = sum(took) + 2 + 0.5 * reloads < seconds
    res["reload_errors"] = failed
    return res


MIN_READY = [0.5]


def run_oxtui(wrk: str, tmp: Path, n: int, seconds: float, reloads: int) -> dict:
    port = free_port()
    folder = tmp / "oxtui"
    folder.mkdir()
    oxfile = folder / "oxfile.toml"
    oxfile.write_text(f'''
[processes.api]
command = "node {APP}"
instances = {n}
listen = "127.0.0.1:{port}"
[processes.api.ready]
log = "listening on"
http = "/health"
timeout = 15
[processes.api.reload]
min_ready = {MIN_READY[0]}
[logs]
dir = "logs"
''')
    env = {**os.environ, "OXTUI_RUNTIME_DIR": str(folder)}
    engine = subprocess.Popen([PY, "-m", "oxtui", "run", str(oxfile)], stdout=subprocess.DEVNULL, env=env)
    try:
        wait_http(port)
        time.sleep(1.5)
        steady = parse_wrk(subprocess.run([wrk, "-t2", "-c100", "-d10s", f"http://127.0.0.1:{port}/"],
                                          capture_output=True, text=True).stdout)
        res = load_with_reloads(wrk, port, seconds, reloads,
                                [PY, "-m", "oxtui", "reload", "api", "-c", str(oxfile)], env)
        res["steady_rps"] = steady["rps"]
        return res
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(60)


def run_pm2(wrk: str, tmp: Path, n: int, seconds: float, reloads: int, pm2: Path) -> dict:
    port = free_port()
    home = tmp / "pm2home"
    eco = tmp / "ecosystem.config.js"
    eco.write_text("module.exports = " + json.dumps({"apps": [{
        "name": "api", "script": str(APP), "instances": n, "exec_mode": "cluster",
        "env": {"PORT": str(port), "HOST": "127.0.0.1"},
        "wait_ready": True, "listen_timeout": 15000, "kill_timeout": 10000,
    }]}) + ";\n")
    env = {**os.environ, "PM2_HOME": str(home)}
    subprocess.run([str(pm2), "start", str(eco)], check=True, capture_output=True, env=env)
    try:
        wait_http(port)
        time.sleep(1.5)
        steady = parse_wrk(subprocess.run([wrk, "-t2", "-c100", "-d10s", f"http://127.0.0.1:{port}/"],
                                          capture_output=True, text=True).stdout)
        res = load_with_reloads(wrk, port, seconds, reloads, [str(pm2), "reload", "api"], env)
        res["steady_rps"] = steady["rps"]
        return res
    finally:
        subprocess.run([str(pm2), "kill"], capture_output=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=4)
    ap.add_argument("--min-ready", type=float, default=0.5,
                    help="oxtui's [reload] min_ready: seconds a replacement must stay up (PM2 waits none)")
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=45)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reload.md"))
    args = ap.parse_args()
    MIN_READY[0] = args.min_ready
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pm2 = ensure_pm2(tmp / "pm2")
        version = subprocess.run([str(pm2), "--version"], capture_output=True, text=True,
                                 env={**os.environ, "PM2_HOME": str(tmp / "pm2home")}).stdout.strip().splitlines()[-1]
        ox = run_oxtui(wrk, tmp, args.instances, args.seconds, args.reloads)
        print("oxtui", ox, flush=True)
        pm = run_pm2(wrk, tmp, args.instances, args.seconds, args.reloads, pm2)
        print("pm2", pm, flush=True)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    rows = [("oxtui", ox), (f"PM2 {version} cluster", pm)]
    md = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, Node {node}: {args.instances} instances of "
          f"sample_apps/server.js, `wrk -t2 -c100 -d{int(args.seconds)}s`, {args.reloads} rolling reloads in the window; "
          f"oxtui with the default max_surge (50 %) and min_ready = {args.min_ready:g} s.",
          "", "| manager | requests/s during reloads | failed requests | requests | reload times (s) | requests/s steady (10 s, no reload) |",
          "|---|---|---|---|---|---|"]
    md += [f"| {name} | {r['rps']:.0f} | {r['failed']} | {r['requests']} | {', '.join(map(str, r['reload_s']))} | {r['steady_rps']:.0f} |"
           for name, r in rows]
    text = "\n".join(md) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    # A figure measured across a failed reload, or with reloads running past the load window, is not
    # a result: say so and fail, instead of printing a table that looks fine.
    problems = [f"{name}: {e}" for name, r in rows for e in r["reload_errors"]]
    problems += [f"{name}: the reloads ran past the {args.seconds:.0f} s load window (raise --seconds)"
                 for name, r in rows if not r["reloads_done_in_window"]]
    if problems:
        print("reload_bench: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
