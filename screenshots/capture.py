"""Pictures of the real app on the sample apps (real engine, real children), for README.

    .venv/bin/python screenshots/capture.py     # writes screenshots/*.svg and, with rsvg-convert, *.png
    .venv/bin/python screenshots/capture.py recovered    # only that one
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oxtui.client.embedded import EmbeddedEngine
from oxtui.client.remote import RemoteEngine
from oxtui.oxfile.config import load
from oxtui.tui.app import OxtuiApp

OUT = ROOT / "screenshots"


async def until(pilot, pred, timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await pilot.pause(0.05)
    raise TimeoutError(pred)


async def main() -> None:
    engine = EmbeddedEngine(load(ROOT / "sample_apps" / "oxfile.toml"))
    engine.start()
    app = OxtuiApp(engine, "sample_apps/oxfile.toml")
    shots = []
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            def web():
                return next(p for p in engine.snapshot()["processes"] if p["name"] == "web")
            await until(pilot, lambda: all(w["state"] == "running" for w in web()["workers"]))
            await pilot.pause(0.5)
            # the grid is in start order (migrate first): select web for `+` and `r`
            app.grid.move_cursor(row=app.grid._order.index("p:web"), animate=False)
            await pilot.press("plus")
            await pilot.pause(6)           # a few seconds of metrics for the sparklines
            shots.append(app.save_screenshot("grid.svg", str(OUT)))
            await pilot.press("r")
            await until(pilot, lambda: any(w["role"] == "surge" for w in web()["workers"])
                        and web()["reload"]["slots"])
            await pilot.pause(0.3)
            shots.append(app.save_screenshot("reload.svg", str(OUT)))
            await until(pilot, lambda: web()["reload"]["state"] != "running")
            await pilot.press("slash", *"job", "enter")
            await pilot.pause(0.5)
            shots.append(app.save_screenshot("logs-search.svg", str(OUT)))
            await pilot.press("escape")
            # Enter on the flaky worker once it has crashed: why it died, with its last lines
            def flaky():
                return next(p for p in engine.snapshot()["processes"] if p["name"] == "flaky")
            await until(pilot, lambda: flaky()["exits"], timeout=60)
            app.grid.focus()
            app.grid.move_cursor(row=app.grid._order.index("w:flaky:0:"), animate=False)
            await pilot.press("enter")
            await pilot.pause(0.5)
            shots.append(app.save_screenshot("details.svg", str(OUT)))
            await pilot.press("escape")
            # L: the logs full screen; e: stderr only (flaky's crashes and the workers' warnings)
            await pilot.press("L", "e")
            await pilot.pause(0.5)
            shots.append(app.save_screenshot("logs-full.svg", str(OUT)))
            await pilot.press("e", "L")
            # \: the grid filtered to one process; S over it: any signal, each with what it is for
            await pilot.press("backslash", *"flaky", "enter")
            await until(pilot, lambda: "w:flaky:0:" in app.grid.order and "p:web" not in app.grid.order)
            app.grid.move_cursor(row=app.grid.order.index("w:flaky:0:"), animate=False)
            await pilot.press("S")
            await pilot.pause(0.5)
            shots.append(app.save_screenshot("signals.svg", str(OUT)))
            await pilot.press("escape", "backslash", *["backspace"] * 5, "enter")
            # 80x24: every column but the sparklines, and every key of the footer
            await pilot.resize_terminal(80, 24)
            await pilot.pause(1)
            shots.append(app.save_screenshot("small.svg", str(OUT)))
    finally:
        engine.shutdown()
        engine.join(30)
    shots.append(await attached())
    shots.append(await recovered())
    shots.append(await flood())
    shots.append(await fleet())
    if shutil.which("rsvg-convert"):
        for svg in shots:
            subprocess.run(["rsvg-convert", "-w", "1400", svg, "-o", svg[:-4] + ".png"], check=True)
    print("\n".join(shots))


async def recovered() -> str:
    """The engine of `oxtui up` SIGKILLed: a TUI attached to the engine its keeper started in its place."""
    import json
    import os
    import signal
    import time
    oxfile = ROOT / "sample_apps" / "oxfile.toml"
    cli = [sys.executable, "-m", "oxtui"]
    subprocess.run([*cli, "up", str(oxfile)], check=True, cwd=ROOT)
    try:
        old = json.loads(subprocess.run([*cli, "status", "--json", "-c", str(oxfile)], check=True, cwd=ROOT,
                                        capture_output=True, text=True).stdout)["engine_pid"]
        os.kill(old, signal.SIGKILL)
        for _ in range(100):
            r = subprocess.run([*cli, "status", "--json", "-c", str(oxfile)], cwd=ROOT, capture_output=True, text=True)
            if r.returncode == 0 and json.loads(r.stdout)["engine_pid"] != old:
                break
            time.sleep(0.1)
        remote = RemoteEngine(oxfile.resolve())
        remote.connect()
        app = OxtuiApp(remote, "sample_apps/oxfile.toml")
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(4)
            shot = app.save_screenshot("recovered.svg", str(OUT))
            remote.detach()
    finally:
        subprocess.run([*cli, "down", "-c", str(oxfile)], check=True, cwd=ROOT)
    return shot


async def attached() -> str:
    """A second picture of the same apps, from a TUI attached to a background engine (`oxtui up`)."""
    oxfile = ROOT / "sample_apps" / "oxfile.toml"
    cli = [sys.executable, "-m", "oxtui"]
    subprocess.run([*cli, "up", str(oxfile)], check=True, cwd=ROOT)
    try:
        remote = RemoteEngine(oxfile.resolve())
        remote.connect()
        app = OxtuiApp(remote, "sample_apps/oxfile.toml")
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause(6)
            await pilot.press("q")
            await pilot.pause(0.5)
            shot = app.save_screenshot("attached.svg", str(OUT))
            await pilot.press("d")
    finally:
        subprocess.run([*cli, "down", "-c", str(oxfile)], check=True, cwd=ROOT)
    return shot


FLOOD = """
[processes.worker]
command = "python3 worker.py"
instances = 2
[processes.chatty]
command = "python3 chatty.py"
"""
CHATTY = "import sys\nwhile True:\n    sys.stdout.write('debug: cache miss for key 42\\n' * 1000)\n"


async def flood() -> str:
    """The sample worker beside a process printing flat out: `+` is answered during the flood, and the
    logs title counts the lines the pane skipped (they are in the files)."""
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="oxtui-flood-"))
    shutil.copy(ROOT / "sample_apps" / "worker.py", folder / "worker.py")
    (folder / "chatty.py").write_text(CHATTY)
    (folder / "oxfile.toml").write_text(FLOOD)
    engine = EmbeddedEngine(load(folder / "oxfile.toml"))
    engine.start()
    app = OxtuiApp(engine, "flood/oxfile.toml")
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: app.logview.dropped > 0)
            app.simulate_key("plus")            # the worker row is selected: as a terminal sends it
            await until(pilot, lambda: "w:worker:2:" in app.grid.rows_by_key)
            await pilot.pause(1)
            return app.save_screenshot("flood.svg", str(OUT))
    finally:
        engine.shutdown()
        engine.join(30)
        shutil.rmtree(folder, ignore_errors=True)


async def fleet() -> str:
    """`oxtui fleet` over three hosts: real sshd servers on 127.0.0.1 (tests/sshlab.py), each logging in
    as a user of its own; web1 and web2 run the sample web app and worker (started over SSH with
    `oxtui up`, as their user would), db1 has gone away."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sshlab import OXTUI, SshLab

    from oxtui.fleet.fleetfile import load as load_fleet
    from oxtui.fleet.session import FleetSession
    from oxtui.tui.fleet import FleetApp
    lab = SshLab()
    started = []
    try:
        for name, port, n in (("web1", 18081, 3), ("web2", 18082, 2)):
            host = lab.add(name)
            folder = host.home / "shop"
            folder.mkdir()
            for f in ("web.py", "worker.py"):
                shutil.copy(ROOT / "sample_apps" / f, folder / f)
            (folder / "oxfile.toml").write_text(
                f'[processes.web]\ncommand = "python3 web.py"\ninstances = {n}\nlisten = "127.0.0.1:{port}"\n'
                '[processes.web.ready]\nlog = "listening on"\n[processes.worker]\ncommand = "python3 worker.py"\n')
            host.give(folder)
            r = host.ssh(OXTUI, "up", str(folder / "oxfile.toml"))
            assert r.returncode == 0, r.stdout + r.stderr
            started.append((host, folder / "oxfile.toml"))
        db1 = lab.add("db1")
        session = FleetSession(load_fleet(lab.fleet))
        session.start()
        app = FleetApp(session)
        try:
            async with app.run_test(size=(120, 36)) as pilot:
                await until(pilot, lambda: sum(1 for r in app.grid.rows_by_key.values() if r.state == "running") == 7)
                db1.stop()
                await until(pilot, lambda: app.grid.rows_by_key["h:db1"].state == "down")
                await pilot.pause(6)
                await pilot.press("s", "s")          # sorted by memory across every host, at once
                app.grid.move_cursor(row=app.grid._order.index("h:web2"), animate=False)
                await pilot.pause(0.3)
                return app.save_screenshot("fleet.svg", str(OUT))
        finally:
            session.close()
    finally:
        for host, oxfile in started:
            host.ssh(OXTUI, "down", "-c", str(oxfile))
        left = lab.close()
        assert not left, left


