"""The fleet over real SSH: real sshd servers (tests/sshlab.py), the real ssh client, real engines on
each "host", and `oxtui fleet` / `-H` / `--fleet` driving them.

Covers what a person relies on: every host's workers with their real pids, a key acting on the
selected host only, a fleet reload that goes host by host under load and stops at the first host that
rolls back, hosts that cannot be reached named with the reason and what to do, a host that drops
and comes back by itself, and a slow or stalled host never holding up the others.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from conftest import app_oxfile, await_until, default_sigint, free_port, http_get, wait_until, write_oxfile
from hypothesis import given, settings
from hypothesis import strategies as st
from load import Load, explain
from sshlab import OXTUI, SshLab, unavailable

from oxtui.client.connection import Client
from oxtui.fleet import delta
from oxtui.runtime import key_for

WHY = unavailable()
needs_ssh = pytest.mark.skipif(WHY is not None, reason=f"real sshd: {WHY}")


class HostEngine:
    """An engine on one host of the lab, started and stopped there over SSH as its user would
    (`oxtui up`, `oxtui down`); the test reads its status straight from its control socket."""

    def __init__(self, host, oxfile: Path, port: int | None):
        self.host, self.oxfile, self.port = host, oxfile, port
        r = host.ssh(OXTUI, "up", str(oxfile))
        assert r.returncode == 0, f"oxtui up on {host.name}: {r.stdout}{r.stderr}"

    def status(self) -> dict[str, Any]:
        sock = self.host.run_dir / f"{key_for(self.oxfile)}.sock"
        with Client(self.oxfile, timeout=10, path=sock) as c:
            return c.call({"cmd": "status"})

    def workers(self, name: str = "app") -> list[dict[str, Any]]:
        return next(p for p in self.status()["processes"] if p["name"] == name)["workers"]

    def pids(self, name: str = "app") -> dict[int, int]:
        return {w["instance"]: w["pid"] for w in self.workers(name) if w["role"] is None and w["pid"]}

    def wait_running(self, name: str, n: int, timeout: float = 20) -> None:
        wait_until(lambda: sum(1 for w in self.workers(name) if w["state"] == "running" and w["role"] is None) == n,
                   timeout, 0.1, what=f"{n} running {name} workers on {self.host.name}")

    def stop(self) -> None:
        if self.host.proc is None:      # a test that failed while its host was down: bring it back to stop the engine
            self.host.start()
        r = self.host.ssh(OXTUI, "down", "-c", str(self.oxfile))
        assert r.returncode in (0, 3), f"oxtui down on {self.host.name}: {r.stdout}{r.stderr}"


@pytest.fixture
def lab():
    if WHY is not None:
        pytest.skip(WHY)
    lab = SshLab()
    yield lab
    left = lab.close()
    assert not left, f"processes left running on the hosts: {left}"


@pytest.fixture
def engines():
    started: list[HostEngine] = []

    def start(host, name: str, release: str = "ok r1", instances: int = 2, oxfile: str | None = None) -> HostEngine:
        """An engine in HOME/NAME of the host's user: tests/apps/app.py on a port of its own, or `oxfile`."""
        folder = host.home / name
        folder.mkdir()
        port = None
        if oxfile is None:
            port = free_port()
            path = app_oxfile(folder, port, instances=instances, release=release)
        else:
            path = write_oxfile(folder, oxfile)
        host.give(folder)
        ep = HostEngine(host, path, port)
        started.append(ep)
        ep.wait_running("app", instances)
        return ep
    yield start
    # each over its own SSH connection, together: a slow host's handshake is not waited for once per engine
    with ThreadPoolExecutor() as pool:
        list(pool.map(HostEngine.stop, started))


def fleet_cli(lab: SshLab, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oxtui", *args, "--fleet-file", str(lab.fleet)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"}, check=False)


# ---- the command line ---------------------------------------------------------------------------

