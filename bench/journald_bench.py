"""What sending every worker line to the journal costs, and where journald's rate limit drops lines.

Boots the machine's systemd in a throwaway container (tests/realsystemd.py), runs an oxtui unit whose
one worker prints RATE numbered lines a second for SECONDS, once with `[logs] journald = false`
(files only: the baseline) and once with the journal on, then with the unit's rate limit raised.
Reports the engine's CPU (seconds of CPU per second of run, from status), the lines in the file and
the entries journald kept (`journalctl -u UNIT OXTUI_PROCESS=chatty`).

    sudo .venv/bin/python bench/journald_bench.py [--rate 2000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from realsystemd import PY, Machine, unavailable

APP = ROOT / "tests" / "apps" / "numbered.py"


def run(m: Machine, folder: Path, rate: int, seconds: float, journald: bool, limit: bool) -> dict:
    folder.mkdir()
    oxfile = folder / "oxfile.toml"
    # numbered.py prints bursts of 10 lines every `pause` s
    oxfile.write_text(f'[logs]\njournald = {str(journald).lower()}\ndir = "logs"\n'
                      f'[processes.chatty]\ncommand = "{PY} {APP} {10 / rate} 60"\n')
    unit = f"oxtui-{folder.name}.service"
    r = m.run(PY, "-m", "oxtui", "startup", str(oxfile), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    if limit:
        m.sh(f"mkdir -p /etc/systemd/system/{unit}.d && printf '[Service]\\nLogRateLimitIntervalSec=0\\n' > "
             f"/etc/systemd/system/{unit}.d/rate.conf && systemctl daemon-reload && systemctl restart {unit}",
             check=True, timeout=60)

    def status() -> dict:
        return json.loads(m.run(PY, "-m", "oxtui", "status", "--json", "-c", str(oxfile)).stdout)
    time.sleep(1)
    before = status()["engine"]["cpu_seconds"]
    t0 = time.monotonic()
    time.sleep(seconds)
    cpu = (status()["engine"]["cpu_seconds"] - before) / (time.monotonic() - t0)
    m.run(PY, "-m", "oxtui", "stop", "chatty", "-c", str(oxfile))
    time.sleep(2)
    snap = status()
    printed = snap["processes"][0]["counters"]["log_lines"]
    entries = int(m.sh(f"journalctl -u {unit} OXTUI_PROCESS=chatty -o cat --no-pager | wc -l").stdout.strip())
    said = m.sh(f"journalctl --no-pager -o cat _COMM=systemd-journal | grep -E 'Suppressed [0-9]+ messages from {unit}'"
                ).stdout.split()
    suppressed = sum(int(said[i + 1]) for i, w in enumerate(said) if w == "Suppressed")
    m.run(PY, "-m", "oxtui", "startup", "--remove", str(oxfile), timeout=120)
    return {"journald": journald, "raised limit": limit, "engine CPU %": round(100 * cpu, 1),
            "lines printed": printed, "journal entries": entries, "journald suppressed": suppressed, "sent": (snap["engine"]["journald"] or {}).get("sent"),
            "dropped by oxtui": (snap["engine"]["journald"] or {}).get("dropped")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    why = unavailable()
    if why:
        sys.exit(f"real systemd: {why}")
    with tempfile.TemporaryDirectory(prefix="oxtui-journald-") as tmp:
        base = Path(tmp)
        m = Machine(f"oxb-{uuid.uuid4().hex[:8]}", base / "rsd", [ROOT, base])
        m.start()
        # a journal that keeps everything a run sends: the container's /run is small, and journald would
        # vacuum the oldest entries of a volatile journal before they are counted
        m.sh("mkdir -p /etc/systemd/journald.conf.d && printf '[Journal]\\nRuntimeMaxUse=2G\\nRuntimeKeepFree=0\\n' "
             "> /etc/systemd/journald.conf.d/bench.conf && systemctl restart systemd-journald", check=True)
        try:
            rows = [run(m, base / f"r{i}", args.rate, args.seconds, journald, limit)
                    for i, (journald, limit) in enumerate(((False, False), (True, False), (True, True)))]
        finally:
            m.destroy()
    print(f"{args.rate} lines/s for {args.seconds:g} s")
    for row in rows:
        print("  ".join(f"{k}: {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
