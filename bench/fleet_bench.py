"""What the fleet view costs: 3 hosts x 64 workers over real SSH (sshd on 127.0.0.1, tests/sshlab.py).

    .venv/bin/python bench/fleet_bench.py [--hosts 3] [--workers 64] [--idle 30] [--rtt-ms 150] [--profile FILE]

Measures, with the fleet TUI (tui/fleet.py, headless through Textual's run_test) watching every host:
  - idle: CPU of this process (the TUI and its links) and of the three `oxtui _bridge` processes on
    the hosts, and bytes per second over all links, for `--idle` seconds with nothing changing but the
    metrics (CPU and memory are sampled each second);
  - reload: the same while one host runs a rolling reload of its 64 workers;
  - key to screen: `+` on a process until its new worker's row is in the grid (the engine starts it,
    the bridge sees it and sends the difference, the grid shows it), median of 10;
  - a full snapshot of 64 workers against one difference, in bytes.
Needs root and openssh-server (as the tests). Prints a Markdown table; writes bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sshlab import OXTUI, Host, SshLab, unavailable

from oxtui.fleet import delta
from oxtui.fleet.fleetfile import load
from oxtui.fleet.session import FleetSession
from oxtui.tui.fleet import FleetApp


def cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def bridges(lab: SshLab) -> list[psutil.Process]:
    found = []
    for h in lab.hosts.values():
        for c in psutil.Process(h.proc.pid).children(recursive=True):
            try:
                if "_bridge" in " ".join(c.cmdline()):
                    found.append(c)
            except psutil.NoSuchProcess:
                pass
    return found


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--idle", type=float, default=30)
    ap.add_argument("--rtt-ms", type=float, default=0,
                    help="web2, whose + is timed, behind a TCP relay that adds this round trip (half each way)")
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of the TUI process's idle window to FILE")
    args = ap.parse_args()
    if why := unavailable():
        print(f"cannot run: {why}", file=sys.stderr)
        return 1
    lab = SshLab()
    engines: list[tuple[Host, Path]] = []
    try:
        for i in range(args.hosts):
            h = lab.add(f"web{i + 1}", delay=args.rtt_ms / 2000 if i == 1 and args.rtt_ms else None)
            folder = h.home / "app"
            folder.mkdir()
            oxfile = folder / "oxfile.toml"
            oxfile.write_text(f'[processes.app]\ncommand = "sleep 100000"\ninstances = {args.workers}\n'
                              '[logs]\ndir = "logs"\n')
            h.give(folder)
            r = h.ssh(OXTUI, "up", str(oxfile), timeout=120)
            assert r.returncode == 0, r.stderr
            engines.append((h, oxfile))
        session = FleetSession(load(lab.fleet))
        session.start()
        result = asyncio.run(measure(lab, session, engines, args))
        session.close()
        result["local"] = asyncio.run(measure_local(*engines[1], args))
    finally:
        for h, oxfile in engines:
            h.ssh(OXTUI, "down", "-c", str(oxfile), timeout=120)
        lab.close()
    os.makedirs(ROOT / "bench" / "results", exist_ok=True)
    (ROOT / "bench" / "results" / "fleet.json").write_text(json.dumps(result, indent=2))
    print(f"\n{args.hosts} hosts x {args.workers} workers, through real sshd on 127.0.0.1"
          + (f"; web2 (the + timed) behind a relay adding {args.rtt_ms:.0f} ms of round trip" if args.rtt_ms else "")
          + "\n")
    print("| | TUI process CPU | bridges' CPU (all hosts) | bytes/s over all links | key to screen, median [min-max] |")
    print("|---|---|---|---|---|")
    lat = result["key_to_screen_ms"]
    for k in ("idle", "reload"):
        r = result[k]
        print(f"| fleet, {k} | {r['tui_cpu_percent']:.1f}% | {r['bridges_cpu_percent']:.1f}% | {r['bytes_per_s']:.0f} | "
              + (f"{statistics.median(lat):.0f} ms [{min(lat):.0f}-{max(lat):.0f}] |" if k == "idle" else " |"))
    loc = result["local"]
    ll = loc["key_to_screen_ms"]
    print(f"| one host's TUI attached locally ({args.workers} workers), idle | {loc['tui_cpu_percent']:.1f}% | - | - | "
          f"{statistics.median(ll):.0f} ms [{min(ll):.0f}-{max(ll):.0f}] |")
    print(f"\na full snapshot of {args.workers} workers: {result['snapshot_bytes']} bytes; a typical difference "
          f"(each second's figures): {result['delta_bytes']} bytes")
    return 0


def ssh_popen(h: Host, *command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ssh", "-F", str(h.lab.ssh_config), "-o", "BatchMode=yes", h.name, "--",
                             " ".join(command)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def press_plus_until_shown(app, pilot, process_key: str, prefix: str) -> list[float]:
    """`+` on a process row, until its new worker's row is in the grid; 10 times."""
    lat = []
    for _ in range(10):
        app.grid.move_cursor(row=app.grid._order.index(process_key), animate=False)
        await pilot.pause(0.1)
        before = {k for k in app.grid.rows_by_key if k.startswith(prefix)}
        t0 = time.monotonic()
        await pilot.press("plus")
        while not ({k for k in app.grid.rows_by_key if k.startswith(prefix)} - before):
            await pilot.pause(0.005)
        lat.append((time.monotonic() - t0) * 1000)
        await pilot.pause(0.6)
    return lat


