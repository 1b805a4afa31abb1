"""Crash restarts approved in advance (oxtui/engine/approval.py): the spawner helper restarts a crashed
instance on its own, at once, and the engine records it after. Never what the engine would not have
restarted at once (a task's end, a restart due for backoff, the crash that makes a
crash loop), and never an instance the engine stops itself. Every case runs real processes; a
helper restart the engine did not want is logged (and ended), which is what these tests look for."""

from __future__ import annotations

import os
import signal
import time

import psutil
from conftest import app_oxfile, await_until, free_port, gone, procs, wait_until, write_oxfile

ARMED = 1.6          # an approval is sent 1 s (approval.ARM_AFTER) after a start: how long "never armed" is waited
UNWANTED = "restarted by the spawner helper as approved, ended: not wanted any more"


def helper_of(ep) -> psutil.Process:
    return next(c for c in psutil.Process(ep.proc.pid).children() if "forkserver" in " ".join(c.cmdline()))


def instances(helper: psutil.Process) -> set[int]:
    found = set()
    for c in helper.children():
        try:
            if c.status() != psutil.STATUS_ZOMBIE and c.name() != "oxtui-spare":
                found.add(c.pid)
        except psutil.NoSuchProcess:
            pass            # reaped between the listing and the look: not an instance any more
    return found


def _name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        return None


def said(ep) -> str:
    """The engine's own lines in the merged log (events, exits, starts, what it ended)."""
    return "\n".join(line for line in ep.cli("logs", "-n", "5000").stdout.splitlines() if " ~ " in line)


def worker(ep, name: str, instance: int = 0) -> dict:
    return next(w for w in ep.workers(name) if w["instance"] == instance and w["role"] is None)


def armed(ep, name: str, n: int) -> None:
    """Until n running instances of name are approved (status says so, 1 s after each start)."""
    wait_until(lambda: sum(w["approved"] and w["state"] == "running" and w["role"] is None
                           for w in ep.workers(name)) == n, 10, 0.05, what=f"{n} approved instance(s) of {name}")