async def deploy() -> str:
    """`D` in the TUI: a release of the Node sample from a git repository, caught while its slots move."""
    import os
    import tempfile
    with tempfile.TemporaryDirectory(prefix="oxtui-deploy-") as tmp:
        src, site = Path(tmp) / "shop.git", Path(tmp) / "shop"
        src.mkdir()
        (site / "shared").mkdir(parents=True)
        (site / "shared" / ".env").write_text("GREETING=hi\n")
        env = {**os.environ, "GIT_AUTHOR_NAME": "me", "GIT_AUTHOR_EMAIL": "me@x", "GIT_COMMITTER_NAME": "me",
               "GIT_COMMITTER_EMAIL": "me@x"}
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=src, check=True)
        shutil.copy(ROOT / "sample_apps" / "server.js", src / "server.js")
        for n, subject in ((1, "first release"), (2, "faster checkout page")):
            (src / "build.sh").write_text("echo '> npm ci'; sleep 0.5; echo 'added 142 packages in 2s'; "
                                          f"echo '> npm run build'; sleep 0.5; echo 'built bundle v{n} (212 kB)'\n")
            subprocess.run(["git", "add", "-A"], cwd=src, check=True, env=env)
            subprocess.run(["git", "commit", "-q", "-m", subject], cwd=src, check=True, env=env)
        (site / "oxfile.toml").write_text(f"""[deploy]
source = "{src}"
build = "sh build.sh"
shared = [".env"]

[processes.web]
command = "node server.js"
cwd = "current"
instances = 4
listen = "127.0.0.1:8091"

[processes.web.reload]
min_ready = 1.5
""")
        subprocess.run([sys.executable, "-m", "oxtui", "deploy", "HEAD~1", "-c", str(site / "oxfile.toml")],
                       check=True, cwd=ROOT, capture_output=True)
        engine = EmbeddedEngine(load(site / "oxfile.toml"))
        engine.start()
        app = OxtuiApp(engine, "shop/oxfile.toml")
        try:
            async with app.run_test(size=(120, 36)) as pilot:
                await until(pilot, lambda: sum(w["state"] == "running" for p in engine.snapshot()["processes"]
                                               for w in p["workers"]) == 4)
                await pilot.pause(1)
                await pilot.press("D")
                await pilot.pause(0.3)
                await pilot.press("enter")

                def moving() -> bool:
                    web = engine.snapshot()["processes"][0]
                    return len({w["release"] for w in web["workers"]}) > 1 and sum(
                        w["state"] == "running" and not w["role"] for w in web["workers"]) >= 2
                await until(pilot, moving)
                await pilot.pause(0.6)
                return app.save_screenshot("deploy.svg", str(OUT))
        finally:
            engine.shutdown()
            engine.join(30)


async def only(name: str) -> None:
    shot = await {"recovered": recovered, "attached": attached, "flood": flood, "fleet": fleet,
                  "deploy": deploy}[name]()
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", "-w", "1400", shot, "-o", shot[:-4] + ".png"], check=True)
    print(shot)


if __name__ == "__main__":
    asyncio.run(only(sys.argv[1]) if len(sys.argv) > 1 else main())
