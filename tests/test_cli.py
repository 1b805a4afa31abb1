"""The real `oxtui run` process driven by the real CLI verbs over the control socket."""

from __future__ import annotations

import difflib
import json
import os
import re
import signal
import subprocess
import time

import psutil
import pytest
from conftest import (
    APPS,
    PY,
    ROOT,
    free_port,
    http_get,
    marked_pids,
    oxtui_cli,
    wait_until,
    write_oxfile,
)


def oxfile(tmp_path, port, instances=2):
    return write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'app.py'}"
        instances = {instances}
        listen = "127.0.0.1:{port}"
        [processes.app.ready]
        log = "^ready"
        [processes.bg]
        command = "{PY} -u -c 'import time\\nwhile True: print(\\"tick\\"); time.sleep(0.2)'"
    ''')


def test_no_engine_means_exit_3(tmp_path):
    path = write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 1"\n')
    for args in (("status",), ("status", "--json"), ("scale", "app", "2"), ("reload", "app"), ("kill", "app", "0"),
                 ("stop", "all"), ("start", "all"), ("restart", "app"), ("logs", "-f")):
        r = oxtui_cli(*args, "-c", str(path))
        assert r.returncode == 3, (args, r.stdout, r.stderr)
        assert "no engine is running for" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_logs_after_the_engine_stopped_are_read_from_its_files(tmp_path, engine_process):
    """`oxtui logs` with no engine: the lines it wrote are still in the files, in the same form."""
    port = free_port()
    ep = engine_process(oxfile(tmp_path, port))
    ep.wait_running("app", 2)
    wait_until(lambda: ep.cli("logs", "bg", "-n", "3").stdout.count("tick") == 3, 10, 0.1, "three ticks")
    assert ep.cli("kill", "app", "1", "--signal", "SIGKILL").returncode == 0
    wait_until(lambda: ep.workers("app")[1]["restarts"] == 1, 10, 0.1, "app.1 restarted")
    live = {args: ep.cli("logs", *args).stdout for args in (("app", "-n", "400"), ("app.1", "-n", "400"),
                                                            ("-n", "4"), ("app", "--stderr", "-n", "400"))}
    assert ep.stop() == 0
    for args, was in live.items():
        r = ep.cli("logs", *args)
        assert r.returncode == 0, (args, r.stderr)
        assert "no engine is running" in r.stderr and str(tmp_path / "logs") in r.stderr
        if args[0] == "-n":            # every process and the engine's own lines, in time order
            rows = r.stdout.splitlines()
            assert len(rows) == 4 and "oxtui" in rows[0] and "stopping every process gracefully" in rows[0], rows
            assert all("stopped" in row for row in rows[1:]), rows
            continue
        if "--stderr" in args:         # app writes nothing on stderr: the file's " | " lines are left out
            assert was == r.stdout == "" and " | " in live[("app", "-n", "400")]
            continue
        assert r.stdout.startswith(was), "\n".join(difflib.unified_diff(was.splitlines(), r.stdout.splitlines()))
        assert r.stdout.count("\n") >= was.count("\n") and was.count("\n") > 0
    assert all(line.split()[2] == "app.1" for line in live[("app.1", "-n", "400")].splitlines())
    r = ep.cli("logs", "bg", "-n", "2", "--json")
    assert r.returncode == 0
    assert [(o["line"][:3], o["process"], o["instance"], o["stream"]) for o in map(json.loads, r.stdout.splitlines())] \
        == [("tic", "bg", 0, "out"), ("pid", "bg", 0, "event")]
    r = ep.cli("logs", "nope")
    assert r.returncode == 2 and "no process named 'nope'" in r.stderr
    r = ep.cli("logs", "bg", "-f", "-n", "2")
    assert r.returncode == 3 and r.stdout.count("tick") == 1 and "not following" in r.stderr


def test_status_json_shape(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(oxfile(tmp_path, port))
    ep.wait_running("app", 2)
    snap = ep.status()
    assert snap["oxfile"] == str(tmp_path / "oxfile.toml") and snap["engine_pid"] == ep.proc.pid
    app = snap["processes"][0]
    assert app["name"] == "app" and app["instances"] == 2 and app["listen"] == f"127.0.0.1:{port}"
    assert app["reload"] is None and app["log_file"] == str(tmp_path / "logs" / "app.log")
    for i, w in enumerate(app["workers"]):
        assert w["instance"] == i and w["state"] == "running" and w["restarts"] == 0 and w["exit_code"] is None
        assert isinstance(w["pid"], int) and w["uptime_s"] > 0
    wait_until(lambda: all(w["rss_bytes"] for w in ep.workers("app")), 5, 0.2, "metrics")
    w = ep.workers("app")[0]
    assert w["rss_bytes"] > 1_000_000 and w["cpu_percent"] >= 0
    text = ep.cli("status")
    assert text.returncode == 0 and "app.0" in text.stdout and "running" in text.stdout


@pytest.mark.slow
def test_scale_kill_stop_start_restart_logs(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(oxfile(tmp_path, port))
    ep.wait_running("app", 2)

    r = ep.cli("scale", "app", "+1")
    assert r.returncode == 0 and "app: 2 -> 3" in r.stdout
    ep.wait_running("app", 3)
    r = ep.cli("scale", "app", "-2")
    assert r.returncode == 0 and "app: 3 -> 1" in r.stdout
    assert [w["instance"] for w in ep.workers("app")] == [0]
    # asked wrongly: exit 2, whether the CLI or the engine finds it
    r = ep.cli("scale", "app", "-5")
    assert r.returncode == 2 and "cannot scale below 0" in r.stderr
    r = ep.cli("scale", "app", "many")
    assert r.returncode == 2 and "N must be a number" in r.stderr
    r = ep.cli("scale", "app", "max")
    assert r.returncode == 0 and f"app: 1 -> {len(os.sched_getaffinity(0))}" in r.stdout, "max as in the oxfile"
    assert ep.cli("scale", "app", "1").returncode == 0

    old = ep.workers("app")[0]["pid"]
    r = ep.cli("kill", "app", "0", "--signal", "SIGKILL")
    assert r.returncode == 0 and f"sent SIGKILL to pid {old}" in r.stdout
    wait_until(lambda: (w := ep.workers("app")[0])["pid"] not in (None, old) and w["restarts"] == 1, 10, 0.1)
    r = ep.cli("kill", "app", "7")
    assert r.returncode == 2 and "app has no instance 7" in r.stderr
    r = ep.cli("kill", "app", "0", "--signal", "SIGWHAT")
    assert r.returncode == 2 and "signal name" in r.stderr     # bad usage: exit 2, before the engine is asked
    r = ep.cli("kill", "nope", "0")
    assert r.returncode == 2 and "no process named 'nope'" in r.stderr
    for args in (("events", "nope"), ("events", "nope", "-f"), ("logs", "nope"), ("logs", "nope", "-f")):
        r = ep.cli(*args)     # an unknown name is bad usage, whichever way the answer comes
        assert r.returncode == 2 and "no process named 'nope'" in r.stderr, (args, r.returncode, r.stderr)
    r = ep.cli("reload", "aap")
    assert r.returncode == 2 and "did you mean 'app'?" in r.stderr

    r = ep.cli("stop", "app")
    assert r.returncode == 0
    assert [w["state"] for w in ep.workers("app")] == ["stopped"]
    r = ep.cli("start", "app")
    assert r.returncode == 0
    ep.wait_running("app", 1)
    before = ep.workers("app")[0]["pid"]
    r = ep.cli("restart", "all")
    assert r.returncode == 0
    ep.wait_running("app", 1)
    assert ep.workers("app")[0]["pid"] != before

    # restarted: its last lines end with the restart's own event until it prints again (every 0.2 s)
    wait_until(lambda: ep.cli("logs", "bg", "-n", "1").stdout.rstrip().endswith("| tick"), 10, 0.1, "a tick after")
    r = ep.cli("logs", "bg", "-n", "3")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and all(" bg.0 " in l for l in lines), lines
    assert lines[-1].endswith("| tick") and lines[-1][:4].isdigit()
    r = ep.cli("logs", "-n", "500")
    assert "app.0" in r.stdout and "bg.0" in r.stdout

    follow = subprocess.Popen([PY, "-m", "oxtui", "logs", "bg", "-f", "-n", "0", "-c", str(ep.oxfile)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        got = [follow.stdout.readline() for _ in range(3)]
        assert all(re.search(r" bg\.0 +\| tick$", line) for line in got), got
    finally:
        follow.kill()
        follow.wait()


def test_reload_replaces_every_pid(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(oxfile(tmp_path, port))
    before = {w["pid"] for w in ep.wait_running("app", 2)}
    r = ep.cli("reload", "app")
    assert r.returncode == 0, r.stderr
    assert "slot 0: started new pid" in r.stdout and "slot 1: new pid" in r.stdout and "done" in r.stdout
    assert re.search(r"slot 1: old pid \d+ drained \(code 0\)", r.stdout), r.stdout
    after = {w["pid"] for w in ep.wait_running("app", 2)}
    assert not (before & after)
    assert ep.status()["processes"][0]["reload"]["state"] == "done"


def test_sigint_stops_gracefully_and_exits_0(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(oxfile(tmp_path, port))
    pids = [w["pid"] for w in ep.wait_running("app", 2)]
    ep.proc.send_signal(signal.SIGINT)
    assert ep.proc.wait(20) == 0
    assert not any(psutil.pid_exists(p) for p in pids)
    out = ep.output()
    assert "SIGINT: stopping every process gracefully" in out and "stopped (code 0)" in out
    r = ep.cli("status")
    assert r.returncode == 3


def test_sigkill_of_the_engine_and_its_keeper_leaves_no_worker(tmp_path, engine_process):
    """(A SIGKILL of the engine alone is survived: tests/test_keeper.py.)"""
    port = free_port()
    ep = engine_process(oxfile(tmp_path, port, instances=3))
    pids = [w["pid"] for w in ep.wait_running("app", 3)] + [w["pid"] for w in ep.workers("bg")]
    assert len(pids) == 4
    os.killpg(ep.proc.pid, signal.SIGKILL)      # its session and group: the keeper is in it
    ep.proc.wait()
    wait_until(lambda: not marked_pids(), 5, what="workers to die with the keeper")
    # the control socket of the dead engine is stale; a new engine takes over
    r = ep.cli("status")
    assert r.returncode == 3
    ep2 = engine_process(ep.oxfile)
    ep2.wait_running("app", 3)
    code, _ = http_get(port)
    assert code == 200


def test_second_run_for_same_oxfile_fails_clearly(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\n'))
    r = oxtui_cli("run", str(ep.oxfile), timeout=20)
    assert r.returncode == 1 and "an engine is already running for this oxfile" in r.stderr


def test_sighup_reloads_everything(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(oxfile(tmp_path, port))
    before = {w["pid"] for w in ep.wait_running("app", 2)}
    ep.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: (p := ep.status()["processes"])[0]["reload"] and p[1]["reload"]
               and p[1]["reload"]["state"] == "done", 30, 0.2, "reload of both")
    after = {w["pid"] for w in ep.wait_running("app", 2)}
    assert not (before & after)


def test_a_terminal_hang_up_of_run_keeps_serving_without_a_reload(tmp_path):
    """README's "terminal 1": `oxtui run` in an SSH session whose window closes. The kernel hangs the
    terminal up (SIGHUP): that is not a deploy, so nothing reloads (no migration runs again)."""
    import fcntl
    port = free_port()
    path = oxfile(tmp_path, port)
    master, slave = os.openpty()
    ctty = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
            "os.execv(sys.executable, [sys.executable, '-m', 'oxtui', *sys.argv[1:]])")
    proc = subprocess.Popen([PY, "-c", ctty, "run", str(path)], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, env={**os.environ, "NO_COLOR": "1"})
    os.close(slave)
    fcntl.fcntl(master, fcntl.F_SETFL, os.O_NONBLOCK)
    seen = b""

    def screen() -> bytes:
        nonlocal seen
        try:
            seen += os.read(master, 65536)
        except (BlockingIOError, OSError):
            pass
        return seen
    try:
        wait_until(lambda: b"ready r1" in screen() and screen().count(b"ready r1") >= 2, 20, 0.05,
                   what="both instances ready on the terminal")
        from oxtui.client.connection import Client

        def status():
            with Client(path.resolve(), timeout=10) as c:
                return c.call({"cmd": "status"})
        before = {w["pid"] for w in status()["processes"][0]["workers"]}
        os.close(master)          # what sshd does when the connection drops: the kernel sends SIGHUP
        master = -1
        log = tmp_path / "logs" / "oxtui.log"
        wait_until(lambda: log.exists() and "the terminal hung up" in log.read_text(), 10, 0.05,
                   what="the hang-up said in the engine's log")
        assert "keeps every worker running" in log.read_text() and "no reload" in log.read_text()
        for _ in range(10):
            assert http_get(port)[0] == 200
        snap = status()
        assert proc.poll() is None, "the engine goes on after the hang-up"
        assert {w["pid"] for w in snap["processes"][0]["workers"]} == before, "nothing was replaced"
        assert all(p["reload"] is None for p in snap["processes"]), "a hang-up is not a reload"
        assert "rolling reload" not in log.read_text()
    finally:
        if master >= 0:
            os.close(master)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_control_socket_rejects_garbage(tmp_path, engine_process):
    import socket as so

    from oxtui.runtime import socket_path
    ep = engine_process(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\n'))
    path = socket_path(ep.oxfile)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    with so.socket(so.AF_UNIX) as s:
        s.connect(str(path))
        f = s.makefile("rwb")
        for junk in (b"hello\n", b"[1,2]\n", b'{"cmd": "explode"}\n', b"\xff\xfe\n"):
            f.write(junk)
            f.flush()
            reply = json.loads(f.readline())
            assert reply["ok"] is False and reply["error"]
        f.write(b"x" * 200_000 + b"\n")
        f.flush()
        assert json.loads(f.readline())["ok"] is False
    assert ep.cli("status").returncode == 0


@pytest.mark.slow
def test_logs_of_one_instance_stderr_since_json_and_flush(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.app]
        command = "sh -c 'echo out-$OXTUI_INSTANCE; echo err-$OXTUI_INSTANCE >&2; exec sleep 60'"
        instances = 2
    '''))
    ep.wait_running("app", 2)
    wait_until(lambda: "err-1" in ep.cli("logs", "-n", "50").stdout, 10, 0.1)
    one = ep.cli("logs", "app.1", "-n", "50").stdout
    assert "out-1" in one and "err-1" in one and "out-0" not in one and "err-0" not in one
    err = ep.cli("logs", "app", "--stderr", "-n", "50").stdout
    assert "err-0" in err and "err-1" in err and "out-" not in err
    assert ep.cli("logs", "--since", "1h", "-n", "50").stdout.count("out-") == 2
    time.sleep(1.2)
    assert "out-" not in ep.cli("logs", "--since", "1s", "-n", "50").stdout
    rows = [json.loads(line) for line in ep.cli("logs", "app.0", "--json", "-n", "50").stdout.splitlines()]
    assert {"at", "process", "instance", "stream", "line"} <= set(rows[0])
    assert {(r["instance"], r["stream"], r["line"]) for r in rows} >= {(0, "out", "out-0"), (0, "err", "err-0")}
    r = ep.cli("logs", "--since", "soon")
    assert r.returncode == 2 and "--since must be an interval" in r.stderr
    log = tmp_path / "logs" / "app.log"
    assert "out-0" in log.read_text()
    r = ep.cli("logs", "app", "--flush")
    assert r.returncode == 0 and "emptied the logs of app" in r.stdout
    assert "out-0" not in log.read_text() and "out-" not in ep.cli("logs", "app", "-n", "50").stdout
    ep.cli("kill", "app", "0")
    wait_until(lambda: "out-0" in log.read_text(), 10, 0.1, what="new lines into the emptied file")
    help_text = oxtui_cli("logs", "--help").stdout
    for option in ("--follow", "--lines", "--stderr", "--since", "--json", "--flush", "NAME.N"):
        assert option in help_text, option


