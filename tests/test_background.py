"""The engine in the background: `oxtui up` / `down`, a stale socket after a dead engine, and
`oxtui apply` of an edited oxfile, all through the real CLI with real processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket

import psutil
import pytest
from conftest import (
    APPS,
    PY,
    app_oxfile,
    free_port,
    http_get,
    oxtui_cli,
    wait_until,
    write_oxfile,
)
from load import Load, explain

from oxtui.runtime import lock_path, socket_path


@pytest.fixture
def daemon(tmp_path):
    """Yields a function that runs `oxtui up OXFILE`; whatever it started is brought down afterwards."""
    started = []

    def up(oxfile):
        started.append(oxfile)
        return oxtui_cli("up", str(oxfile), cwd=tmp_path)

    yield up
    for oxfile in started:
        oxtui_cli("down", "-c", str(oxfile))


def status(oxfile):
    r = oxtui_cli("status", "--json", "-c", str(oxfile))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def pids_of(oxfile, name):
    snap = status(oxfile)
    return [w["pid"] for p in snap["processes"] if p["name"] == name for w in p["workers"] if not w["role"]]


def test_up_returns_when_everything_is_up_and_down_leaves_nothing(tmp_path, daemon):
    port = free_port()
    oxfile = app_oxfile(tmp_path, port)
    r = daemon(oxfile)
    assert r.returncode == 0, r.stderr
    assert "app 2/2 running" in r.stdout
    snap = status(oxfile)
    engine = psutil.Process(snap["engine_pid"])
    assert engine.ppid() != os.getpid(), "the engine must not stay the test's child"
    assert os.getsid(engine.pid) == engine.pid, "the engine runs in a session of its own"
    assert engine.terminal() is None
    workers = pids_of(oxfile, "app")
    assert all(w["state"] == "running" for p in snap["processes"] for w in p["workers"])
    assert http_get(port)[0] == 200          # serving the moment up returns
    again = daemon(oxfile)
    assert again.returncode == 0 and "already runs" in again.stdout
    assert pids_of(oxfile, "app") == workers

    down = oxtui_cli("down", "-c", str(oxfile))
    assert down.returncode == 0, down.stderr
    assert not psutil.pid_exists(engine.pid) or engine.status() == psutil.STATUS_ZOMBIE
    assert not any(psutil.pid_exists(p) for p in workers)
    assert oxtui_cli("status", "-c", str(oxfile)).returncode == 3
    assert oxtui_cli("down", "-c", str(oxfile)).returncode == 3
    assert "stopped (code 0)" in (tmp_path / "logs" / "app.log").read_text()


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
@pytest.mark.parametrize("mode", ["crash", "quiet"])
def test_up_names_the_error_line_and_fd_3_when_an_app_binds_its_port_itself(tmp_path, daemon, mode):
    """Node's report ends with its version; the line that explains is "Error: listen EADDRINUSE". An app
    that swallows that error and exits 0 gets the same advice: serve fd 3."""
    port = free_port()
    oxfile = write_oxfile(tmp_path, f"""
        [processes.api]
        command = "node {APPS / 'binds_port.js'} {port} {mode}"
        instances = 2
        listen = "127.0.0.1:{port}"
        max_restarts = 2
        [processes.api.ready]
        log = "^listening"          # never printed: no instance counts as up before it has failed
    """)
    r = daemon(oxfile)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(line for line in r.stderr.splitlines() if "while starting" in line)
    assert "Node.js v" not in line, line
    if mode == "crash":
        assert "exited with code 1 while starting: Error: listen EADDRINUSE" in line, line
    else:
        assert "exited with code 0" in line, line
    assert f"the app binds 127.0.0.1:{port} itself" in line and "server.listen({fd: 3})" in line, line


def test_up_fails_with_the_reason_when_a_process_cannot_start(tmp_path, daemon):
    port = free_port()
    oxfile = app_oxfile(tmp_path, port)
    (tmp_path / "release.txt").write_text("crash")
    r = daemon(oxfile)
    assert r.returncode == 1
    # the reason the exit record holds (the app's last line), once per distinct reason with its instances
    assert re.search(r"app\.(0|1|0-1 \(2 instances\)) exited with code 3 while starting: boom: release is broken",
                     r.stderr), r.stderr
    assert f"`oxtui down -c {oxfile}` stops it" in r.stderr


def test_up_reports_an_engine_that_cannot_start(tmp_path, daemon):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = daemon(app_oxfile(tmp_path, port))
    assert r.returncode == 1
    assert "the engine exited (code 1)" in r.stderr and "listen" in r.stderr and str(port) in r.stderr


def test_an_engine_killed_with_its_keeper_leaves_no_worker_and_a_stale_socket_is_replaced(tmp_path, daemon):
    """SIGKILL to the engine's whole process group takes its keeper too (a lone engine's death is
    survived: tests/test_keeper.py): then no worker may be left, and the next `up` starts afresh."""
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        instances = 2
    ''')
    assert daemon(oxfile).returncode == 0
    snap = status(oxfile)
    workers = pids_of(oxfile, "app")
    assert os.getpgid(snap["engine"]["keeper_pid"]) == snap["engine_pid"], "the keeper is in the engine's group"
    os.killpg(snap["engine_pid"], signal.SIGKILL)
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                               for p in workers), 10, what="the workers to die with the keeper")
    assert socket_path(oxfile).exists(), "a SIGKILLed engine cannot remove its socket"
    assert lock_path(oxfile).read_text() == f"{snap['engine_pid']}\n{oxfile}\n"   # for `oxtui ls`
    r = oxtui_cli("status", "-c", str(oxfile))
    assert r.returncode == 3 and "no engine is running" in r.stderr
    r = daemon(oxfile)
    assert r.returncode == 0, r.stderr
    assert status(oxfile)["engine_pid"] != snap["engine_pid"]


def test_a_socket_file_left_by_anything_is_not_an_engine(tmp_path, daemon):
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
    ''')
    with socket.socket(socket.AF_UNIX) as stale:      # bound, never listening, then closed: refused
        stale.bind(str(socket_path(oxfile)))
    lock_path(oxfile).write_text("999999")
    assert oxtui_cli("status", "-c", str(oxfile)).returncode == 3
    assert daemon(oxfile).returncode == 0
    assert status(oxfile)["processes"][0]["workers"][0]["state"] == "running"


def test_two_engines_for_one_oxfile_never_run(tmp_path, daemon):
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
    ''')
    assert daemon(oxfile).returncode == 0
    r = oxtui_cli("run", str(oxfile), timeout=20)
    assert r.returncode == 1 and "already running" in r.stderr


def test_apply_adds_removes_reloads_scales_and_leaves_the_rest_alone(tmp_path, daemon):
    port = free_port()
    base = f'''
        [processes.app]
        command = "{PY} {APPS / 'app.py'}"
        instances = 2
        listen = "127.0.0.1:{port}"
        EXTRA
        [processes.app.ready]
        log = "^ready"
    '''
    (tmp_path / "release.txt").write_text("ok r1")
    oxfile = write_oxfile(tmp_path, base.replace("EXTRA", "") + '''
        [processes.keep]
        command = "sleep 600"
        [processes.gone]
        command = "sleep 600"
        [processes.more]
        command = "sleep 600"
    ''')
    assert daemon(oxfile).returncode == 0
    app, keep, gone = pids_of(oxfile, "app"), pids_of(oxfile, "keep"), pids_of(oxfile, "gone")
    more = pids_of(oxfile, "more")
    inode = os.stat(f"/proc/{app[0]}/fd/3").st_ino

    write_oxfile(tmp_path, base.replace("EXTRA", 'env = { RELEASE_NOTE = "changed" }') + '''
        [processes.keep]
        command = "sleep 600"
        [processes.more]
        command = "sleep 600"
        instances = 3
        [processes.new]
        command = "sleep 600"
    ''')
    with Load.steady(port) as load:
        load.wait_for(20)
        r = oxtui_cli("apply", "-c", str(oxfile))
        load.wait_for(20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "added: new" in r.stdout and "removed: gone" in r.stdout
    assert "reloaded: app" in r.stdout and "scaled: more" in r.stdout and "unchanged: keep" in r.stdout
    assert load.failures == [], explain(load.failures, tmp_path)
    assert not any(psutil.pid_exists(p) for p in gone)
    assert pids_of(oxfile, "keep") == keep, "an unchanged process is not touched"
    new_app = pids_of(oxfile, "app")
    assert not set(new_app) & set(app), "a changed process is reloaded"
    assert os.stat(f"/proc/{new_app[0]}/fd/3").st_ino == inode, "on the same socket"
    assert psutil.Process(new_app[0]).environ()["RELEASE_NOTE"] == "changed"
    assert pids_of(oxfile, "more")[:1] == more and len(pids_of(oxfile, "more")) == 3
    wait_until(lambda: status(oxfile)["processes"][-1]["workers"][0]["state"] == "running", 10)
    assert [p["name"] for p in status(oxfile)["processes"]] == ["app", "keep", "more", "new"]


def test_apply_refuses_a_broken_file_or_release_and_changes_nothing(tmp_path, daemon):
    port = free_port()
    oxfile = app_oxfile(tmp_path, port)
    assert daemon(oxfile).returncode == 0
    before = pids_of(oxfile, "app")
    text = oxfile.read_text()

    oxfile.write_text(text.replace("instances = 2", "instances = 2\nrestart_on_exti = true"))
    r = oxtui_cli("apply", "-c", str(oxfile))
    assert r.returncode == 2
    assert "[processes.app] restart_on_exti: unknown key" in r.stderr and "Traceback" not in r.stderr
    assert pids_of(oxfile, "app") == before

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        oxfile.write_text(text + f'\n[processes.other]\ncommand = "sleep 600"\nlisten = "127.0.0.1:{busy}"\n')
        r = oxtui_cli("apply", "-c", str(oxfile))
    assert r.returncode == 1 and "refused, nothing changed" in r.stderr and "[processes.other] listen" in r.stderr
    assert [p["name"] for p in status(oxfile)["processes"]] == ["app"]

    oxfile.write_text(text.replace("instances = 2", 'instances = 2\nenv = { X = "1" }'))
    (tmp_path / "release.txt").write_text("crash")
    with Load.steady(port) as load:
        load.wait_for(20)
        r = oxtui_cli("apply", "-c", str(oxfile))
        load.wait_for(20)
    assert r.returncode == 1 and "app: reload failed, old settings kept" in r.stderr
    assert load.failures == [], explain(load.failures, tmp_path)
    assert pids_of(oxfile, "app") == before
    (tmp_path / "release.txt").write_text("ok r2")
    r = oxtui_cli("apply", "-c", str(oxfile))     # the failed change is still pending: it goes in now
    assert r.returncode == 0 and "reloaded: app" in r.stdout, r.stdout + r.stderr


def test_up_waits_for_dependents_and_counts_tasks_and_schedules_as_up(tmp_path, daemon):
    """The sample's shape: a migrate task, web after it, a scheduled job waiting for its first tick."""
    oxfile = write_oxfile(tmp_path, '''
        [processes.migrate]
        command = "sh -c 'sleep 1; echo migrated'"
        restart = "never"
        [processes.web]
        command = "sleep 60"
        depends_on = { migrate = "completed_successfully" }
        [processes.job]
        command = "true"
        restart = "never"
        [processes.job.schedule]
        every = "1h"
    ''')
    r = daemon(oxfile)
    assert r.returncode == 0, r.stderr
    states = {p["name"]: p["workers"][0]["state"] for p in status(oxfile)["processes"]}
    assert states == {"migrate": "completed", "web": "running", "job": "waiting"}
    write_oxfile(tmp_path, '''
        [processes.migrate]
        command = "sh -c 'exit 3'"
        restart = "never"
        [processes.web]
        command = "sleep 60"
        depends_on = { migrate = "completed_successfully" }
    ''', name="broken.toml")
    r = daemon(tmp_path / "broken.toml")
    assert r.returncode == 1 and "migrate.0" in r.stderr and "while starting" in r.stderr


