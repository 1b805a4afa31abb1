"""The real `oxtui OXFILE` in a pseudo-terminal that is its controlling terminal, as over SSH.

Closing the terminal's master side is what sshd does when the connection drops: the kernel hangs
the terminal up and sends SIGHUP. The workers must keep serving, without a restart and without a
failed request, and a later `oxtui` attaches to the same engine.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import signal
import sys
import threading

import psutil
import pytest
from conftest import (
    app_oxfile,
    await_until,
    free_port,
    oxtui_cli,
    wait_until,
    write_oxfile,
)
from load import Load, explain
from ptytui import PtyTUI

from oxtui.client.remote import RemoteEngine
from oxtui.tui.app import OxtuiApp
from oxtui.tui.screens import QuitScreen


def text_of(path):
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def status(oxfile):
    r = oxtui_cli("status", "--json", "-c", str(oxfile))
    return json.loads(r.stdout) if r.returncode == 0 else None


def running_pids(oxfile, n):
    snap = status(oxfile)
    if snap is None:
        return None
    ws = [w for w in snap["processes"][0]["workers"] if w["state"] == "running" and not w["role"]]
    return sorted(w["pid"] for w in ws) if len(ws) == n else None


def test_a_hang_up_keeps_every_worker_serving_in_the_same_process(tmp_path):
    port = free_port()
    oxfile = app_oxfile(tmp_path, port)
    tui = PtyTUI(oxfile)
    try:
        pids = wait_until(lambda: running_pids(oxfile, 2), 20, 0.1, "the TUI's engine to run 2 workers")
        assert status(oxfile)["engine_pid"] == tui.proc.pid
        with Load.steady(port) as load:
            load.wait_for(30)
            tui.hang_up()
            wait_until(lambda: "the terminal hung up" in text_of(tmp_path / "logs" / "oxtui.log"), 10)
            load.wait_for(100)
        assert load.failures == [], explain(load.failures, tmp_path)
        assert tui.proc.poll() is None, "the engine must outlive its terminal"
        snap = status(oxfile)
        assert snap["engine_pid"] == tui.proc.pid
        assert running_pids(oxfile, 2) == pids, "no worker restarted"
        assert all(w["restarts"] == 0 for w in snap["processes"][0]["workers"])
        headless = psutil.Process(tui.proc.pid)
        headless.cpu_percent()
        threading.Event().wait(2)
        assert headless.cpu_percent() < 20, "the frozen UI must not spin"

        r = oxtui_cli("down", "-c", str(oxfile))
        assert r.returncode == 0, r.stderr
        assert tui.proc.wait(10) == 0
        assert not any(psutil.pid_exists(p) for p in pids)
        assert (tmp_path / "logs" / "app.log").read_text().count("stopped (code 0)") == 2
    finally:
        tui.close()


def test_a_hang_up_before_the_ui_is_drawn_keeps_the_engine(tmp_path):
    """The engine starts before Textual is even imported (a second or more on a busy machine): a
    connection that drops in that moment must find the hang-up handled, not SIGHUP's default action
    killing the engine's process (a CI run lost its engine that way). The terminal hangs up as soon
    as the first worker runs, well before the grid can be drawn."""
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sh -c 'touch started; exec sleep 600'"
    ''')
    tui = PtyTUI(oxfile)
    try:
        wait_until(lambda: (tmp_path / "started").exists(), 20, 0.002, "the first worker")
        tui.hang_up()
        wait_until(lambda: "the terminal hung up" in text_of(tmp_path / "logs" / "oxtui.log"), 10, 0.05,
                   "the hang-up to be handled")
        snap = status(oxfile)
        assert snap["engine_pid"] == tui.proc.pid and snap["engine"]["recovered"] is None
        assert b"Reload" not in tui.output, "the hang-up came before the grid was drawn"
        r = oxtui_cli("down", "-c", str(oxfile))
        assert r.returncode == 0, r.stderr
        assert tui.proc.wait(10) == 0
    finally:
        tui.close()


def wchans(pid):
    """Each thread of pid: what the kernel says it waits in ("futex_do_wait", "wait_woken", ...)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                out[int(tid)] = f.read()
        except FileNotFoundError:
            pass
    return out


def stuck_writing(pid):
    """Textual's main thread waits on a lock (the writer's full queue) while its writer thread waits
    in a write to the terminal (n_tty_write's wait_woken), for 10 looks in a row. Then the tid of a
    thread that is neither (the newest: Textual's input thread): a signal to the writer would cut its
    write short and so wake the main thread, a signal to any other thread does not."""
    for _ in range(10):
        w = wchans(pid)
        writers = [t for t, c in w.items() if c == "wait_woken"]
        if w.get(pid) != "futex_do_wait" or len(writers) != 1:
            return None
        threading.Event().wait(0.02)
    return max(t for t in wchans(pid) if t not in (pid, writers[0]))


