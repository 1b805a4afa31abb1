"""oxtui as a service: systemd units that verify, the notify protocol spoken to a real datagram
socket (this test acts as systemd), and the journal getting engine events rather than every line."""

from __future__ import annotations

import configparser
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import PY, gone, oxtui_cli, wait_until, write_oxfile

from oxtui.client.connection import status_of


def parse_unit(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    cp.optionxform = str    # keys are case-sensitive in units
    cp.read_string(text)
    return cp


def verify(unit: Path, user: bool, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: .ci/run installs the systemd package for this test"
    env = {**os.environ}
    cmd = [tool]
    if user:
        xdg = tmp_path / "xdg"
        xdg.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(xdg)    # the user manager it simulates needs one
        cmd.append("--user")
    r = subprocess.run(cmd + ["verify", str(unit)], capture_output=True, text=True, env=env, timeout=60, check=False)
    # verify exits 0 on a misspelt value and only says so: any output is a failure.
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr


def sample(tmp_path: Path) -> Path:
    return write_oxfile(tmp_path, '''
        [processes.web]
        command = "sleep 60"
        instances = 2
        stop_timeout = 20
        [processes.web.ready]
        timeout = 5
        [processes.worker]
        command = "sleep 60"
        stop_timeout = 4
    ''')


@pytest.mark.skipif(os.getuid() != 0, reason="a system unit with User= is written by root (through sudo)")
def test_system_unit_through_sudo_verifies_and_runs_as_the_sudo_user(tmp_path):
    oxfile = sample(tmp_path)
    r = oxtui_cli("startup", str(oxfile), "--print", env={"SUDO_USER": "daemon", "PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "oxtui-x.service"
    unit.write_text(r.stdout)
    verify(unit, user=False, tmp_path=tmp_path)
    s = parse_unit(r.stdout)["Service"]
    assert s["Type"] == "notify" and s["KillMode"] == "mixed" and s["Restart"] == "on-failure"
    assert s["User"] == "daemon"
    assert s["ExecStart"] == f"{os.path.abspath(PY)} -P -m oxtui run {oxfile}"
    # --quiet: the engine journals each step already, the client would repeat them
    assert s["ExecReload"] == f"{os.path.abspath(PY)} -P -m oxtui reload all --quiet -c {oxfile}"
    assert s["RestartPreventExitStatus"] == "2", "a bad oxfile is not retried until the start limit"
    assert s["TimeoutStopSec"] == "35"            # the largest stop_timeout (20) plus the margin
    assert s["WorkingDirectory"] == str(tmp_path)
    assert s["Environment"] == f"PATH={os.environ['PATH']}"
    assert int(s["WatchdogSec"]) > 0
    assert parse_unit(r.stdout)["Install"]["WantedBy"] == "multi-user.target"


def test_user_unit_verifies_and_changes_nothing(tmp_path):
    oxfile = sample(tmp_path)
    home = tmp_path / "home"
    r = oxtui_cli("startup", "--user", "--print", "-c", str(oxfile), env={"XDG_CONFIG_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert not home.exists(), "--print must write nothing"
    unit = tmp_path / "oxtui-y.service"
    unit.write_text(r.stdout)
    verify(unit, user=True, tmp_path=tmp_path)
    cp = parse_unit(r.stdout)
    assert "User" not in cp["Service"]
    assert cp["Install"]["WantedBy"] == "default.target"


def test_unit_quotes_paths_with_spaces_and_percent(tmp_path):
    folder = tmp_path / "my app 100%"
    folder.mkdir()
    oxfile = sample(folder)
    r = oxtui_cli("startup", "--print", str(oxfile))
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "oxtui-z.service"
    unit.write_text(r.stdout)
    verify(unit, user=False, tmp_path=tmp_path)
    assert f'"{str(oxfile).replace("%", "%%")}"' in parse_unit(r.stdout)["Service"]["ExecStart"]


def test_user_unit_written_where_systemd_looks_and_removed(tmp_path):
    oxfile = sample(tmp_path)
    home = tmp_path / "home"
    r = oxtui_cli("startup", "--user", str(oxfile), env={"XDG_CONFIG_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    unit = home / "systemd" / "user" / f"oxtui-{tmp_path.name}.service"
    assert unit.is_file(), r.stdout
    assert "enable-linger" in r.stdout            # user units stop at logout otherwise
    if not os.path.isdir("/run/systemd/system"):
        assert "systemctl --user enable --now" in r.stdout     # told what to run where systemd runs
    r = oxtui_cli("startup", "--user", "--remove", str(oxfile), env={"XDG_CONFIG_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert not unit.exists()


class FakeSystemd:
    """A NOTIFY_SOCKET that records every datagram with its arrival time."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = path
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._done = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def first(self, key: str, value: str | None = None, after: float = 0.0) -> tuple[float, dict[str, str]] | None:
        return next(((t, m) for t, m in list(self.messages)
                     if t >= after and key in m and (value is None or m[key] == value)), None)

    def times(self, key: str) -> list[float]:
        return [t for t, m in list(self.messages) if key in m]

    def close(self) -> None:
        self._done = True
        self._thread.join(2)
        self.sock.close()


SLOW_READY = '''
import os, sys, time
print("booting", flush=True)
time.sleep(1.5)
open("ready-at-%d" % os.getpid(), "w").write(repr(time.monotonic()))
print("ready", flush=True)
time.sleep(600)
'''


@pytest.mark.slow
def test_notify_protocol_ready_reload_watchdog_stopping(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_READY)
    oxfile = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} slow.py"
        stop_timeout = 5
        [processes.app.ready]
        log = "^ready"
        timeout = 20
    ''')
    systemd = FakeSystemd(tmp_path / "notify.sock")
    out = open(tmp_path / "journal.out", "wb")    # noqa: SIM115 (the engine's journal, open while it runs)
    env = {**os.environ, "NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "2000000", "NO_COLOR": "1",
           "INVOCATION_ID": "0123456789abcdef"}
    proc = subprocess.Popen([PY, "-m", "oxtui", "run", str(oxfile)], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        t_ready, ready = wait_until(lambda: systemd.first("READY"), 30, what="READY=1")
        marks = list(tmp_path.glob("ready-at-*"))
        assert len(marks) == 1, "READY=1 came before the worker said it was ready"
        assert float(marks[0].read_text()) <= t_ready
        keeper = next(c.pid for c in psutil.Process(proc.pid).children() if "forkserver" in " ".join(c.cmdline()))
        assert ready["MAINPID"] == str(proc.pid)
        assert ready["STATUS"] == "app 1/1 ready"
        worker_pid = int(marks[0].name.rsplit("-", 1)[1])
        environ = Path(f"/proc/{worker_pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.split(b"=")[0] in (b"NOTIFY_SOCKET", b"WATCHDOG_USEC", b"WATCHDOG_PID")]

        # The watchdog: pinged well within WATCHDOG_USEC from the engine's own loop ...
        wait_until(lambda: len(systemd.times("WATCHDOG")) >= 4, 10, what="watchdog pings")
        # ... and an engine whose loop cannot run (SIGSTOP) stops pinging and beating: its keeper kills it
        # within 3/4 of WATCHDOG_USEC and a new engine adopts the worker and names itself MAINPID, while
        # systemd never goes WATCHDOG_USEC without a ping (it would fail the unit, every app with it).
        os.kill(proc.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        snap = wait_until(lambda: (s := status_of(oxfile.resolve())) and s["engine_pid"] != proc.pid and s, 15,
                          what="a new engine in place of the stopped one")
        assert snap["engine"]["recovered"]["cause"] == "SIGKILL" and snap["engine"]["keeper_pid"] == keeper
        wait_until(lambda: systemd.first("MAINPID", str(snap["engine_pid"])), 5, what="MAINPID of the new engine")
        assert proc.wait(5) == -signal.SIGKILL
        wait_until(lambda: [t for t in systemd.times("WATCHDOG") if t > stopped_at + 3], 10, what="pings go on")
        pings = systemd.times("WATCHDOG")
        assert max(b - a for a, b in itertools.pairwise(pings)) < 2.0, "systemd would have seen a hole"
        assert [w["pid"] for w in snap["processes"][0]["workers"]] == [worker_pid], "the worker kept its pid"
        assert "has not answered for" in (tmp_path / "journal.out").read_text()

        # A rolling reload: RELOADING=1 (with its timestamp), then READY=1 once it is over.
        before = time.monotonic()
        r = oxtui_cli("reload", "app", "-c", str(oxfile))
        assert r.returncode == 0, r.stderr
        t_rl, rl = wait_until(lambda: systemd.first("RELOADING", "1", after=before), 5, what="RELOADING=1")
        assert int(rl["MONOTONIC_USEC"]) > 0
        wait_until(lambda: systemd.first("READY", "1", after=t_rl), 10, what="READY=1 after the reload")

        # systemctl stop (KillMode=mixed): SIGTERM to the main process, the new engine
        os.kill(snap["engine_pid"], signal.SIGTERM)
        wait_until(lambda: not psutil.pid_exists(keeper), 30, what="the keeper to exit after the stop")
        assert systemd.first("STOPPING", "1")
        assert not psutil.pid_exists(worker_pid) and not psutil.pid_exists(snap["engine_pid"])
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()
        systemd.close()
        out.close()
    # Under systemd stdout is the journal: engine events go there, worker lines only to the files.
    journal = (tmp_path / "journal.out").read_text()
    assert "reload" in journal and "app.0" in journal
    assert "booting" not in journal
    assert "booting" in (tmp_path / "logs" / "app.log").read_text()


def test_the_watchdog_is_fed_while_an_upgrade_waits_for_a_slow_new_engine(tmp_path):
    """The old engine's loop stands still while the new one starts; that start takes 3 s here (a
    sitecustomize that sleeps when it sees --adopt), longer than the 2 s watchdog. Pings must go on
    throughout: from the old engine while it waits, then from the new one."""
    slow = tmp_path / "slowstart"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import sys, time\nif '--adopt' in sys.argv:\n    time.sleep(3)\n")
    oxfile = write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 600"\n')
    systemd = FakeSystemd(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": "2000000", "NO_COLOR": "1",
           "PYTHONPATH": str(slow)}
    proc = subprocess.Popen([PY, "-m", "oxtui", "run", str(oxfile)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path,
                            start_new_session=True)
    new_pid = None
    try:
        wait_until(lambda: systemd.first("READY"), 30, what="READY=1")
        began = time.monotonic()
        r = oxtui_cli("upgrade", "-c", str(oxfile), timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        ended = time.monotonic()
        assert ended - began > 3, "the new engine's start was slowed down"
        new_pid = int(wait_until(lambda: systemd.first("MAINPID", after=began), 5, what="MAINPID")[1]["MAINPID"])
        assert proc.wait(10) == 0
        time.sleep(2.5)      # the new engine's own pings
        pings = [t for t in systemd.times("WATCHDOG") if t > began - 1.5]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert pings[-1] > ended + 1.5 and max(gaps) < 2.0, gaps
    finally:
        for pid in (proc.pid, new_pid):
            if pid is not None and not gone(pid):
                os.kill(pid, signal.SIGTERM)
                wait_until(lambda pid=pid: gone(pid), 30, what=f"engine {pid} stopped")
        proc.wait()
        systemd.close()


def test_everything_to_the_journal_when_asked(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sh -c 'echo hello-from-app; exec sleep 60'"
        [logs]
        dir = "logs"
        stdout = "all"
    ''')
    out = tmp_path / "journal.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen([PY, "-m", "oxtui", "run", str(oxfile)], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, "INVOCATION_ID": "x", "NO_COLOR": "1"})
        try:
            wait_until(lambda: "hello-from-app" in out.read_text(), 15, what="the worker's line on stdout")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0


def test_bad_stdout_mode_is_one_line_naming_the_fix(tmp_path):
    oxfile = write_oxfile(tmp_path, '[processes.a]\ncommand = "sleep 1"\n[logs]\nstdout = "journal"\n')
    r = oxtui_cli("check", str(oxfile))
    assert r.returncode == 2
    assert '[logs] stdout: must be "auto"' in r.stderr and "traceback" not in r.stderr.lower()


def test_an_abstract_notify_socket_and_status_counting_only_ready_instances(tmp_path):
    """NOTIFY_SOCKET may name an abstract socket ("@..."); STATUS counts an instance as ready only once
    it is (a killed one restarting is "1/2 ready" until its replacement says it is)."""
    (tmp_path / "slow.py").write_text(SLOW_READY)
    oxfile = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} slow.py"
        instances = 2
        stop_timeout = 5
        [processes.app.ready]
        log = "^ready"
    ''')
    name = f"oxtui-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(0.1)
    messages: list[dict[str, str]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            messages.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    env = {**os.environ, "NOTIFY_SOCKET": "@" + name, "NO_COLOR": "1"}
    proc = subprocess.Popen([PY, "-m", "oxtui", "run", str(oxfile)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path,
                            start_new_session=True)
    try:
        wait_until(lambda: any(m.get("READY") == "1" for m in messages), 30, what="READY=1 on the abstract socket")
        ready = next(m for m in messages if m.get("READY") == "1")
        assert ready["STATUS"] == "app 2/2 ready"
        pid = int(next(iter(tmp_path.glob("ready-at-*"))).name.rsplit("-", 1)[1])
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: any(m.get("STATUS", "").startswith("app 1/2 ready") for m in messages), 10,
                   what="STATUS with one instance not ready")
        n = len(messages)
        wait_until(lambda: any(m.get("STATUS") == "app 2/2 ready" for m in messages[n:]), 10,
                   what="STATUS back to 2/2 once the replacement is ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        done.set()
        reader.join(2)
        sock.close()


def test_ready_goes_out_by_the_longest_ready_timeout_and_a_grace_and_the_unit_waits_that_long(tmp_path):
    """The engine's deadline for READY=1 (a process that never gets ready must not keep the unit
    activating forever) and the unit's TimeoutStartSec, which must outlast it: one number for both."""
    from oxtui.cli.startup import START_MARGIN, start_timeout
    from oxtui.observers.sdnotify import READY_GRACE, ready_deadline
    from oxtui.oxfile.config import load
    config = load(write_oxfile(tmp_path, '''
        [processes.web]
        command = "sleep 60"
        [processes.web.ready]
        timeout = 30
        [processes.api]
        command = "sleep 60"
        [processes.api.ready]
        timeout = 5
        [processes.bg]
        command = "sleep 60"
    '''))
    assert ready_deadline(config) == 30 + READY_GRACE
    assert start_timeout(config) >= ready_deadline(config) + START_MARGIN
    bare = load(write_oxfile(tmp_path, '[processes.bg]\ncommand = "sleep 60"\n', name="bare.toml"))
    assert ready_deadline(bare) == 1.0 + READY_GRACE
