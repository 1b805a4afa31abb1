"""The TUI over time: RSS and CPU of a real TUI attached for an hour to 64 workers, one of them chatty.

    .venv/bin/python bench/tui_soak.py [--minutes 60] [--sample 60] [--lines-per-s 200]

An engine runs in the background (`oxtui up`): 63 `sleep` workers and one logger printing
`--lines-per-s` lines a second (about 90 bytes each, every tenth to stderr). The real `oxtui OXFILE`
attaches to it in a 120x36 pseudo-terminal whose output is read and thrown away, as a terminal
would. Every `--sample` seconds: the TUI's RSS and USS, its CPU since the last sample (% of a
core), and the engine's RSS and CPU beside it. Writes bench/results/tui_soak.csv and prints the
first, last and largest figures. `pm2 monit` and process-compose have reports of a TUI that grows or
burns a core over hours; this is what oxtui's does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tui_bench import _read, sleepers

ROOT = Path(__file__).resolve().parent.parent
CHATTY = ("import sys, time\n"
          "n, every = 0, 1.0 / {rate}\n"
          "while True:\n"
          "    n += 1\n"
          "    out = sys.stderr if n % 10 == 0 else sys.stdout\n"
          "    print(f'request {{n}} GET /api/items/{{n % 977}} 200 in {{n % 37}} ms', file=out, flush=True)\n"
          "    time.sleep(every)\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--sample", type=float, default=60)
    ap.add_argument("--lines-per-s", type=float, default=200)
    args = ap.parse_args()
    import fcntl
    import pty
    import struct
    import termios
    folder = Path(tempfile.mkdtemp(prefix="oxtui-tui-soak-"))
    (folder / "chatty.py").write_text(CHATTY.format(rate=args.lines_per_s))
    oxfile = folder / "oxfile.toml"
    oxfile.write_text('[processes.idle]\ncommand = "sleep 100000"\ninstances = 63\n'
                      f'[processes.chatty]\ncommand = "{sys.executable} -u chatty.py"\n[logs]\ndir = "logs"\n')
    env = {**os.environ, "OXTUI_RUNTIME_DIR": str(folder), "TERM": "xterm-256color"}
    cli = [sys.executable, "-m", "oxtui"]
    subprocess.run([*cli, "up", str(oxfile)], env=env, check=True, capture_output=True, timeout=300)
    status = json.loads(subprocess.run([*cli, "status", "--json", str(oxfile)], env=env, check=True,
                                       capture_output=True, text=True).stdout)
    engine = psutil.Process(status["engine_pid"])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    tui = subprocess.Popen([*cli, str(oxfile)], stdin=slave, stdout=slave, stderr=slave, env=env,
                           start_new_session=True)
    os.close(slave)
    threading.Thread(target=lambda: [None for _ in iter(lambda: _read(master), b"")], daemon=True).start()
    ps = psutil.Process(tui.pid)
    rows = []
    out = ROOT / "bench" / "results" / "tui_soak.csv"
    try:
        deadline = time.time() + 60
        while sleepers(engine) < 63:
            if time.time() > deadline:
                raise SystemExit("tui_soak: the workers did not start within 60 s")
            time.sleep(0.5)
        time.sleep(10)
        cpu = lambda p: sum(p.cpu_times()[:2])
        t0 = last_t = time.monotonic()
        last = (cpu(ps), cpu(engine))
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(args.sample)
            now = time.monotonic()
            c = (cpu(ps), cpu(engine))
            mem = ps.memory_full_info()
            rows.append({"minute": round((now - t0) / 60, 2), "tui_rss_mb": round(mem.rss / 2**20, 2),
                         "tui_uss_mb": round(mem.uss / 2**20, 2),
                         "tui_cpu_percent": round(100 * (c[0] - last[0]) / (now - last_t), 2),
                         "engine_rss_mb": round(engine.memory_info().rss / 2**20, 2),
                         "engine_cpu_percent": round(100 * (c[1] - last[1]) / (now - last_t), 2)})
            last, last_t = c, now
            print(rows[-1], flush=True)
    finally:
        tui.send_signal(1)        # the terminal goes away: an attached TUI just ends
        try:
            tui.wait(30)
        except subprocess.TimeoutExpired:
            tui.kill()
            tui.wait()
        os.close(master)
        subprocess.run([*cli, "down", "-c", str(oxfile)], env=env, capture_output=True, timeout=300)
    os.makedirs(out.parent, exist_ok=True)
    with out.open("w") as f:
        f.write(",".join(rows[0]) + "\n")
        for r in rows:
            f.write(",".join(str(v) for v in r.values()) + "\n")
    for k in ("tui_rss_mb", "tui_uss_mb", "tui_cpu_percent", "engine_rss_mb", "engine_cpu_percent"):
        v = [r[k] for r in rows]
        print(f"{k}: first {v[0]}, last {v[-1]}, max {max(v)}, median {sorted(v)[len(v) // 2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