@needs_ssh
@pytest.mark.slow
def test_verbs_reach_each_host_and_name_the_unreachable_ones(lab, engines, tmp_path):
    web1, web2 = lab.add("web1"), lab.add("web2")
    lab.add("locked", password_only=True)
    lab.add("stranger", known=False)
    e1, e2 = engines(web1, "one"), engines(web2, "two")

    r = fleet_cli(lab, "status", "--json", "--fleet")
    assert r.returncode == 1, r.stderr
    got = {s["host"]: s for s in json.loads(r.stdout)}
    assert set(got) == {"web1", "web2", "locked", "stranger"}, "a script must see the hosts that are down too"
    assert "Permission denied" in got["locked"]["error"] and "processes" not in got["locked"]
    assert "Host key verification failed" in got["stranger"]["error"]
    for name, ep in (("web1", e1), ("web2", e2)):
        pids = {w["instance"]: w["pid"] for w in got[name]["processes"][0]["workers"]}
        assert pids == ep.pids(), f"{name}'s status must be its own engine's"
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 2, r.stderr
    assert "locked: unreachable" in r.stderr and "Permission denied" in r.stderr and "ssh-copy-id" in r.stderr
    assert "stranger: unreachable" in r.stderr and "Host key verification failed" in r.stderr
    assert "accept it once with `ssh stranger`" in r.stderr

    r = fleet_cli(lab, "scale", "app", "3", "-H", "web2")
    assert r.returncode == 0, r.stderr
    e2.wait_running("app", 3)
    assert len(e1.pids()) == 2, "a verb for web2 must leave web1 alone"
    assert r.stdout.startswith("web2: ")

    r = fleet_cli(lab, "ls", "-H", "web1,web2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["web1", "web2"]
    assert str(e1.oxfile) in lines[0] and "app 2/2" in lines[0] and "app 3/3" in lines[1]

    wait_until(lambda: "ready r1" in fleet_cli(lab, "logs", "app", "-n", "20", "-H", "web1").stdout, 10, 0.2)
    r = fleet_cli(lab, "logs", "app", "-n", "20", "-H", "web1")
    assert r.stdout and all(line.split()[2].startswith("web1/app.") for line in r.stdout.splitlines()), r.stdout
    assert fleet_cli(lab, "scale", "app", "3", "-H", "web1").returncode == 0    # web1's news after web2's
    e1.wait_running("app", 3)
    wait_until(lambda: "app.2" in fleet_cli(lab, "logs", "app", "-n", "20", "-H", "web1").stdout, 10, 0.2)
    # Several hosts' lines and events: one list in time order, each named HOST/process.N as followed ones are.
    for verb in ("logs", "events"):
        r = fleet_cli(lab, verb, "app", "-n", "20", "-H", "web1,web2")
        assert r.returncode == 0, r.stderr
        rows = r.stdout.splitlines()
        assert {row.split()[2].split("/")[0] for row in rows} == {"web1", "web2"}, r.stdout
        assert [row[:23] for row in rows] == sorted(row[:23] for row in rows), f"{verb} not in time order:\n{r.stdout}"
    r = fleet_cli(lab, "events", "--fleet")
    assert r.returncode == 1 and "web1/app.0" in r.stdout and "web2/app.0" in r.stdout, r.stdout + r.stderr
    r = fleet_cli(lab, "events", "-H", "web1", "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events and {e["host"] for e in events} == {"web1"} and all("event" in e for e in events)

    follow = subprocess.Popen([sys.executable, "-m", "oxtui", "logs", "app", "-f", "-n", "5", "--fleet",
                               "--fleet-file", str(lab.fleet)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "NO_COLOR": "1"}, preexec_fn=default_sigint)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(follow.stdout), daemon=True).start()   # reads never block the test
    try:
        def hosts_seen() -> set[str]:
            return {line.split("/", 1)[0].split()[-1] for line in list(lines) if "/app" in line}
        wait_until(lambda: {"web1", "web2"} <= hosts_seen(), 30, 0.1, what="followed lines of both hosts")
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 130
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        follow.stdout.close()
        follow.stderr.close()

    r = fleet_cli(lab, "status", "-H", "nosuchhost.invalid")
    assert r.returncode == 1 and "nosuchhost.invalid: unreachable" in r.stderr, r.stderr

    r = fleet_cli(lab, "status", "-c", str(tmp_path / "elsewhere.toml"), "-H", "web1")
    assert r.returncode == 3 and "web1: no engine is running for" in r.stderr, r.stderr


@needs_ssh
def test_a_host_with_an_oxtui_that_cannot_bridge_is_told_what_to_install(lab):
    """oxtui 0.2.0rc2, a real earlier release (tests/releases/), has no fleet bridge."""
    from installs import Install
    old = Install(lab.dir / ".old-oxtui")
    script = lab.dir / ".old-oxtui" / "bin" / "oxtui"        # what pip's console script does
    script.write_text(f'#!/bin/sh\nexec {old.python} -m oxtui "$@"\n')
    script.chmod(0o755)
    lab.add("old", oxtui=str(script))
    lab.add("missing", oxtui="/nowhere/bin/oxtui")
    r = fleet_cli(lab, "status", "--fleet")
    assert r.returncode == 1, r.stderr
    assert "old: unreachable: its oxtui (" in r.stderr and "has no fleet bridge: install oxtui 0.2.0 or later" \
        in r.stderr, r.stderr
    assert "missing: unreachable:" in r.stderr and "no oxtui at '/nowhere/bin/oxtui' there" in r.stderr, r.stderr


@needs_ssh
def test_a_bad_fleet_file_is_one_line_per_problem(lab, tmp_path):
    bad = tmp_path / "fleet.toml"
    bad.write_text('[hosts.web1]\nssh = "web1"\nport = 22\n[hosts.web2]\noxtui = "/x"\n[other]\n')
    r = subprocess.run([sys.executable, "-m", "oxtui", "status", "--fleet", "--fleet-file", str(bad)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert any("hosts.web1" in line and "port" in line for line in lines), r.stderr
    assert any("hosts.web2" in line and "ssh" in line and "required" in line for line in lines), r.stderr
    assert any("'other'" in line for line in lines), r.stderr
    assert all(str(bad) in line for line in lines) and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "oxtui", "fleet", "--fleet-file", str(tmp_path / "none.toml")],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and "none.toml: not found" in r.stderr


@needs_ssh
@pytest.mark.slow
def test_fleet_reload_goes_host_by_host_under_load_and_stops_at_the_first_rollback(lab, engines):
    lab.add("web0", password_only=True)        # down from the start: named and skipped, never a reason to wait
    hosts = [lab.add(f"web{i}") for i in (1, 2, 3)]
    eps = [engines(h, "shop") for h in hosts]
    before = [ep.pids() for ep in eps]
    for ep, release in zip(eps, ("ok r2", "crash", "ok r2"), strict=True):
        (ep.oxfile.parent / "release.txt").write_text(release)
    loads = [Load.steady(ep.port, max_seconds=90) for ep in eps]
    for load in loads:
        load.__enter__()
    try:
        for load in loads:
            load.wait_for(20)
        r = fleet_cli(lab, "reload", "app", "--fleet")
        for load in loads:
            load.wait_for(20)
    finally:
        for load in loads:
            load.stop()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "new release on: web1; old release on: web2, web3 (stopped at web2); not reached: web0" in r.stdout, r.stdout
    assert "web2: app: rolled back" in r.stderr, r.stderr
    assert r.stdout.index("web1: rolling reload") < r.stdout.index("web2: rolling reload"), "one host after the other"
    assert "web3: rolling reload" not in r.stdout, "nothing is tried after the host that rolled back"
    for ep, load in zip(eps, loads, strict=True):
        assert not load.failures, f"{ep.host.name}: " + explain(load.failures, ep.oxfile.parent)
    after = [ep.pids() for ep in eps]
    assert not set(after[0].values()) & set(before[0].values()), "web1 runs the new release"
    assert after[1] == before[1] and after[2] == before[2], "web2 rolled back, web3 untouched"
    assert http_get(eps[0].port)[1].startswith("r2") and http_get(eps[1].port)[1].startswith("r1")
    assert http_get(eps[2].port)[1].startswith("r1")


@needs_ssh
def test_upgrade_over_ssh_keeps_every_app_running(lab, engines):
    web1 = lab.add("web1")
    eps = [engines(web1, "one"), engines(web1, "two", instances=1)]
    before = [(ep.status()["engine_pid"], ep.pids()) for ep in eps]
    r = fleet_cli(lab, "upgrade", "-H", "web1")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if "kept with the same pids" in line]
    assert len(lines) == 2 and all(line.startswith("web1: ") for line in lines), "every engine of the host"
    for ep, (old_engine, pids) in zip(eps, before, strict=True):
        assert ep.status()["engine_pid"] != old_engine and ep.pids() == pids



@needs_ssh
def test_upgrade_over_ssh_stops_at_the_first_host_that_fails(lab, engines):
    """web1 cannot upgrade what it is asked to (no engine runs that oxfile there): web2 is not tried,
    and the command says so; web2's engine is the one it was."""
    lab.add("web1")
    ep2 = engines(lab.add("web2"), "shop")
    before = ep2.status()["engine_pid"]
    r = fleet_cli(lab, "upgrade", "-H", "web1,web2", str(ep2.oxfile))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "oxtui upgrade: stopped at web1; not tried: web2" in r.stderr
    assert "web2: oxtui upgrade" not in r.stdout, "web2 never reached"
    assert ep2.status()["engine_pid"] == before

# ---- the fleet TUI --------------------------------------------------------------------------------

def _session(lab: SshLab, names: list[str]):
    from oxtui.fleet.fleetfile import load
    from oxtui.fleet.session import FleetSession
    session = FleetSession([h for h in load(lab.fleet) if h.name in names])
    session.start()
    return session


def _grid_pids(app, host: str, oxfile: Path) -> dict[int, int]:
    prefix = f"{host}|{oxfile.resolve()}|w:app:"
    return {int(k[len(prefix):].split(":")[0]): int(r.cells[1]) for k, r in app.grid.rows_by_key.items()
            if k.startswith(prefix) and r.cells[1].isdigit() and not k.endswith(":surge") and r.role is None}


async def _select(pilot, app, key: str) -> None:
    await await_until(lambda: key in app.grid.rows_by_key, 20, sleep=pilot.pause, what=f"row {key}")
    app.grid.move_cursor(row=app.grid._order.index(key), animate=False)
    await pilot.pause()
    assert app.grid.selected_key() == key


@needs_ssh
@pytest.mark.slow
def test_fleet_tui_shows_every_host_and_a_key_acts_on_the_selected_host_only(lab, engines, monkeypatch):
    import oxtui.tui.app as tui_app
    from oxtui.tui.fleet import FleetApp
    # no pull for an hour: all the view shows comes from the hosts' pushes waking it (FleetSession.set_wake)
    monkeypatch.setattr(tui_app, "CHECK_INTERVAL", 3600)
    web1, web2 = lab.add("web1"), lab.add("web2")
    e1, e2 = engines(web1, "one"), engines(web2, "two")
    o1, o2 = e1.oxfile.resolve(), e2.oxfile.resolve()
    session = _session(lab, ["web1", "web2"])

    async def body() -> None:
        app = FleetApp(session)
        async with app.run_test(size=(140, 48)) as pilot:
            wait = lambda pred, what: await_until(pred, 30, sleep=pilot.pause, what=what)
            await wait(lambda: _grid_pids(app, "web1", o1) == e1.pids() and _grid_pids(app, "web2", o2) == e2.pids(),
                       "both hosts' workers with their real pids")
            keys = app.grid._order
            assert keys.index("h:web1") < keys.index(f"e:web1|{o1}") < keys.index(f"web1|{o1}|p:app") \
                < keys.index("h:web2"), keys
            assert "2/2 hosts up" in str(app.header.render())

            # k on web2's app.1: only that worker is replaced
            old2, old1 = e2.pids(), e1.pids()
            await _select(pilot, app, f"web2|{o2}|w:app:1:")
            await pilot.press("k")
            await wait(lambda: e2.pids().get(1) not in (None, old2[1]), "web2's app.1 restarted")
            await wait(lambda: _grid_pids(app, "web2", o2) == e2.pids(), "the grid shows web2's new pid")
            assert e1.pids() == old1 and e2.pids()[0] == old2[0], "k acts on the selected worker of the selected host"

            # s sorts at once, not when a host next sends its figures: sorted by restarts, web2's app.1
            # (killed above) comes first. The action runs three times within one step of the loop, so no
            # host's snapshot can land in between (on a loaded machine, looks through pilot.press never
            # found a quiet moment in 30 s: each press waits for the process to go idle); then the key.
            views = [v for h in session.hosts for v in h.views()]
            web2_workers = lambda: [k for k in app.grid._order if k.startswith(f"web2|{o2}|w:")]
            await wait(lambda: any(w["restarts"] for p in views[1].snapshot()["processes"] for w in p["workers"]),
                       "web2's restart counted")
            assert app.sort == "slot"
            for _ in ("cpu", "memory", "restarts"):
                app.action_sort()
            assert app.sort == "restarts"
            order = web2_workers()
            assert order == [f"web2|{o2}|w:app:1:", f"web2|{o2}|w:app:0:"], order
            await pilot.press("s")
            assert app.sort == "slot" and web2_workers() == order[::-1]

            # + on web1's process: web1 has 3, web2 keeps 2
            await _select(pilot, app, f"web1|{o1}|p:app")
            await pilot.press("plus")
            await wait(lambda: len(e1.pids()) == 3, "web1 scaled to 3")
            assert len(e2.pids()) == 2
            await wait(lambda: len(_grid_pids(app, "web1", o1)) == 3, "the grid shows web1's third worker")

            # the merged logs carry the host; f narrows them to the selected host
            await wait(lambda: any(line.process.startswith("web1/app") for line in app.logview.all), "web1's lines")
            await wait(lambda: any(line.process.startswith("web2/app") for line in app.logview.all), "web2's lines")
            await _select(pilot, app, "h:web2")
            await pilot.press("f")
            assert app.logview.filter == ("web2/", None)
            assert app.logview.view and all(line.process.startswith("web2/") for line in app.logview.view)
            assert "web2/" in str(app.logs_title.render())

            # a question names the host: x on web1's app
            await _select(pilot, app, f"web1|{o1}|p:app")
            await pilot.press("x")
            await pilot.pause()
            assert "on web1" in str(app.screen.query_one("Static").render()), "the question says which host"
            await pilot.press("n")

            # : jumps to a host by name
            await _select(pilot, app, f"web1|{o1}|p:app")
            await pilot.press("colon")
            await pilot.press(*"web2", "enter")
            await wait(lambda: app.grid.selected_key() == "h:web2", ": web2 selects web2")

            # a key on a host row is refused with why, and nothing happens anywhere
            await pilot.press("plus")
            await pilot.pause(0.5)
            assert len(e2.pids()) == 2 and len(e1.pids()) == 3

            # an engine started on web2 while the view is open shows up under it
            e2b = engines(web2, "late", instances=1)
            late = e2b.oxfile.resolve()
            await wait(lambda: _grid_pids(app, "web2", late) == e2b.pids(), "the new engine on web2")
            keys = app.grid._order
            assert keys.index("h:web2") < keys.index(f"e:web2|{late}"), "under its host"
    try:
        asyncio_run(body())
    finally:
        session.close()


@needs_ssh
def test_an_outage_keeps_its_start_through_retries_and_a_good_connection_resets_the_backoff(lab, monkeypatch):
    """A host's link against a real sshd that goes away and comes back, the waits between tries made short:
    "unreachable since" is when the outage began, whatever the retries; once the link is up again, the
    next outage starts from the shortest wait (a host that flaps is not left behind a 30 s wait)."""
    from oxtui.fleet import link as fleet_link
    from oxtui.fleet.fleetfile import load
    from oxtui.fleet.session import host_line
    monkeypatch.setattr(fleet_link, "BACKOFF", (0.05, 0.1, 0.2, 0.4))
    web = lab.add("web")
    link = fleet_link.HostLink(next(h for h in load(lab.fleet) if h.name == "web"))
    runner = threading.Thread(target=link.run_forever, daemon=True)
    runner.start()
    try:
        wait_until(lambda: link.state == "up", 30, 0.02, "the link up")
        web.stop()
        wait_until(lambda: link.tries >= 2, 30, 0.005, "two failed tries")
        since = link.since
        wait_until(lambda: link.tries >= 4, 30, 0.005, "four failed tries")
        assert link.since == since, "one outage, one start, however many tries"
        line = host_line(SimpleNamespace(link=link))       # the host's details line
        assert line.startswith(f"unreachable since {time.strftime('%H:%M:%S', time.localtime(since))} (")
        web.start()
        wait_until(lambda: link.state == "up", 30, 0.02, "the link up again")
        assert (link.tries, link.since) == (0, None), "the next outage's first wait is the shortest"
    finally:
        link.close()
        runner.join(10)
        web.stop()


@pytest.mark.slow
def test_a_host_that_drops_comes_back_and_a_stalled_host_holds_up_no_other(lab, engines):
    from oxtui.tui.fleet import FleetApp
    web1, web2 = lab.add("web1"), lab.add("web2")
    slow = lab.add("slow", delay=0.3)
    e1, e2, e3 = (engines(h, "shop") for h in (web1, web2, slow))
    o1, o2, o3 = (e.oxfile.resolve() for e in (e1, e2, e3))
    session = _session(lab, ["web1", "web2", "slow"])

    async def body() -> None:
        app = FleetApp(session)
        async with app.run_test(size=(140, 48)) as pilot:
            wait = lambda pred, what, t=60: await_until(pred, t, sleep=pilot.pause, what=what)
            await wait(lambda: all(_grid_pids(app, h, o) == e.pids() for h, o, e in
                                   (("web1", o1, e1), ("web2", o2, e2), ("slow", o3, e3))), "every host's pids")
            slow_link = session.host("slow").link
            await wait(lambda: slow_link.rtt is not None, "a round trip to slow")
            assert slow_link.rtt >= 0.6, "300 ms each way through the relay"
            await wait(lambda: app.grid.rows_by_key["h:slow"].cells[2].endswith("ms"), "slow's round trip shown")

            # web2 goes away: its row says since when and when it is tried again; web1 goes on
            web2.stop()
            # the link is unreachable between tries and briefly connecting during one: wait for a row drawn
            # between tries, which must say both that it is down and when it is tried again
            await wait(lambda: app.grid.rows_by_key.get("h:web2") and app.grid.rows_by_key["h:web2"].state == "down"
                       and app.grid.rows_by_key["h:web2"].cells[10].startswith("retry in"), "web2 shown unreachable", 20)
            assert app.grid.rows_by_key["h:web2"].cells[2] == "down"
            assert not any(k.startswith("web2|") for k in app.grid.rows_by_key), "no stale rows of a lost host"
            assert "2/3 hosts up" in str(app.header.render())
            await _select(pilot, app, "h:web2")
            await wait(lambda: "retrying in" in str(app.info.render()), "web2's next try in its details", 10)
            assert "unreachable since" in str(app.info.render())
            old1 = e1.pids()
            await _select(pilot, app, f"web1|{o1}|w:app:1:")
            await pilot.press("k")
            await wait(lambda: _grid_pids(app, "web1", o1).get(1) not in (None, old1[1]), "web1 still acts and shows")

            # the slow host's link stalls (nothing flows, nothing closes): web1 still acts and shows at once
            slow.relay.flowing.clear()
            try:
                old1 = e1.pids()
                await _select(pilot, app, f"web1|{o1}|w:app:0:")
                await pilot.press("k")
                await wait(lambda: _grid_pids(app, "web1", o1).get(0) not in (None, old1[0]),
                           "web1 acts while slow is stalled", 15)
            finally:
                slow.relay.flowing.set()

            # web2 comes back: the link reconnects by itself and its workers return
            web2.start()
            await wait(lambda: _grid_pids(app, "web2", o2) == e2.pids(), "web2 back with its workers", 60)
            assert app.grid.rows_by_key["h:web2"].state == "up"
            assert "3/3 hosts up" in str(app.header.render())
    try:
        asyncio_run(body())
    finally:
        session.close()


@needs_ssh
@pytest.mark.slow
def test_rows_below_the_screen_keep_their_place(lab, engines):
    """More workers than the screen shows: rows off screen are reused as they were shown (model.build_rows'
    window), and must stay the same rows, under the same host, refresh after refresh."""
    from oxtui.tui.fleet import FleetApp
    hosts = [lab.add("web1"), lab.add("web2")]
    eps = [engines(h, "many", instances=24, oxfile='[processes.app]\ncommand = "sleep 600"\ninstances = 24\n')
           for h in hosts]
    session = _session(lab, ["web1", "web2"])

    async def body() -> None:
        app = FleetApp(session)
        async with app.run_test(size=(120, 40)) as pilot:
            await await_until(lambda: all(_grid_pids(app, h.name, ep.oxfile.resolve()) == ep.pids()
                                          for h, ep in zip(hosts, eps, strict=True)), 30, sleep=pilot.pause,
                              what="48 workers with their pids")
            order = list(app.grid._order)
            assert len(order) == 2 * (1 + 1 + 1 + 24)
            assert all(k.count("|") in (0, 1, 2) for k in order), "one host and engine per key"
            for _ in range(30):               # three seconds of refreshes
                await pilot.pause(0.1)
                assert app.grid._order == order
            assert _grid_pids(app, "web2", eps[1].oxfile.resolve()) == eps[1].pids()
    try:
        asyncio_run(body())
    finally:
        session.close()


def asyncio_run(coro) -> None:
    import asyncio
    asyncio.run(asyncio.wait_for(coro, 240))


# ---- what crosses the link -------------------------------------------------------------------------

values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=4),
                      max_leaves=15)