def test_a_crash_is_restarted_by_the_helper_while_the_engine_is_frozen(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 600"\ninstances = 2\n'))
    old = {w["instance"]: w["pid"] for w in ep.wait_running("app", 2)}
    armed(ep, "app", 2)
    helper = helper_of(ep)
    os.kill(ep.proc.pid, signal.SIGSTOP)
    try:
        os.kill(old[0], signal.SIGKILL)
        # By the program it exec'd: a fresh spare, forked 5 ms after the restart, wears the helper's
        # name until it renames itself, so a new child alone is not yet the instance.
        new = wait_until(lambda: {p for p in instances(helper) - set(old.values()) if _name(p) == "sleep"}, 5,
                         0.005, what="a new instance, exec'd, while the engine is stopped")
        assert psutil.Process(ep.proc.pid).status() == psutil.STATUS_STOPPED, "the engine had no part in it"
    finally:
        os.kill(ep.proc.pid, signal.SIGCONT)
    (pid,) = new
    w0 = wait_until(lambda: (w := worker(ep, "app"))["pid"] == pid and w, 10, 0.05, what="the engine's record")
    assert w0["restarts"] == 1 and worker(ep, "app", 1)["pid"] == old[1]
    last = procs(ep)["app"]["exits"][-1]
    assert (last["pid"], last["signal"], last["cause"]) == (old[0], "SIGKILL", "killed"), last
    text = said(ep)
    assert f"pid {old[0]} exited with signal SIGKILL after" in text
    assert f"started pid {pid} (restart #1)" in text and UNWANTED not in text


def test_what_the_engine_stops_itself_is_never_restarted_by_the_helper(tmp_path, engine_process):
    starts = tmp_path / "starts"
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.app]
        command = "sh -c 'echo $$ >> {starts}; exec sleep 600'"
        instances = 3
        stop_timeout = 5
    '''))
    ep.wait_running("app", 3)
    armed(ep, "app", 3)
    assert ep.cli("scale", "app", "2").returncode == 0                # stops instance 2
    time.sleep(0.5)
    assert ep.cli("restart", "app").returncode == 0                   # both, gracefully
    ep.wait_running("app", 2)
    armed(ep, "app", 2)
    assert ep.cli("reload", "app").returncode == 0                    # drains both old ones
    ep.wait_running("app", 2)
    armed(ep, "app", 2)                                               # the reload's instances are armed too
    assert ep.cli("stop", "app").returncode == 0
    wait_until(lambda: all(w["state"] == "stopped" for w in ep.workers("app")), 10, 0.1, what="stopped")
    time.sleep(0.5)
    text = said(ep)
    assert UNWANTED not in text, text
    assert len(starts.read_text().split()) == 3 + 2 + 2, "nothing started but what the engine asked for"
    assert not instances(helper_of(ep))


def test_only_what_the_engine_would_restart_at_once_is_approved(tmp_path, engine_process):
    (tmp_path / "secret.env").write_text("TOKEN=first\n")
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.clean]
        command = "sh -c 'sleep 2.5; exit 0'"
        restart = "on-failure"
        [processes.backoff]
        command = "sleep 600"
        backoff = 0.5
        [processes.loop]
        command = "sleep 600"
        backoff = 0
        max_restarts = 2
        [processes.secret]
        command = "sh -c 'echo token=$TOKEN; exec sleep 600'"
        env_file = "secret.env"
    '''))
    ep.wait_running("backoff", 1)
    ep.wait_running("loop", 1)
    ep.wait_running("secret", 1)
    armed(ep, "backoff", 1)
    armed(ep, "loop", 1)
    assert not worker(ep, "secret")["approved"], "env_file is read at every start: never approved"
    # backoff: the first crash restarts at once (approved); the next is due for backoff (the process
    # has not run the 10 s that start it over), so the helper leaves it to the engine
    first = worker(ep, "backoff")["pid"]
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: (w := worker(ep, "backoff"))["pid"] not in (None, first) and w["pid"], 5, 0.02,
                        what="the first restart")
    # loop: its first crash is approved; after it, one more is the crash loop, which only the engine calls
    os.kill(worker(ep, "loop")["pid"], signal.SIGKILL)
    wait_until(lambda: worker(ep, "loop")["restarts"] == 1 and worker(ep, "loop")["state"] == "running", 5, 0.02,
               what="loop's first restart")
    time.sleep(ARMED)
    os.kill(second, signal.SIGKILL)
    os.kill(worker(ep, "loop")["pid"], signal.SIGKILL)
    wait_until(lambda: worker(ep, "backoff")["pid"] not in (None, second), 5, 0.02, what="the second restart")
    wait_until(lambda: worker(ep, "loop")["state"] == "errored", 5, 0.05, what="the crash loop")
    # secret: its env_file is read at every start, so a restart the helper made would miss the new token
    (tmp_path / "secret.env").write_text("TOKEN=second\n")
    os.kill(worker(ep, "secret")["pid"], signal.SIGKILL)
    wait_until(lambda: "token=second" in ep.cli("logs", "secret", "-n", "10").stdout, 5, 0.05, what="the new token")
    # clean: a task (on-failure) that ended with 0: completed, not restarted
    wait_until(lambda: worker(ep, "clean")["state"] == "completed", 10, 0.1, what="clean completed")
    time.sleep(0.5)
    text = said(ep)
    assert UNWANTED not in text, text
    assert "backoff.0  ~ restarting in 0." in text, "the second crash waited for its backoff"
    assert worker(ep, "clean")["restarts"] == 0 and worker(ep, "backoff")["restarts"] == 2


