"""`oxtui startup` under a real systemd (tests/realsystemd.py): the unit it writes, driven by systemd
itself through boot, status, reload under load, an engine crash and a hung engine (both survived: the
keeper starts a new engine, ExitType=cgroup keeps the unit active), a killed keeper, stop, reboots and
removal, as a system unit and as a --user unit of a lingering user.

Everything runs inside the machine's own network (127.0.0.1 is the container's), so the ports are
fixed and the load generator runs in there too (tests/loadrun.py).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from pathlib import Path

import pytest
from conftest import APPS, write_oxfile
from realsystemd import PY, ROOT, Machine, unavailable

PORT = 8080


@pytest.fixture
def machine(tmp_path: Path):
    why = unavailable()
    if why:
        pytest.skip(f"real systemd: {why}")
    m = Machine(f"oxt-{uuid.uuid4().hex[:8]}", tmp_path / "rsd", [ROOT, tmp_path])
    m.start()
    try:
        yield m
    finally:
        m.destroy()


def web_oxfile(folder: Path, schedule: bool = True, release: str = "slowok r1") -> Path:
    """Two instances of tests/apps/app.py that take 1.5 s to boot, and a 2 s task every 3 s."""
    (folder / "marks").mkdir(exist_ok=True)
    (folder / "release.txt").write_text(release)
    task = '''
        [processes.backup]
        command = "sleep 2"
        restart = "never"
        [processes.backup.schedule]
        every = "3s"
    ''' if schedule else ""
    return write_oxfile(folder, f'''
        [processes.web]
        command = "{PY} {APPS / 'app.py'}"
        instances = 2
        listen = "127.0.0.1:{PORT}"
        env = {{ READY_MARK_DIR = "{folder / 'marks'}" }}
        stop_timeout = 5
        [processes.web.ready]
        log = "^ready"
        timeout = 10
        [processes.web.reload]
        min_ready = 0.2
    ''' + task)


def oxtui(m: Machine, *args: str, user: str | None = None, timeout: float = 120):
    return m.run(PY, "-m", "oxtui", *args, user=user, timeout=timeout)


def pids(m: Machine, oxfile: Path, user: str | None = None) -> list[int]:
    r = oxtui(m, "status", "--json", "-c", str(oxfile), user=user)
    assert r.returncode == 0, r.stderr
    web = next(p for p in json.loads(r.stdout)["processes"] if p["name"] == "web")
    return sorted(w["pid"] for w in web["workers"] if w["state"] == "running" and not w["role"])


def alive(m: Machine, pid: int) -> bool:
    return m.run("kill", "-0", str(pid)).returncode == 0


def get(m: Machine) -> int:
    r = m.run(PY, "-c", f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{PORT}/', timeout=5).status)")
    return int(r.stdout.strip() or 0)


@pytest.mark.slow
def test_a_system_unit_through_boot_reload_crash_watchdog_stop_and_removal(machine, tmp_path):
    m = machine
    oxfile = web_oxfile(tmp_path)
    unit = f"oxtui-{tmp_path.name}.service"

    # startup: active only once both instances are ready (each takes 1.5 s to boot)
    r = oxtui(m, "startup", str(oxfile))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is enabled and started" in r.stdout
    props = m.show(unit, "ActiveState", "ActiveEnterTimestampMonotonic", "StatusText", "MainPID", "UnitFileState")
    assert props["ActiveState"] == "active" and props["UnitFileState"] == "enabled"
    marks = [float(p.read_text()) for p in (tmp_path / "marks").glob("ready-*")]
    assert len(marks) == 2, marks
    assert max(marks) <= int(props["ActiveEnterTimestampMonotonic"]) / 1e6, "active before the workers were ready"
    assert props["StatusText"].startswith("web 2/2 ready"), props
    assert 'Status: "web 2/2 ready' in m.status(unit)

    # a scheduled task's runs never show the unit as reloading; its STATUS says it runs
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline:
        p = m.show(unit, "ActiveState", "StatusText")
        seen.append((p["ActiveState"], p["StatusText"]))
    assert {state for state, _ in seen} == {"active"}, seen
    assert any("backup running" in text for _, text in seen), seen
    assert any("backup done" in text for _, text in seen), seen

    # systemctl reload under load, issued while the backup runs: every pid replaced, no request lost
    before = pids(m, oxfile)
    m.wait(lambda: "backup running" in m.show(unit, "StatusText")["StatusText"], 10, "a backup run")
    stop = tmp_path / "stop-load"
    load = m.popen(PY, str(ROOT / "tests" / "loadrun.py"), str(PORT), str(stop), "60")
    try:
        time.sleep(1.0)
        r = m.run("systemctl", "reload", unit, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        time.sleep(0.5)
    finally:
        stop.touch()
        out, err = load.communicate(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failures"] == [] and result["ok"] > 100, (result["ok"], result["failures"][:5], err)
    after = pids(m, oxfile)
    assert len(after) == 2 and not set(before) & set(after), (before, after)
    journal = m.journal(unit)
    assert journal.count("reload: release 2: replacing 2 instance(s)") == 1, "each step once in the journal"
    assert "web: release 2: replacing" not in journal, "ExecReload's client repeats the engine's steps"
    assert "reload: done: 2 instance(s) replaced" in journal

    # SIGKILL of the engine, the main process, under load: its keeper starts a new engine that adopts
    # every worker and names itself MAINPID; with ExitType=cgroup the unit never leaves active
    def engine_pid() -> int:
        r = oxtui(m, "status", "--json", "-c", str(oxfile))
        return json.loads(r.stdout)["engine_pid"] if r.returncode == 0 else 0
    engine = engine_pid()
    assert m.show(unit, "MainPID")["MainPID"] == str(engine) and "ExitType=cgroup" in m.run(
        "systemctl", "cat", unit).stdout
    workers = pids(m, oxfile)
    stop = tmp_path / "stop-load-2"
    load = m.popen(PY, str(ROOT / "tests" / "loadrun.py"), str(PORT), str(stop), "60")
    states: list[str] = []
    try:
        time.sleep(1.0)
        m.run("kill", "-9", str(engine), check=True)
        m.wait(lambda: states.append(m.show(unit, "ActiveState")["ActiveState"]) or engine_pid() not in (0, engine),
               20, "a new engine")
        time.sleep(1.0)
    finally:
        stop.touch()
        out, err = load.communicate(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failures"] == [] and result["ok"] > 100, (result["ok"], result["failures"][:5], err)
    assert set(states) == {"active"}, states
    assert pids(m, oxfile) == workers, "every worker kept its pid"
    props = m.show(unit, "MainPID", "NRestarts", "ActiveState")
    assert props == {"MainPID": str(engine_pid()), "NRestarts": "0", "ActiveState": "active"}, props
    # (systemd, its parent, may reap it before the keeper can read how it ended: "no word: SIGKILL or a crash")
    said = m.journal(unit)
    assert f"the engine (pid {engine}) died (SIGKILL)" in said or \
        f"the engine (pid {engine}) died (no word: SIGKILL or a crash)" in said, said[-3000:]

    # the watchdog: an engine whose loop is stuck (SIGSTOP) stops beating; its keeper kills it at 3/4 of
    # WatchdogSec and starts a new one, before systemd's watchdog would fail the unit: no app restarts
    m.sh(f"mkdir -p /etc/systemd/system/{unit}.d && printf '[Service]\\nWatchdogSec=3\\n' "
         f"> /etc/systemd/system/{unit}.d/watchdog.conf && systemctl daemon-reload", check=True)
    m.run("systemctl", "restart", unit, check=True, timeout=60)
    assert m.show(unit, "WatchdogUSec")["WatchdogUSec"] == "3s"
    stuck = engine_pid()
    workers = pids(m, oxfile)
    time.sleep(5)            # a healthy engine beats: nothing happens
    assert engine_pid() == stuck and m.show(unit, "MainPID")["MainPID"] == str(stuck)
    m.run("kill", "-STOP", str(stuck), check=True)
    m.wait(lambda: engine_pid() not in (0, stuck), 30, "the keeper to replace the stuck engine")
    assert "has not answered for" in m.journal(unit) and "Watchdog timeout" not in m.journal(unit)
    m.wait(lambda: not alive(m, stuck), 20, "the stuck engine gone")
    assert pids(m, oxfile) == workers and get(m) == 200
    props = m.show(unit, "MainPID", "NRestarts", "ActiveState")
    assert props == {"MainPID": str(engine_pid()), "NRestarts": "0", "ActiveState": "active"}, props

    # SIGKILL of the keeper itself: its workers die with it (no orphan), and systemd starts it all again
    r = oxtui(m, "status", "--json", "-c", str(oxfile))
    keeper, main = json.loads(r.stdout)["engine"]["keeper_pid"], m.show(unit, "MainPID")["MainPID"]
    m.run("kill", "-9", str(keeper), check=True)
    m.wait(lambda: (p := m.show(unit, "MainPID", "ActiveState", "StatusText"))["MainPID"] not in ("0", main)
           and p["ActiveState"] == "active" and p["StatusText"].startswith("web 2/2 ready"), 40, "a new engine")
    assert not [pid for pid in workers if alive(m, pid)], "a worker of the killed keeper is still alive"
    assert m.show(unit, "NRestarts")["NRestarts"] == "1"

    # systemctl stop: nothing left in the unit's cgroup
    cgroup = m.show(unit, "ControlGroup")["ControlGroup"]
    workers = pids(m, oxfile)
    m.run("systemctl", "stop", unit, check=True, timeout=60)
    assert m.show(unit, "ActiveState")["ActiveState"] == "inactive"
    left = m.sh(f"cat /sys/fs/cgroup{cgroup}/cgroup.procs 2>/dev/null").stdout.split()
    assert left == [], left
    assert not [pid for pid in workers if alive(m, pid)]
    assert "stopping every process gracefully" in m.journal(unit)

    # startup --remove: stopped, disabled and gone
    r = oxtui(m, "startup", "--remove", str(oxfile))
    assert r.returncode == 0, r.stderr
    assert m.run("test", "-e", f"/etc/systemd/system/{unit}").returncode != 0
    assert m.show(unit, "LoadState")["LoadState"] == "not-found"


@pytest.mark.slow
def test_an_enabled_unit_comes_back_after_a_clean_reboot_and_a_power_cut(machine, tmp_path):
    m = machine
    oxfile = web_oxfile(tmp_path, schedule=False, release="ok r1")
    unit = f"oxtui-{tmp_path.name}.service"
    assert oxtui(m, "startup", str(oxfile)).returncode == 0
    boot = m.run("cat", "/proc/sys/kernel/random/boot_id").stdout
    for hard in (False, True):
        m.reboot(hard=hard)
        assert m.run("cat", "/proc/sys/kernel/random/boot_id").stdout != boot
        m.wait(lambda: m.show(unit, "ActiveState")["ActiveState"] == "active", 60, f"active after reboot (hard={hard})")
        assert m.show(unit, "StatusText")["StatusText"] == "web 2/2 ready"
        assert get(m) == 200
        assert len(pids(m, oxfile)) == 2


@pytest.mark.slow
def test_a_failed_start_is_reported_and_leaves_nothing_looping(machine, tmp_path):
    m = machine
    oxfile = web_oxfile(tmp_path, schedule=False, release="ok r1")
    unit = f"oxtui-{tmp_path.name}.service"
    # the port is taken by another program
    m.run("systemd-run", "--unit", "blocker", PY, "-m", "http.server", "--bind", "127.0.0.1", str(PORT), check=True)
    m.wait(lambda: m.run(PY, "-c", f"import socket; socket.create_connection(('127.0.0.1', {PORT}))").returncode == 0,
           10, "the blocker listening")
    r = oxtui(m, "startup", str(oxfile))
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"systemd could not start {unit}" in r.stderr
    assert f"127.0.0.1:{PORT} is already in use" in r.stderr, "the journal's reason is shown"
    assert f"journalctl -u {unit}" in r.stderr
    time.sleep(3)          # RestartSec=2: a unit left enabled would be starting again by now
    props = m.show(unit, "ActiveState", "UnitFileState", "NRestarts")
    assert props["ActiveState"] in ("inactive", "failed") and props["UnitFileState"] == "disabled", props
    m.run("systemctl", "stop", "blocker", check=True)

    # with the port free it starts; a broken oxfile later is not retried in a loop (exit 2)
    r = oxtui(m, "startup", str(oxfile))
    assert r.returncode == 0, r.stdout + r.stderr
    oxfile.write_text(oxfile.read_text() + "\n[processes.oops]\ncomand = 'typo'\n")
    assert m.run("systemctl", "restart", unit, timeout=60).returncode != 0
    time.sleep(3)
    props = m.show(unit, "ActiveState", "NRestarts", "Result")
    assert props["ActiveState"] == "failed" and props["NRestarts"] == "0", props
    assert "unknown key; did you mean 'command'?" in m.journal(unit)


def test_startup_says_which_app_could_not_start(machine, tmp_path):
    """The engine is up (active), but an app is not: exit 1 with its reason, each distinct reason once."""
    m = machine
    (tmp_path / "start.sh").write_text("#!/bin/sh\nexec sleep 60\n")       # not executable
    oxfile = write_oxfile(tmp_path, f'''
        [processes.web]
        command = "{PY} -c 'import socket; socket.create_server((\\"127.0.0.1\\", 22)); print(\\"never\\")'"
        instances = 3
        max_restarts = 2
        [processes.script]
        command = "./start.sh"
        max_restarts = 2
        [processes.fine]
        command = "sleep 60"
    ''')
    unit = f"oxtui-{tmp_path.name}.service"
    r = oxtui(m, "startup", str(oxfile))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "is enabled and started" in r.stdout
    lines = [line for line in r.stderr.splitlines() if line.startswith("oxtui startup: web")]
    assert len(lines) == 1, r.stderr
    assert "web.0-2 (3 instances)" in lines[0] and "Address already in use" in lines[0], lines
    assert "cannot run ./start.sh: permission denied (make it executable: chmod +x ./start.sh)" in r.stderr
    assert m.show(unit, "ActiveState")["ActiveState"] == "active", "the engine runs the rest"


def test_startup_notices_an_engine_started_by_oxtui_up(machine, tmp_path):
    m = machine
    oxfile = web_oxfile(tmp_path, schedule=False, release="ok r1")
    unit = f"oxtui-{tmp_path.name}.service"
    assert oxtui(m, "up", str(oxfile)).returncode == 0
    running = pids(m, oxfile)
    r = oxtui(m, "startup", str(oxfile))
    assert r.returncode == 0, r.stderr
    assert "an engine already runs" in r.stdout and "enabled for the next boot but not started" in r.stdout
    props = m.show(unit, "ActiveState", "UnitFileState")
    assert props == {"ActiveState": "inactive", "UnitFileState": "enabled"}, props
    assert pids(m, oxfile) == running, "the running engine was left alone"
    assert oxtui(m, "down", str(oxfile)).returncode == 0
    m.run("systemctl", "start", unit, check=True, timeout=60)
    assert m.show(unit, "StatusText")["StatusText"] == "web 2/2 ready"


@pytest.mark.slow
def test_a_user_unit_of_a_lingering_user(machine, tmp_path):
    m = machine
    user = "oxu"
    # a user of the container only (its /etc is in the overlay); the interpreter lives under /root here,
    # so the container's copy of that path is opened to others
    m.sh(f"useradd -m -u 1500 {user} && loginctl enable-linger {user}", check=True)
    interpreter = Path(m.run(PY, "-c", "import os, sys; print(os.path.realpath(sys.executable))").stdout.strip())
    m.sh(" && ".join(f"chmod o+rx {p}" for p in [*reversed(interpreter.parents), *ROOT.parents, ROOT]
                     if str(p) != "/"), check=True)
    m.wait(lambda: m.run("test", "-S", "/run/user/1500/bus").returncode == 0, 30, "the user manager")
    app = Path(f"/home/{user}/app")
    text = web_oxfile(tmp_path, schedule=False, release="ok r1").read_text().replace(str(tmp_path), str(app))
    m.run("sh", "-c", f"mkdir -p {app}/marks && printf '%s' \"$0\" > {app}/oxfile.toml && "
          f"echo 'ok r1' > {app}/release.txt && chown -R {user}: {app}", text, check=True)
    oxfile = app / "oxfile.toml"
    unit = "oxtui-app.service"
    r = oxtui(m, "startup", "--user", str(oxfile), user=user)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is enabled and started" in r.stdout
    unit_text = m.run("cat", f"/home/{user}/.config/systemd/user/{unit}", check=True).stdout
    assert "network-online.target" not in unit_text, "a user manager has no network-online.target"
    props = m.show(unit, "ActiveState", "StatusText", user=user)
    assert props == {"ActiveState": "active", "StatusText": "web 2/2 ready"}, props
    before = pids(m, oxfile, user=user)
    assert m.run("ps", "-o", "user=", "-p", str(before[0])).stdout.strip() == user
    assert m.run("systemctl", "--user", "reload", unit, user=user, timeout=90).returncode == 0
    after = pids(m, oxfile, user=user)
    assert len(after) == 2 and not set(before) & set(after)

    m.reboot()          # lingering: the user manager and its enabled units start at boot
    m.wait(lambda: m.run("test", "-S", "/run/user/1500/bus").returncode == 0, 60, "the user manager after reboot")
    m.wait(lambda: m.show(unit, "ActiveState", user=user)["ActiveState"] == "active", 60, "the user unit back")
    assert get(m) == 200
    m.run("systemctl", "--user", "stop", unit, user=user, check=True, timeout=60)
    assert m.show(unit, "ActiveState", user=user)["ActiveState"] == "inactive", \
        m.status(unit, user=user) + m.run("journalctl", "-b", "--no-pager", "-n", "60").stdout[-6000:]
    r = oxtui(m, "startup", "--user", "--remove", str(oxfile), user=user)
    assert r.returncode == 0, r.stderr
    assert m.run("test", "-e", f"/home/{user}/.config/systemd/user/{unit}").returncode != 0


def test_exported_units_run_in_order_with_their_environment(machine, tmp_path):
    """`oxtui export systemd` for a host without oxtui: the units, loaded by systemd, run the migration
    first, start the web instances only once it succeeded, give them their environment as written,
    and a failed migration starts no web instance."""
    m = machine
    flag = tmp_path / "fail"
    oxfile = write_oxfile(tmp_path, f'''
        [processes.migrate]
        command = "sh -c 'sleep 1 && test ! -e {flag} && date +%s.%N > {tmp_path}/migrated'"
        restart = "never"
        [processes.web]
        command = "sh -c 'echo $GREETING; exec sleep 60'"
        instances = 2
        env = {{ GREETING = "hello world 100%" }}
        depends_on = {{ migrate = "completed_successfully" }}
    ''')
    units = tmp_path / "units"
    r = oxtui(m, "export", "systemd", str(oxfile), "-o", str(units))
    assert r.returncode == 0, r.stderr
    m.sh(f"cp {units}/* /etc/systemd/system/ && systemctl daemon-reload", check=True)
    r = m.run("systemctl", "start", "web.target", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "migrated").exists()
    done = int(m.show("migrate@0.service", "ExecMainExitTimestampMonotonic")["ExecMainExitTimestampMonotonic"])
    for i in (0, 1):
        p = m.show(f"web@{i}.service", "ActiveState", "ExecMainStartTimestampMonotonic", "Environment")
        assert p["ActiveState"] == "active", p
        assert int(p["ExecMainStartTimestampMonotonic"]) >= done > 0, "web started before the migration ended"
        assert "GREETING=hello world 100%" in p["Environment"].replace('"', ""), p["Environment"]
    m.wait(lambda: "hello world 100%" in m.journal("web@0.service"), 10, "the greeting in the journal")

    # a failed migration: the web instances do not start
    m.run("systemctl", "stop", "web.target", "web@0.service", "web@1.service", "migrate.target", "migrate@0.service",
          check=True)
    m.run("systemctl", "reset-failed", check=False)
    flag.touch()
    m.run("systemctl", "start", "web.target", timeout=60)
    assert m.show("migrate@0.service", "ActiveState")["ActiveState"] == "failed"
    for i in (0, 1):
        assert m.show(f"web@{i}.service", "ActiveState")["ActiveState"] != "active", "started after a failed migration"
    assert "Dependency failed" in m.journal("web@0.service")


@pytest.mark.slow
def test_an_upgrade_under_systemd_keeps_the_unit_active_and_the_new_engine_is_its_main_process(machine, tmp_path):
    import threading

    from installs import OLD_VERSION, Install
    m = machine
    old = Install(tmp_path / "venv")
    py = str(old.python)
    oxfile = web_oxfile(tmp_path, schedule=False, release="ok r1")
    unit = f"oxtui-{tmp_path.name}.service"
    r = m.run(py, "-m", "oxtui", "startup", str(oxfile), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m.sh(f"mkdir -p /etc/systemd/system/{unit}.d && printf '[Service]\\nWatchdogSec=3\\n' "
         f"> /etc/systemd/system/{unit}.d/watchdog.conf && systemctl daemon-reload && systemctl restart {unit}",
         check=True, timeout=60)

    def status() -> dict:
        r = m.run(py, "-m", "oxtui", "status", "--json", "-c", str(oxfile))
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    before = status()
    assert before["engine"]["version"] == OLD_VERSION
    assert m.show(unit, "MainPID")["MainPID"] == str(before["engine_pid"])
    workers = pids(m, oxfile)
    states: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            states.append(m.show(unit, "ActiveState")["ActiveState"])
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        old.install_code_under_test()
        r = m.run(py, "-m", "oxtui", "upgrade", "-c", str(oxfile), timeout=120)
        time.sleep(1)
    finally:
        done.set()
        watcher.join(30)
    assert r.returncode == 0, r.stdout + r.stderr
    after = status()
    assert after["engine"]["version"] == "0.2.0" and after["engine_pid"] != before["engine_pid"]
    assert set(states) == {"active"}, f"the unit left active during the upgrade: {sorted(set(states))}"
    assert m.show(unit, "MainPID")["MainPID"] == str(after["engine_pid"]), "the new engine is the main process"
    assert pids(m, oxfile) == workers, "every worker kept its pid"
    assert after["engine"]["systemd"] and after["engine"]["unit"] == unit
    time.sleep(5)                       # WatchdogSec=3: fed by the new engine, or it would be restarted
    props = m.show(unit, "MainPID", "NRestarts", "ActiveState")
    assert props == {"MainPID": str(after["engine_pid"]), "NRestarts": "0", "ActiveState": "active"}, props
    assert "took over from pid" in m.journal(unit)
    r = m.run("systemctl", "reload", unit, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not set(pids(m, oxfile)) & set(workers), "systemctl reload replaced every worker"
    cgroup = m.show(unit, "ControlGroup")["ControlGroup"]
    m.run("systemctl", "stop", unit, check=True, timeout=60)
    assert m.show(unit, "ActiveState")["ActiveState"] == "inactive", m.journal(unit)[-3000:]
    assert m.sh(f"cat /sys/fs/cgroup{cgroup}/cgroup.procs 2>/dev/null").stdout.split() == []


def test_exported_schedules_tick_again_and_again(machine, tmp_path):
    """An exported `every` runs at every tick under systemd: a task's timer starts its oneshot
    instance again and again (it ran once when the timer pointed at a target that stays active), and a
    long-running process's timer restarts it."""
    m = machine
    oxfile = write_oxfile(tmp_path, f'''
        [processes.tick]
        command = "sh -c 'date +%s.%N >> {tmp_path}/ticks'"
        restart = "never"
        [processes.tick.schedule]
        every = "2s"
        [processes.long]
        command = "sh -c 'echo $$ >> {tmp_path}/longs; exec sleep 600'"
        [processes.long.schedule]
        every = "3s"
    ''')
    units = tmp_path / "units"
    r = oxtui(m, "export", "systemd", str(oxfile), "-o", str(units))
    assert r.returncode == 0, r.stderr
    m.sh(f"cp {units}/* /etc/systemd/system/ && systemctl daemon-reload", check=True)
    try:
        r = m.run("systemctl", "start", "tick.target", "long.target", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

        def count(name: str) -> int:
            f = tmp_path / name
            return len(f.read_text().split()) if f.exists() else 0
        m.wait(lambda: count("ticks") >= 3 and count("longs") >= 3, 20,
               "three runs of the 2 s task and two restarts of the 3 s process")
        assert m.show("tick.target", "ActiveState")["ActiveState"] == "active"
        times = [float(t) for t in (tmp_path / "ticks").read_text().split()]
        assert all(1.5 < b - a < 3.5 for a, b in itertools.pairwise(times)), f"not every 2 s: {times}"
    finally:
        m.run("systemctl", "stop", "tick@0.timer", "long-tick.timer", "tick.target", "long.target",
              "long@0.service", check=False, timeout=60)


def test_every_worker_line_is_a_journal_entry_with_its_process_instance_and_pid(machine, tmp_path):
    """Under systemd, `journalctl -u UNIT` shows the apps' lines as entries of their own (journald's native
    protocol): OXTUI_PROCESS/INSTANCE/PID/STREAM, stderr at priority 3, a JSON line at its own level."""
    m = machine
    (tmp_path / "say.sh").write_text('echo "out $OXTUI_INSTANCE"\necho "err $OXTUI_INSTANCE" >&2\n'
                                     'echo \'{"level":"error","msg":"json says error"}\'\n'
                                     'printf "two\\nlines\\n"\nexec sleep 600\n')
    oxfile = write_oxfile(tmp_path, f'''
        [logs]
        files = false                   # the journal only: `oxtui logs` reads it back once the engine is gone
        journald = true
        [processes.web]
        command = "sh {tmp_path / 'say.sh'}"
        instances = 2
    ''')
    unit = f"oxtui-{tmp_path.name}.service"
    r = oxtui(m, "startup", str(oxfile))
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        status = json.loads(oxtui(m, "status", "--json", "-c", str(oxfile)).stdout)
        web = {w["instance"]: w["pid"] for w in status["processes"][0]["workers"]}

        def entries(*match: str) -> list[dict]:
            r = m.run("journalctl", "-u", unit, "-o", "json", "--no-pager", *match)
            return [json.loads(line) for line in r.stdout.splitlines()]
        m.wait(lambda: len(entries("OXTUI_PROCESS=web")) >= 10, 20, "ten entries of web's lines")
        got = {(e["OXTUI_INSTANCE"], e["MESSAGE"]): e for e in entries("OXTUI_PROCESS=web")}
        for i in (0, 1):
            out, err = got[(str(i), f"out {i}")], got[(str(i), f"err {i}")]
            assert (out["PRIORITY"], out["OXTUI_STREAM"], err["PRIORITY"], err["OXTUI_STREAM"]) == \
                ("6", "stdout", "3", "stderr")
            assert out["OXTUI_PID"] == out["SYSLOG_PID"] == str(web[i]), (out, web)
            assert out["SYSLOG_IDENTIFIER"] == "web" and out["_SYSTEMD_UNIT"] == unit
            assert got[(str(i), '{"level":"error","msg":"json says error"}')]["PRIORITY"] == "3"
            assert (str(i), "two") in got and (str(i), "lines") in got, "a line is an entry"
        errors = {e["MESSAGE"] for e in entries("-p", "err", "OXTUI_PROCESS=web")}
        assert errors == {"err 0", "err 1", '{"level":"error","msg":"json says error"}'}, errors
        assert json.loads(oxtui(m, "status", "--json", "-c", str(oxfile)).stdout)["engine"]["journald"]["dropped"] == 0
        assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("web.log*")), "no file"
    finally:
        oxtui(m, "startup", "--remove", str(oxfile))
    r = oxtui(m, "logs", "web.1", "-n", "50", "-c", str(oxfile))
    assert r.returncode == 0 and "the journal" in r.stderr, r.stderr
    assert sorted(line.split(None, 4)[-1] for line in r.stdout.splitlines()) == \
        sorted(["out 1", "err 1", '{"level":"error","msg":"json says error"}', "two", "lines"]), r.stdout
    r = oxtui(m, "logs", "web", "--stderr", "-c", str(oxfile))
    assert sorted(line.split(None, 4)[-1] for line in r.stdout.splitlines()) == ["err 0", "err 1"], r.stdout