worker = st.fixed_dictionaries({"instance": st.integers(0, 5), "role": st.sampled_from([None, "surge", "canary"]),
                                "pid": st.none() | st.integers(1, 99999), "state": st.sampled_from(["running", "exited"]),
                                "extra": values})
process = st.fixed_dictionaries({"name": st.sampled_from(["api", "web", "jobs"]), "instances": st.integers(0, 6),
                                 "workers": st.lists(worker, max_size=5, unique_by=lambda w: (w["instance"], w["role"])),
                                 "extra": values})
snapshot = st.fixed_dictionaries({"engine_pid": st.integers(1, 9999), "engine": values,
                                  "processes": st.lists(process, max_size=3, unique_by=lambda p: p["name"])})


@settings(max_examples=100, deadline=None)     # 300 took 12 s of CPU for a pure function
@given(snapshot, snapshot)
def test_a_snapshot_rebuilt_from_differences_is_the_snapshot(a, b):
    assert delta.unkeyed(delta.keyed(a)) == a
    ka, kb = delta.keyed(a), delta.keyed(b)
    assert delta.patch(ka, delta.diff(ka, kb)) == kb
    assert delta.unkeyed(delta.patch(ka, delta.diff(ka, kb))) == b


def test_one_changed_worker_sends_that_worker_s_change_only():
    snap = {"engine_pid": 1, "engine": {"cpu_percent": 1.0},
            "processes": [{"name": "api", "instances": 64, "workers": [
                {"instance": i, "role": None, "pid": 1000 + i, "cpu_percent": 0.5, "rss_bytes": 40_000_000}
                for i in range(64)]}]}
    changed = json.loads(json.dumps(snap))
    changed["processes"][0]["workers"][7]["cpu_percent"] = 3.5
    patch = delta.diff(delta.keyed(snap), delta.keyed(changed))
    assert patch == {"processes": {"api": {"workers": {"7:": {"cpu_percent": 3.5}}}}}
    assert len(json.dumps(patch)) < len(json.dumps(snap)) / 50
    assert delta.diff(delta.keyed(snap), delta.keyed(snap)) == {}