def test_apply_runs_a_fixed_task_with_its_new_command(tmp_path, daemon):
    """A one-shot task failed; the oxfile is fixed; `apply` runs the fixed command (not the old one)."""
    oxfile = write_oxfile(tmp_path, '''
        [processes.migrate]
        command = "sh -c 'echo broken; exit 3'"
        restart = "never"
    ''')
    daemon(oxfile)
    wait_until(lambda: status(oxfile)["processes"][0]["workers"][0]["state"] == "failed", 10, 0.1)
    oxfile.write_text(oxfile.read_text().replace("echo broken; exit 3", "echo fixed"))
    r = oxtui_cli("apply", "-c", str(oxfile))
    assert r.returncode == 0, r.stdout + r.stderr
    p = status(oxfile)["processes"][0]
    assert p["command"] == "sh -c 'echo fixed'", "status shows the command that ran"
    assert p["workers"][0]["state"] == "completed"
    assert "fixed" in oxtui_cli("logs", "migrate", "-c", str(oxfile)).stdout
    # a task whose new settings still fail keeps them (the next run is of the file as it is)
    oxfile.write_text(oxfile.read_text().replace("echo fixed", "echo again; exit 4"))
    r = oxtui_cli("apply", "-c", str(oxfile))
    assert r.returncode == 1 and "migrate" in r.stderr
    assert status(oxfile)["processes"][0]["command"] == "sh -c 'echo again; exit 4'"