@pytest.mark.slow
def test_start_a_program_without_an_oxfile(tmp_path):
    """`oxtui start app.js -i 2 --listen ...`, as `pm2 start` does, leaving the oxfile it used."""
    import shutil
    shutil.copy(ROOT / "sample_apps" / "server.js", tmp_path / "server.js")
    port = free_port()
    r = oxtui_cli("start", "server.js", "-i", "2", "--listen", f"127.0.0.1:{port}", cwd=tmp_path, timeout=60)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        text = (tmp_path / "oxfile.toml").read_text()
        assert text.startswith("# Written by `oxtui start server.js -i 2 --listen")
        assert 'command = "node server.js"' in text and "instances = 2" in text and f'listen = "127.0.0.1:{port}"' in text
        assert http_get(port)[0] == 200
        (tmp_path / "worker.py").write_text("import time\nwhile True: time.sleep(1)\n")
        r = oxtui_cli("start", "worker.py", "--name", "jobs", cwd=tmp_path, timeout=60)
        assert r.returncode == 0 and "added: jobs" in r.stdout, r.stdout + r.stderr
        assert "[processes.jobs]" in (tmp_path / "oxfile.toml").read_text()
        assert oxtui_cli("check", cwd=tmp_path).returncode == 0
        r = oxtui_cli("start", "server.js", cwd=tmp_path)       # the same program again: started, not refused
        assert r.returncode == 0 and "is there already" in r.stdout, r.stdout + r.stderr
        assert oxtui_cli("down", cwd=tmp_path).returncode == 0
        # what it says to do when the engine is down works: the same start brings the engine up
        r = oxtui_cli("start", "server.js", "-i", "3", cwd=tmp_path)
        assert r.returncode == 2 and "has a different [processes.server]" in r.stderr, r.stderr
        assert f"`oxtui up {tmp_path / 'oxfile.toml'}` starts it" in r.stderr
        r = oxtui_cli("up", str(tmp_path / "oxfile.toml"), timeout=60)
        assert r.returncode == 0 and http_get(port)[0] == 200, r.stdout + r.stderr
        assert oxtui_cli("down", cwd=tmp_path).returncode == 0
        r = oxtui_cli("start", "server.js", "-i", "2", "--listen", f"127.0.0.1:{port}", cwd=tmp_path, timeout=60)
        assert r.returncode == 0 and http_get(port)[0] == 200, r.stdout + r.stderr
    finally:
        oxtui_cli("down", cwd=tmp_path)