def test_the_bridge_sends_a_snapshot_once_then_only_differences(tmp_path, engine_process):
    """`oxtui _bridge` itself (what ssh runs on each host), on its stdin and stdout, watching a real engine:
    the whole snapshot crosses once; a scale up then crosses as the new worker's difference alone."""
    import queue
    ep = engine_process(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\ninstances = 2\n'))
    ep.wait_running("app", 2)
    bridge = subprocess.Popen([sys.executable, "-m", "oxtui", "_bridge"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    lines: queue.Queue[dict] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(raw)) for raw in bridge.stdout], daemon=True).start()
    try:
        assert lines.get(timeout=30)["bridge"] == 1
        bridge.stdin.write(json.dumps({"id": 1, "watch": str(ep.oxfile)}).encode() + b"\n")
        bridge.stdin.flush()
        first = lines.get(timeout=30)
        while "batches" in first:                   # its log lines may come first
            first = lines.get(timeout=30)
        assert set(first["snapshot"]["processes"]["app"]["workers"]) >= {"0:", "1:"}
        assert ep.cli("scale", "app", "3").returncode == 0
        later: list[dict] = []

        def the_new_worker_arrived() -> bool:
            while not lines.empty():
                later.append(lines.get())
            return any("2:" in m.get("delta", {}).get("processes", {}).get("app", {}).get("workers", {})
                       for m in later)
        wait_until(the_new_worker_arrived, 30, 0.05, what="the new worker's difference")
        assert not [m for m in later if "snapshot" in m], "a snapshot crosses once"
        biggest = max(len(json.dumps(m)) for m in later if "delta" in m)
        assert biggest < len(json.dumps(first)), "a difference is smaller than the snapshot"
    finally:
        bridge.stdin.close()
        assert bridge.wait(30) == 0, "the bridge ends with its stdin"