def test_disabled_and_only_leave_processes_stopped_until_started(tmp_path, daemon):
    oxfile = write_oxfile(tmp_path, '''
        [processes.db]
        command = "sleep 60"
        [processes.api]
        command = "sleep 60"
        depends_on = ["db"]
        [processes.worker]
        command = "sleep 60"
        [processes.extra]
        command = "sleep 60"
        disabled = true
    ''')
    r = oxtui_cli("up", str(oxfile), "--only", "api")
    daemon(oxfile)                      # brought down afterwards
    assert r.returncode == 0, r.stderr
    states = {p["name"]: p["workers"][0] for p in status(oxfile)["processes"]}
    assert states["api"]["state"] == "running" and states["db"]["state"] == "running", "api and what it needs"
    assert states["worker"]["state"] == "stopped" and "not started (up --only api)" in states["worker"]["reason"]
    assert states["extra"]["state"] == "stopped" and "disabled in the oxfile" in states["extra"]["reason"]
    assert oxtui_cli("start", "extra", "-c", str(oxfile)).returncode == 0
    wait_until(lambda: {p["name"]: p for p in status(oxfile)["processes"]}["extra"]["workers"][0]["state"]
               == "running", 10, 0.1)
    r = oxtui_cli("up", str(oxfile), "--only", "nope")
    assert r.returncode == 2 and "--only nope: no such process" in r.stderr