@pytest.mark.slow
def test_a_hang_up_reaches_the_engine_while_the_ui_thread_is_stuck(tmp_path):
    """The once-seen CI failure, made every time: the SSH link stalls, so the terminal takes nothing,
    Textual's writer thread blocks and the main thread blocks behind it; then the SIGHUP is handed by
    the kernel to a thread other than the main one (here Textual's input thread). A Python handler alone never
    ran: nothing woke the main thread. The process must still go headless at once, and then stop
    gracefully on SIGTERM as a headless engine does. (Sent to the writer thread instead, the signal cuts its write short, the writer
    takes the next item and the main thread wakes: that case never failed.)"""
    (tmp_path / "chatty.py").write_text("import itertools, time\n"
                                        "for i in itertools.count():\n"
                                        "    print(i, 'x' * 60, flush=True)\n"
                                        "    time.sleep(0.002)\n")
    oxfile = write_oxfile(tmp_path, f'''
        [processes.chatty]
        command = "{sys.executable} chatty.py"
    ''')
    tui = PtyTUI(oxfile)
    try:
        wait_until(lambda: b"Reload" in tui.output, 20, 0.05, "the TUI to draw its footer")
        tui.stall()
        other = wait_until(lambda: stuck_writing(tui.proc.pid), 60, 0.1,
                           "the TUI's writes to block on the stalled terminal")
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.tgkill(tui.proc.pid, other, signal.SIGHUP) == 0, os.strerror(ctypes.get_errno())
        wait_until(lambda: "the terminal hung up" in text_of(tmp_path / "logs" / "oxtui.log"), 10, 0.05,
                   f"the hang-up to be handled (threads: {wchans(tui.proc.pid)})")
        assert status(oxfile)["engine_pid"] == tui.proc.pid
        # The main thread was woken and holds the frozen UI now: SIGTERM stops the engine gracefully
        # (only the main thread can set that handler; a stuck one leaves SIGTERM's default, a kill).
        tui.proc.terminate()
        assert tui.proc.wait(15) == 0, "SIGTERM stops the headless engine gracefully"
        assert "stopped (signal SIGTERM)" in text_of(tmp_path / "logs" / "chatty.log"), "the worker was stopped"
    finally:
        tui.close()


def test_drop_the_connection_mid_reload_then_attach_again(tmp_path):
    """The issue's promise: SSH in, run oxtui, start a reload, lose the connection, come back with
    `oxtui` and find the reload finished and every app serving, no request lost."""
    port = free_port()
    oxfile = app_oxfile(tmp_path, port, instances=3)
    tui = PtyTUI(oxfile)
    try:
        old = wait_until(lambda: running_pids(oxfile, 3), 20, 0.1, "3 running workers")
        with Load.steady(port) as load:
            load.wait_for(30)
            # Each new instance boots for 1.5 s, so the reload lasts seconds: long enough to be seen
            # running and cut off mid-way (an "ok" release was once done in 1.9 s, before a poll).
            (tmp_path / "release.txt").write_text("slowok r2")
            # "r" acts on the selected process row: before the first snapshot is drawn there is none, and
            # the key only says "select a process first". The pids alone are no sign of the grid (the
            # log pane prints them too): wait for the process row with its 3 instances up.
            wait_until(lambda: b"3/3 up" in tui.output, 10, 0.05, "the TUI to draw the process row")
            tui.press("r")      # the process row is selected when the TUI opens
            try:
                wait_until(lambda: (status(oxfile)["processes"][0]["reload"] or {}).get("state") == "running",
                           10, 0.05, "the reload to start")
            except AssertionError as e:     # failed twice in 5 loaded full runs: say what the screen said
                screen = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", tui.output[-6000:]).decode(errors="replace")
                reload = status(oxfile)["processes"][0]["reload"]
                raise AssertionError(f"{e} (reload now: {reload}); the TUI's last output:\n{screen}") from None
            tui.hang_up()
            wait_until(lambda: (status(oxfile)["processes"][0]["reload"] or {}).get("state") in ("done", "failed"),
                       30, 0.1, "the reload to finish after the hang-up")
            load.wait_for(50)
        assert status(oxfile)["processes"][0]["reload"]["state"] == "done"
        assert load.failures == [], explain(load.failures, tmp_path)
        new = running_pids(oxfile, 3)
        assert not set(new) & set(old)
        assert {b.split()[0] for b in load.bodies[-20:]} == {"r2"}

        remote = RemoteEngine(oxfile.resolve())
        remote.connect()
        app = OxtuiApp(remote, oxfile, host="testhost")

        async def body():
            async with app.run_test(size=(120, 36)) as pilot:
                sleep = pilot.pause
                await await_until(lambda: app._snapshot is not None, 10, 0.05, sleep=sleep)
                header = str(app.header.render())
                assert f"attached to pid {tui.proc.pid}" in header
                assert "reload of release 2 done" in str(app.reload_panel.render())
                await pilot.press("q")
                await await_until(lambda: isinstance(app.screen, QuitScreen), 5, 0.05, sleep=sleep)
                await pilot.press("d")
        asyncio.run(body())
        assert remote.finished.wait(5)
        assert running_pids(oxfile, 3) == new, "detaching leaves every worker running"
        assert oxtui_cli("down", "-c", str(oxfile)).returncode == 0
        assert tui.proc.wait(10) == 0
    finally:
        tui.close()