def test_figures_alone_may_wait_but_anything_else_is_news():
    assert delta.only_metrics({"processes": {"api": {"workers": {"3:": {"cpu_percent": 2.0, "rss_bytes": 1}}}},
                               "engine": {"uptime_s": 10.0}})
    assert not delta.only_metrics({"processes": {"api": {"workers": {"3:": {"cpu_percent": 2.0, "state": "exited"}}}}})
    assert not delta.only_metrics({"processes": {"api": {"workers": {"4:": {"instance": 4, "pid": 5}}}}})
    assert not delta.only_metrics({"processes": {"api": {"workers": {delta.DELETED: ["4:"]}}}})


def test_a_host_tried_again_after_a_drop_still_reads_down():
    from oxtui.fleet.fleetfile import Host
    from oxtui.fleet.session import FleetHost, host_line
    from oxtui.tui.fleet import host_row
    h = FleetHost(Host("web2", "web2.example"))
    assert host_row(h, []).cells[2] == "…" and host_line(h) == "connecting…", "a first connect is not a failure"
    h.link._down("ssh: connect to host web2.example port 22: Connection refused")
    h.link.retry_at = time.time() + 8
    row, line = host_row(h, []), host_line(h)
    assert (row.state, row.cells[2], row.cells[10]) == ("down", "down", "retry in 8 s")
    assert line.startswith("unreachable since ") and "retrying in 8 s: ssh: connect to host" in line
    h.link.state = "connecting"      # what run_forever sets while it tries again
    row, line = host_row(h, []), host_line(h)
    assert (row.state, row.cells[2], row.cells[10]) == ("down", "down", "connecting…")
    assert line.startswith("unreachable since ") and ", connecting again…: ssh: connect to host" in line