def test_a_reload_s_new_instance_is_not_approved_before_it_is_the_release_s(tmp_path, engine_process):
    """A reload's replacement that dies is a failed release, never restarted: the helper must not hold
    an approval for it while it is still a surge instance (here it crashes 1.5 s after it is ready,
    inside its 3 s min_ready)."""
    ep = engine_process(app_oxfile(tmp_path, free_port(), instances=1, extra="[processes.app.reload]\nmin_ready = 3"))
    (old,) = [w["pid"] for w in ep.wait_running("app", 1)]
    armed(ep, "app", 1)
    (tmp_path / "release.txt").write_text("crashlater 1.5")
    r = ep.cli("reload", "app", timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    text = said(ep)
    assert UNWANTED not in text, text
    assert [w["pid"] for w in ep.wait_running("app", 1)] == [old], "the old instance kept serving"


async def test_a_restart_no_worker_takes_is_ended(tmp_path, monkeypatch):
    """The helper's restart of an instance whose worker is gone (cancelled while the message was on its
    way) must neither run unsupervised nor hold up a hand-over: the spawner ends it after a while."""
    import asyncio

    from oxtui.engine import spawn
    monkeypatch.setattr(spawn, "REPLACEMENT_TTL", 0.5)
    monkeypatch.setattr(spawn, "UNWANTED_GRACE", 3.0)
    # The restart notes the stop signal and does not stop: it is asked first (it may be serving
    # already), then SIGKILLed once the grace is over.
    marks = tmp_path / "marks"
    stubborn = f"""sh -c 'trap "echo term >> {marks}" TERM; echo up >> {marks}; while :; do sleep 0.05; done'"""

    spawner = spawn.Spawner()
    try:
        first = await spawner.spawn("sleep 60", str(tmp_path), dict(os.environ))
        assert spawner.approve(first.pid, stubborn, str(tmp_path), dict(os.environ), None, None, 0.0)
        exited = spawner.exited(first.pid)
        os.kill(first.pid, signal.SIGKILL)
        await exited
        new = spawner.replacements[first.pid]                # nobody takes it
        await await_until(lambda: marks.exists(), 5, what="the restart running")
        assert not spawner.quiet(), "a hand-over waits while it is there"
        await asyncio.sleep(0.8)
        assert first.pid not in spawner.replacements and spawner.quiet()
        await await_until(lambda: "term" in marks.read_text(), 5, what="the stop signal first")
        assert not gone(new.pid), "not SIGKILLed before its grace is over"
        await await_until(lambda: gone(new.pid), 5, what="SIGKILL after the grace")
    finally:
        spawner.close()


def test_a_burst_of_stops_restarts_none_of_them(tmp_path, engine_process):
    """The engine revokes and signals many instances back to back while the helper reaps the first ones:
    each end must be checked against the revokes queued by then, not only those queued when the helper
    began reaping (one check per batch let the later instances of a burst restart)."""
    ep = engine_process(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 600"\ninstances = 48\n'))
    for _ in range(2):
        ep.wait_running("app", 48)
        armed(ep, "app", 48)
        assert ep.cli("stop", "app").returncode == 0
        wait_until(lambda: all(w["state"] == "stopped" for w in ep.workers("app")), 10, 0.1, what="stopped")
        assert ep.cli("start", "app").returncode == 0
    time.sleep(0.5)
    assert UNWANTED not in said(ep)


def test_the_helper_checks_each_end_against_the_revokes_queued_by_then(monkeypatch):
    """The interleaving the burst test above hits only sometimes, forced: the helper has looked at its
    queue, then the engine revokes and signals an instance, then the helper reaps it. The helper's own
    code on a real child and a real socket; the hook on waitpid only decides when things happen."""
    import json
    import socket

    from oxtui.engine.commandline import request
    from oxtui.helper import forkserver as fs

    engine_end, helper_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    out_r, out_w = os.pipe()
    req = request("sleep 600", str(os.getcwd()), dict(os.environ), None, None)
    made: list[int] = []
    try:
        pid = fs._start(req, [out_w, out_w], os.getpid())
        made.append(pid)
        fs.APPROVED.approve({"pid": pid, "spawn": req, "min_uptime": 0.0}, [], fs._spawned)
        real_waitpid = os.waitpid
        calls = []

        def waitpid(_pid: int, _flags: int) -> tuple[int, int]:
            calls.append(_pid)
            if len(calls) > 1:
                return 0, 0                       # nothing else has ended
            engine_end.send(json.dumps({"cmd": "revoke", "pid": pid}).encode())   # as Worker._terminate:
            os.kill(pid, signal.SIGTERM)                                          # revoke, then signal
            wait_until(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 5, 0.005, what="its end")
            return real_waitpid(pid, 0)           # only ours: the test process has other children

        monkeypatch.setattr(fs.os, "waitpid", waitpid)
        monkeypatch.setattr(fs, "_sock", helper_end)
        fs._reap(os.getpid(), -1)
        monkeypatch.undo()
        msg = json.loads(engine_end.recv(1 << 20))
        if msg.get("then"):
            made.append(msg["then"]["pid"])
        assert msg["exit"] == pid and "then" not in msg, msg
    finally:
        monkeypatch.undo()
        for p in made[1:]:
            os.kill(p, signal.SIGKILL)
            os.waitpid(p, 0)
        for fd in (out_r, out_w):
            os.close(fd)
        engine_end.close()
        helper_end.close()
        for table in (fs._spawned, fs._born, fs.APPROVED.approved, fs.APPROVED.sockets):
            table.clear()