def test_q_then_b_moves_the_engine_to_the_background_without_a_restart(tmp_path):
    port = free_port()
    oxfile = app_oxfile(tmp_path, port)
    tui = PtyTUI(oxfile)
    try:
        pids = wait_until(lambda: running_pids(oxfile, 2), 20, 0.1, "the TUI's engine to run 2 workers")
        helper = psutil.Process(tui.proc.pid).children()[0]
        wait_until(lambda: b"Reload" in tui.output, 10, 0.05, "the TUI to draw its footer")
        viewer = RemoteEngine(oxfile.resolve())      # a TUI attached from another terminal
        viewer.connect()
        with Load.steady(port) as load:
            load.wait_for(30)
            tui_sid = os.getsid(tui.proc.pid)
            tui.press("q")
            wait_until(lambda: b"in the background" in tui.output, 10, 0.05, "the quit choices")
            tui.press("b")
            assert tui.proc.wait(20) == 0, "the TUI process ends: the shell gets its prompt back"
            load.wait_for(100)
        assert load.failures == [], explain(load.failures, tmp_path)
        assert b"now runs in the background as pid" in tui.output
        snap = status(oxfile)
        engine = psutil.Process(snap["engine_pid"])
        # a session of its own (started through a launcher: never the TUI's child, never a session leader that
        # could take a terminal again)
        assert engine.pid != tui.proc.pid and os.getsid(engine.pid) not in (engine.pid, tui_sid)
        assert engine.terminal() is None and engine.ppid() != tui.proc.pid
        assert running_pids(oxfile, 2) == pids, "the same workers, not restarted"
        assert all(w["restarts"] == 0 for w in snap["processes"][0]["workers"])
        assert helper.is_running() and helper.ppid() != tui.proc.pid
        wait_until(lambda: viewer.snapshot()["engine_pid"] == engine.pid, 10, 0.05,
                   "the attached view to follow the engine to its new process")
        assert not viewer.finished.is_set()

        # The new engine supervises them: a crash is restarted, output still reaches the log file.
        r = oxtui_cli("kill", "app", "0", "--signal", "SIGKILL", "-c", str(oxfile))
        assert r.returncode == 0, r.stderr
        wait_until(lambda: (p := running_pids(oxfile, 2)) and pids[0] not in p and pids[1] in p, 10, 0.05,
                   "the killed worker to be replaced")
        assert "took over from pid" in text_of(tmp_path / "logs" / "oxtui.log")
        wait_until(lambda: text_of(tmp_path / "logs" / "app.log").count("ready") >= 3, 10, 0.05,
                   "the new worker's output in the log file")

        r = oxtui_cli("down", "-c", str(oxfile))
        assert r.returncode == 0, r.stderr
        wait_until(lambda: not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE, 10, 0.05,
                   "the spawner helper to exit")
        assert viewer.finished.wait(10), "a view of a stopped engine ends"
    finally:
        tui.close()


def test_after_the_move_a_sigkilled_engine_is_replaced_by_its_keeper(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        instances = 2
    ''')
    tui = PtyTUI(oxfile)
    try:
        pids = wait_until(lambda: running_pids(oxfile, 2), 20, 0.1, "2 running workers")
        wait_until(lambda: b"Reload" in tui.output, 10, 0.05, "the TUI to draw its footer")
        tui.press("q")
        wait_until(lambda: b"in the background" in tui.output, 10, 0.05, "the quit choices")
        tui.press("b")
        assert tui.proc.wait(20) == 0
        moved = status(oxfile)
        assert running_pids(oxfile, 2) == pids
        # the background engine told the keeper who it is: a SIGKILL of it is survived as well
        os.kill(moved["engine_pid"], signal.SIGKILL)
        after = wait_until(lambda: (s := status(oxfile)) and s["engine_pid"] != moved["engine_pid"] and s, 15, 0.05,
                           "a new engine")
        assert after["engine"]["recovered"]["from_pid"] == moved["engine_pid"]
        assert running_pids(oxfile, 2) == pids
        assert oxtui_cli("down", "-c", str(oxfile)).returncode == 0
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    finally:
        tui.close()