@needs_ssh
def test_root_reaches_the_engines_of_other_users_that_ls_lists(lab, engines):
    """As root, `ls` lists another user's engine; `status`, `scale` and `upgrade` with -c reach it (its socket
    is in that user's folder, which root may read), as README says."""
    host = lab.add("web1")
    ep = engines(host, "shop")
    env = {k: v for k, v in os.environ.items() if k != "OXTUI_RUNTIME_DIR"}     # root's own folder: /run/oxtui

    def as_root(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "oxtui", *args], env=env, capture_output=True, text=True,
                              timeout=90, stdin=subprocess.DEVNULL, check=False)
    listed = [e for e in json.loads(as_root("ls", "--json").stdout) if e["oxfile"] == str(ep.oxfile)]
    assert len(listed) == 1 and listed[0]["answering"], listed
    r = as_root("status", "--json", "-c", str(ep.oxfile))
    assert r.returncode == 0, r.stderr
    snap = json.loads(r.stdout)
    assert {w["instance"]: w["pid"] for w in snap["processes"][0]["workers"]} == ep.pids()
    r = as_root("scale", "app", "3", "-c", str(ep.oxfile))
    assert r.returncode == 0, r.stderr
    ep.wait_running("app", 3)
    before = ep.pids()
    r = as_root("upgrade", "-c", str(ep.oxfile))
    assert r.returncode == 0, r.stdout + r.stderr
    assert ep.status()["engine_pid"] != snap["engine_pid"] and ep.pids() == before, "upgraded, every app kept"
    assert psutil.Process(ep.status()["engine_pid"]).uids().real == host.uid, "the engine stays the user's"