async def measure_local(h: Host, oxfile: Path, args) -> dict:
    """The baseline: the TUI attached to one of those engines over its control socket, on its own machine."""
    from oxtui.client.remote import RemoteEngine
    from oxtui.runtime import key_for
    from oxtui.tui.app import OxtuiApp
    remote = RemoteEngine(oxfile, path=h.run_dir / f"{key_for(oxfile)}.sock")
    remote.connect()
    app = OxtuiApp(remote, str(oxfile))
    me = psutil.Process()
    try:
        async with app.run_test(size=(140, 48)) as pilot:
            await pilot.pause(3)
            c0, t0 = cpu([me]), time.monotonic()
            await pilot.pause(args.idle)
            out = {"tui_cpu_percent": 100 * (cpu([me]) - c0) / (time.monotonic() - t0)}
            out["key_to_screen_ms"] = await press_plus_until_shown(app, pilot, "p:app", "w:app:")
    finally:
        remote.detach()
    return out


async def measure(lab: SshLab, session: FleetSession, engines, args) -> dict:
    app = FleetApp(session)
    me = psutil.Process()
    out: dict = {}
    async with app.run_test(size=(140, 48)) as pilot:
        def workers_shown() -> int:
            # from what reached the TUI: the grid keeps rows off screen as they were until they scroll in
            snaps = [v.snapshot() for h in session.hosts for v in h.views()]
            return sum(1 for s in snaps if s for p in s["processes"] for w in p["workers"] if w["state"] == "running")
        deadline = time.monotonic() + 120
        while workers_shown() < args.hosts * args.workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {workers_shown()} workers shown after 120 s")
            await pilot.pause(0.2)
        await pilot.pause(3)

        async def window(seconds: float) -> dict:
            bs = bridges(lab)
            c0, b0 = cpu([me]), cpu(bs)
            n0 = sum(h.link.bytes_in for h in session.hosts)
            t0 = time.monotonic()
            await pilot.pause(seconds)
            dt = time.monotonic() - t0
            return {"tui_cpu_percent": 100 * (cpu([me]) - c0) / dt, "bridges_cpu_percent": 100 * (cpu(bs) - b0) / dt,
                    "bytes_per_s": (sum(h.link.bytes_in for h in session.hosts) - n0) / dt, "seconds": dt}
        if args.profile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        out["idle"] = await window(args.idle)
        if args.profile:
            prof.disable()
            prof.dump_stats(args.profile)

        h0, oxfile = engines[0]
        reload = ssh_popen(h0, OXTUI, "reload", "app", "-c", str(oxfile))
        await pilot.pause(0.5)
        r = await window(8)
        while reload.poll() is None:
            await pilot.pause(0.2)
        out["reload"] = r
        key = next(k for k in app.grid._order if k.startswith("web2|") and k.endswith("p:app"))
        out["key_to_screen_ms"] = await press_plus_until_shown(app, pilot, key, key[:-len("p:app")] + "w:app:")

        snap = session.hosts[0].views()[0].snapshot()
        keyed = delta.keyed(snap)
        changed = json.loads(json.dumps(keyed))
        for k, w in changed["processes"]["app"]["workers"].items():
            if k != delta.ORDER:
                w["cpu_percent"] = (w.get("cpu_percent") or 0) + 0.1
                w["rss_bytes"] = (w.get("rss_bytes") or 0) + 4096
        out["snapshot_bytes"] = len(json.dumps(keyed))
        out["delta_bytes"] = len(json.dumps(delta.diff(keyed, changed)))
    return out


if __name__ == "__main__":
    sys.exit(main())