def test_start_listen_on_a_bare_port_is_every_interface_and_says_so(tmp_path):
    """`--listen :3000` means what `server.listen(3000)` means, 0.0.0.0, with a warning and the safer address;
    the broken oxfile beside it keeps anything from starting (tests bind 127.0.0.1 only)."""
    from oxtui.cli.quickstart import _listen
    assert _listen(":3000") == _listen("3000") == "0.0.0.0:3000"
    assert _listen("127.0.0.1:3000") == "127.0.0.1:3000" and _listen("[::1]:3000") == "[::1]:3000"
    (tmp_path / "app.js").write_text("")
    (tmp_path / "oxfile.toml").write_text("[processes.x]\n")
    r = oxtui_cli("start", "app.js", "--listen", ":3000", cwd=tmp_path)
    assert r.returncode == 2 and "nothing was added" in r.stderr
    assert "warning: --listen :3000 listens on every interface (0.0.0.0:3000)" in r.stderr
    assert "use --listen 127.0.0.1:3000" in r.stderr
    r = oxtui_cli("start", "app.js", "--listen", "127.0.0.1:3000", cwd=tmp_path)
    assert r.returncode == 2 and "warning" not in r.stderr


@pytest.mark.slow
def test_scale_refuses_what_check_refuses_and_the_engine_stays_answerable(tmp_path, engine_process):
    path = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        instances = 2
    ''')
    ep = engine_process(path)
    ep.wait_running("app", 2)
    for ask in (["999999"], ["+999999"]):
        r = ep.cli("scale", "app", *ask)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "do not fit in the kernel's pid space" in r.stderr and "lower instances" in r.stderr, r.stderr
    # the same words as `oxtui check` says of that count in the file
    (tmp_path / "big").mkdir()
    big = write_oxfile(tmp_path / "big", "[processes.app]\ncommand = 'sleep 600'\ninstances = 999999\n")
    check = oxtui_cli("check", str(big))
    assert check.returncode == 2 and "do not fit in the kernel's pid space" in check.stderr, check.stderr
    assert len(ep.workers("app")) == 2, "nothing was started"
    r = ep.cli("scale", "app", "3")
    assert r.returncode == 0, r.stderr
    ep.wait_running("app", 3)

    # A large scale stays answerable, and a scale back down mid-burst is obeyed at once: the instances
    # not forked yet are never forked (before, every one of them was forked, then stopped).
    burst = 3000
    assert ep.cli("scale", "app", str(burst)).returncode == 0
    wait_until(lambda: sum(w["state"] == "running" for w in ep.workers("app")) >= 50, 30, 0.05, "the burst under way")
    r = ep.cli("scale", "app", "2")
    assert r.returncode == 0 and f"app: {burst} -> 2" in r.stdout, r.stderr
    app = ep.status()["processes"][0]
    assert [(w["instance"], w["state"]) for w in app["workers"]] == [(0, "running"), (1, "running")]
    forked = 2 + sum(app["counters"]["exits"].values())     # every instance forked has ended by now, but 0-1
    assert forked < burst - 500, f"{forked} of {burst} forked: the scale down waited for the burst"


def test_events_n_prints_up_to_n_events_newest_last(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        instances = 3
    '''))
    ep.wait_running("app", 3)

    def events(*args: str) -> list[dict]:
        r = ep.cli("events", "--json", *args)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]
    every = events("-n", "1000")
    assert 3 <= len(every) < 50
    assert events() == every, "the default (50) prints them all when there are fewer"
    assert events("-n", str(len(every) + 1)) == every, "one more than there are: all of them"
    assert events("-n", "2") == every[-2:], "the newest, newest last"
    assert events("-n", "0") == []