@needs_ssh
@pytest.mark.slow
def test_deploy_goes_host_after_host_and_stops_at_the_first_failed_build(lab, tmp_path):
    """`oxtui deploy v2 --fleet`: each host makes its release from git over its own engine, one after the
    other; the second host's build fails, so the third is not touched, and the summary says who runs what."""
    from test_deploy import make_source, site
    hosts = [lab.add(f"web{i}") for i in (1, 2, 3)]
    eps: list[HostEngine] = []
    try:
        for i, h in enumerate(hosts):
            folder = h.home / "shop"
            folder.mkdir()
            source = make_source(folder / "src")
            oxfile = site(folder, free_port(), source)
            if i == 1:      # web2's build of v2 fails
                oxfile.write_text(oxfile.read_text().replace(
                    'build = "sh build.sh"', 'build = "grep -q v2 release.txt && {{ echo no compiler; exit 1; }} || true"'
                    .replace("{{", "{").replace("}}", "}")))
            h.give(folder)
            r = h.ssh(OXTUI, "deploy", "v1", "-c", str(oxfile))
            assert r.returncode == 0, r.stdout + r.stderr
            eps.append(HostEngine(h, oxfile, None))
            eps[-1].wait_running("web", 2)
        before = [{w["release"] for w in ep.workers("web")} for ep in eps]
        r = fleet_cli(lab, "deploy", "v2", "--fleet")
        assert r.returncode == 1, r.stdout + r.stderr
        assert "new release on: web1; old release on: web2, web3 (stopped at web2)" in r.stdout, r.stdout
        assert "web2: build failed" in r.stderr and "no compiler" in r.stderr, r.stderr
        assert "web3: deploy" not in r.stdout, "nothing is tried after the host that failed"
        after = [{w["release"] for w in ep.workers("web")} for ep in eps]
        assert after[0] != before[0] and all(name.endswith(git_short(hosts[0], "v2")) for name in after[0])
        assert after[1:] == before[1:], "web2 and web3 still run v1"
    finally:
        for ep in eps:
            ep.stop()