def test_variables_in_the_oxfile_come_from_the_environment(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sh -c 'echo ${GREETING} $${LITERAL} ${NOT_SET_HERE}; exec sleep 60'"
        env = { DB = "${DB_URL}", MODE = "${MODE:-production}" }
        listen = "127.0.0.1:${APP_PORT}"
    ''')
    port = free_port()
    env = {"GREETING": "hi", "DB_URL": "postgres://x", "APP_PORT": str(port)}
    r = oxtui_cli("check", str(oxfile), env=env)
    assert r.returncode == 0, r.stderr
    assert f"on 127.0.0.1:{port}" in r.stdout
    assert "sh -c 'echo hi ${LITERAL} ${NOT_SET_HERE}; exec sleep 60'" in r.stdout, "unset in command: the shell's"
    import os

    from oxtui.oxfile.config import load
    old = dict(os.environ)
    os.environ.update(env)
    try:
        cfg = load(oxfile)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert dict(cfg.processes[0].env) == {"DB": "postgres://x", "MODE": "production"}
    r = oxtui_cli("check", str(oxfile), env={"GREETING": "hi", "APP_PORT": str(port)})
    assert r.returncode == 2
    assert "[processes.app] env: ${DB_URL} is not set in the environment oxtui runs in" in r.stderr


def test_the_line_that_explains_an_exit_is_picked_from_its_last_words():
    from oxtui.format import explaining_line
    python = ["Traceback (most recent call last):", '  File "app.py", line 3, in <module>',
              "    socket.create_server(('127.0.0.1', 22))", "PermissionError: [Errno 13] Permission denied"]
    assert explaining_line(python) == "PermissionError: [Errno 13] Permission denied"
    npm = ["> shop@1.0.0 start", "> node missing.js", "npm ERR! code ENOENT", "npm ERR! A complete log is in /x.log",
           "", "Node.js v20.20.2"]
    assert explaining_line(npm) == "npm ERR! A complete log is in /x.log"
    assert explaining_line(["starting on 3000", "done", "Node.js v20.20.2"]) == "done"
    assert explaining_line(["   at Module._compile (node:internal)"]) == "at Module._compile (node:internal)"
    assert explaining_line([]) == ""