def git_short(host, ref: str) -> str:
    import subprocess as sp
    return sp.run(["git", "-c", "safe.directory=*", "-C", str(host.home / "shop" / "src"), "rev-parse", "--short=7", ref],
                  capture_output=True,
                  text=True, check=True).stdout.strip()


def test_the_bridge_sends_a_change_when_its_engine_pushes_it_never_at_a_poll(tmp_path, engine_process, monkeypatch):
    """In-process: `oxtui _bridge`'s Bridge on two real pipes, watching a real engine. Its log interval is
    put off for an hour, so a bridge that polled would send nothing within the test; one woken by the
    engine's push sends the snapshot, then a scale's difference as soon as it happens."""
    from oxtui.fleet import bridge
    monkeypatch.setattr(bridge, "LOGS_EVERY", 3600)
    ep = engine_process(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 600"\n'))
    ep.wait_running("app", 1)
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    b = bridge.Bridge(os.fdopen(w_out, "wb"))
    serving = threading.Thread(target=b.serve, args=(os.fdopen(r_in, "rb"),), daemon=True)
    serving.start()
    out = os.fdopen(r_out, "rb")
    lines: list[dict[str, Any]] = []
    threading.Thread(target=lambda: lines.extend(json.loads(line) for line in out), daemon=True).start()
    try:
        os.write(w_in, json.dumps({"id": 1, "watch": str(ep.oxfile.resolve())}).encode() + b"\n")
        snap = wait_until(lambda: next((m["snapshot"] for m in lines if "snapshot" in m), None), 10,
                          what="the first snapshot")
        assert "app" in snap["processes"]
        assert ep.cli("scale", "app", "2").returncode == 0
        wait_until(lambda: any("delta" in m and "app" in json.dumps(m["delta"]) for m in lines), 10,
                   what="the scale's difference, pushed")
    finally:
        os.close(w_in)                    # the link's end: the bridge ends its watch and returns
        serving.join(10)
    assert not serving.is_alive()


def test_the_bridge_holds_figures_alone_and_sends_them_with_the_next_change(tmp_path, engine_process, monkeypatch):
    """CPU and memory figures alone wait for WATCH_EVERY (put off for an hour here); a change of state goes
    at once and carries them along."""
    from oxtui.fleet import bridge
    monkeypatch.setattr(bridge, "WATCH_EVERY", 3600)
    grow = f"{sys.executable} -c 'import time; time.sleep(1); a = bytes(range(256)) * 120_000; time.sleep(600)'"
    ep = engine_process(write_oxfile(tmp_path, f'[processes.app]\ncommand = "{grow}"\n'))
    ep.wait_running("app", 1)
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    b = bridge.Bridge(os.fdopen(w_out, "wb"))
    serving = threading.Thread(target=b.serve, args=(os.fdopen(r_in, "rb"),), daemon=True)
    serving.start()
    lines: list[dict[str, Any]] = []
    threading.Thread(target=lambda: lines.extend(json.loads(line) for line in os.fdopen(r_out, "rb")),
                     daemon=True).start()
    try:
        os.write(w_in, json.dumps({"id": 1, "watch": str(ep.oxfile.resolve())}).encode() + b"\n")
        wait_until(lambda: any("snapshot" in m for m in lines), 10, what="the first snapshot")
        wait_until(lambda: (ep.workers("app")[0].get("rss_bytes") or 0) > 30_000_000, 15, 0.2,
                   what="the worker's 30 MB in the engine's figures")
        assert ep.cli("scale", "app", "2").returncode == 0
        deltas = wait_until(lambda: (d := [m["delta"] for m in lines if "delta" in m])
                            and "instances" in json.dumps(d) and d, 10, what="the scale's difference")
        assert all(not delta.only_metrics(d) for d in deltas), f"figures alone went at once: {deltas}"
        assert any(w.get("rss_bytes", 0) > 30_000_000 for d in deltas
                   for w in (d.get("processes", {}).get("app", {}).get("workers") or {}).values()
                   if isinstance(w, dict)), "the held figures rode along with the change"
    finally:
        os.close(w_in)
        serving.join(10)
    assert not serving.is_alive()
