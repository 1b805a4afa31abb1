"""Only a stop stops the apps: what happens *to* oxtui (a SIGKILLed engine or TUI, an exception in the
UI) costs no request, no output line and no history a person would miss, with no person acting.

Every test drives real processes: `oxtui up`/`run`/the TUI on a pty, real workers on a real socket
under load, real signals. The keeper (helper/forkserver.py) starts a new engine that adopts every
worker (engine/recovery.py) from what it holds and from the journal (engine/journal.py).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import APPS, PY, free_port, gone, oxtui_cli, wait_until, write_oxfile
from keepalive import KeepAliveLoad
from load import Load, explain
from ptytui import PtyTUI

from oxtui.client.connection import status_of

SAMPLES = Path(__file__).resolve().parent.parent / "sample_apps"


def oxfile_with_counter(folder: Path, port: int, instances: int = 2, release: str = "ok r1", extra: str = "") -> Path:
    """tests/apps/app.py on the port, and a process that numbers its lines (no line may go missing);
    `extra` is more of the file (another process)."""
    (folder / "release.txt").write_text(release)
    return write_oxfile(folder, f'''
        [processes.app]
        command = "{PY} {APPS / 'app.py'}"
        instances = {instances}
        listen = "127.0.0.1:{port}"
        [processes.app.ready]
        log = "^ready"

        [processes.count]
        command = "{PY} {APPS / 'counter.py'}"
        {extra}
    ''')


def node_api(port: int) -> str:
    """The Node sample (it keeps connections alive, and drains them on SIGTERM) as [processes.api]."""
    return f'''
        [processes.api]
        command = "node {SAMPLES / 'server.js'}"
        instances = 2
        listen = "127.0.0.1:{port}"
        [processes.api.ready]
        log = "listening on"
    '''


def status(oxfile: Path) -> dict | None:
    """The snapshot from the control socket, or None while no engine answers it."""
    return status_of(oxfile.resolve())


def pids(snap: dict, name: str) -> list[int]:
    p = next(p for p in snap["processes"] if p["name"] == name)
    return sorted(w["pid"] for w in p["workers"] if not w["role"] and w["state"] == "running")


def all_running(oxfile: Path, counts: dict[str, int]) -> dict | None:
    snap = status(oxfile)
    if snap is None:
        return None
    return snap if all(len(pids(snap, n)) == k for n, k in counts.items()) else None


def replaced(oxfile: Path, old_engine: int) -> dict:
    """Waits for a new engine to answer; returns its snapshot."""
    return wait_until(lambda: (s := status(oxfile)) is not None and s["engine_pid"] != old_engine and s, 15, 0.02,
                      what="a new engine to answer on the control socket")


def events(oxfile: Path) -> list[dict]:
    r = oxtui_cli("events", "--json", "-n", "1000", "-c", str(oxfile))
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def printed(log: Path) -> list[tuple[int, float]]:
    """The counter's lines in the file: (number, when it was printed)."""
    return [(int(i), float(t)) for i, t in re.findall(r"\| n (\d+) ([\d.]+)$", log.read_text(errors="replace"), re.MULTILINE)]


def numbers_in(log: Path) -> list[int]:
    return [i for i, _ in printed(log)]


def assert_contiguous(numbers: list[int]) -> None:
    """Every number once and in order from the first on: no line lost, none written twice."""
    assert numbers, "no numbered line in the log"
    gaps = [(a, b) for a, b in itertools.pairwise(numbers) if b != a + 1]
    assert not gaps, f"lines lost or repeated around {gaps[:5]} (of {len(numbers)} lines)"


IN_FLIGHT = 0.1     # s before a SIGKILL in which the engine may have read a line it had no time to write


def assert_nothing_lost_while_no_engine_ran(log: Path, killed_at: float) -> None:
    """No line written twice, none out of order, and none lost that was printed while no engine ran (the
    keeper holds the pipes). The one thing a SIGKILL can take is a read in flight: what the dying engine
    had read from the pipe and not yet written, a few lines printed just before the kill."""
    lines = printed(log)
    numbers = [i for i, _ in lines]
    assert numbers and numbers == sorted(set(numbers)), "lines written twice or out of order"
    for (a, ta), (b, tb) in itertools.pairwise(lines):
        if b != a + 1:
            lost = b - a - 1
            assert lost <= 3 and killed_at - IN_FLIGHT <= ta <= killed_at + 0.05, \
                (f"{lost} line(s) lost after n {a} (printed {ta - killed_at:+.3f} s from the kill) up to n {b} "
                 f"({tb - killed_at:+.3f} s): only a read in flight at the kill may be lost")


def down(oxfile: Path) -> None:
    r = oxtui_cli("down", "-c", str(oxfile))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def brought_down(tmp_path):
    """Oxfiles whose engine (whichever engine that is by then) `oxtui down` stops after the test."""
    started: list[Path] = []
    yield started
    for oxfile in started:
        oxtui_cli("down", "-c", str(oxfile))


def test_a_sigkilled_engine_is_replaced_at_once_and_costs_no_request_line_or_history(tmp_path, brought_down):
    port, api = free_port(), free_port()
    oxfile = oxfile_with_counter(tmp_path, port, extra=node_api(api))
    brought_down.append(oxfile)
    r = oxtui_cli("up", str(oxfile), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # some history first: a worker killed and restarted (a restart count, an exit record, events)
    first = status(oxfile)
    assert oxtui_cli("kill", "app", "0", "--signal", "SIGKILL", "-c", str(oxfile)).returncode == 0
    before = wait_until(lambda: (s := all_running(oxfile, {"app": 2, "count": 1, "api": 2})) and
                        s["processes"][0]["workers"][0]["restarts"] == 1 and s, 15, 0.05, what="app.0 restarted")
    assert pids(before, "app") != pids(first, "app")
    events_before = events(oxfile)
    old = before["engine_pid"]
    keeper = before["engine"]["keeper_pid"]
    with Load.steady(port, max_seconds=60) as fresh, \
            KeepAliveLoad(api, connections=8, max_seconds=60, pause=0.02) as kept:
        fresh.wait_for(50)
        kept.wait_for(50)
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        after = replaced(oxfile, old)
        fresh.wait_for(100)
        kept.wait_for(100)
    assert fresh.failures == [], explain(fresh.failures, tmp_path)
    assert kept.failures == [], kept.failures[:5]
    # the same workers, with their counters and history
    assert pids(after, "app") == pids(before, "app") and pids(after, "count") == pids(before, "count")
    assert pids(after, "api") == pids(before, "api")
    assert kept.reconnects == 0, "no keep-alive connection was closed"
    assert after["engine"]["keeper_pid"] == keeper
    rec = after["engine"]["recovered"]
    assert rec is not None and rec["from_pid"] == old and rec["cause"] == "SIGKILL" and rec["kept"] == 5, rec
    app_before, app_after = before["processes"][0], after["processes"][0]
    assert [w["restarts"] for w in app_after["workers"]] == [w["restarts"] for w in app_before["workers"]] == [1, 0]
    assert app_after["workers"][0]["last_exit"] == app_before["workers"][0]["last_exit"]
    assert app_after["exits"] == app_before["exits"] and app_after["exits"][-1]["signal"] == "SIGKILL"
    assert after["engine"]["started_at"] == before["engine"]["started_at"]
    evs = events(oxfile)
    assert evs[:len(events_before)] == events_before, "the event history is kept, sequence and all"
    recovered = [e for e in evs if e["event"] == "recovered"]
    assert len(recovered) == 1 and recovered[0]["seq"] > events_before[-1]["seq"]
    assert f"the engine (pid {old}) died (SIGKILL)" in recovered[0]["text"]
    # no output line lost while no engine ran (nor one the dead engine had read and not yet written)
    logs = tmp_path / "logs"
    wait_until(lambda: len(numbers_in(logs / "count.log")) > 0, 5, what="numbered lines")
    assert_nothing_lost_while_no_engine_ran(logs / "count.log", killed_at)
    assert "recovered: the engine" in (logs / "oxtui.log").read_text()
    # and a stop still stops everything
    worker_pids = pids(after, "app") + pids(after, "count") + pids(after, "api")
    down(oxfile)
    wait_until(lambda: all(gone(p) for p in worker_pids + [keeper]), 10, what="nothing left")
    assert oxtui_cli("status", "-c", str(oxfile)).returncode == 3


def test_killed_twice_in_a_row_and_in_the_middle_of_a_crash_loop(tmp_path, brought_down):
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        instances = 2

        [processes.loop]
        command = "sh -c 'sleep 0.2; exit 1'"
        backoff = 0
        max_restarts = 1000
        restart_window = 600
    ''')
    brought_down.append(oxfile)
    assert oxtui_cli("up", str(oxfile), cwd=tmp_path).returncode in (0, 1)    # `up` names the crash loop
    snap = wait_until(lambda: (s := all_running(oxfile, {"app": 2})) and s["processes"][1]["workers"][0]["restarts"] >= 3
                      and s, 15, 0.05, what="a crash loop under way")
    sleepers = pids(snap, "app")
    engines = [snap["engine_pid"]]
    loop_restarts = [snap["processes"][1]["workers"][0]["restarts"]]
    for _ in range(2):
        os.kill(engines[-1], signal.SIGKILL)
        snap = replaced(oxfile, engines[-1])
        engines.append(snap["engine_pid"])
        assert pids(snap, "app") == sleepers
        loop_restarts.append(snap["processes"][1]["workers"][0]["restarts"])
        assert snap["engine"]["recovered"]["from_pid"] == engines[-2]
    # the crash loop's count goes on from where it was: never back to 0
    assert loop_restarts == sorted(loop_restarts), loop_restarts
    wait_until(lambda: status(oxfile)["processes"][1]["workers"][0]["restarts"] > loop_restarts[-1], 10, 0.05,
               what="the loop restarted by the third engine")
    evs = events(oxfile)
    assert [e["from_pid"] for e in evs if e["event"] == "recovered"] == engines[:2]
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "one sequence across three engines"


def test_sigkill_in_the_middle_of_a_rolling_reload_runs_it_again_to_the_end(tmp_path, brought_down):
    port = free_port()
    oxfile = oxfile_with_counter(tmp_path, port, instances=3)
    brought_down.append(oxfile)
    assert oxtui_cli("up", str(oxfile), cwd=tmp_path).returncode == 0
    (tmp_path / "release.txt").write_text("slowok r2")         # each new instance boots for 1.5 s
    with Load.steady(port, max_seconds=90) as load:
        load.wait_for(30)
        reload = subprocess.Popen([PY, "-m", "oxtui", "reload", "app", "-c", str(oxfile)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            snap = wait_until(lambda: (s := status(oxfile)) and (rl := s["processes"][0]["reload"])
                              and rl["state"] == "running" and any(w["role"] and w["pid"]
                                                                   for w in s["processes"][0]["workers"])
                              and s, 15, 0.02, what="a surge instance of the reload")
            surge = [w["pid"] for w in snap["processes"][0]["workers"] if w["role"] and w["pid"]]
            os.kill(snap["engine_pid"], signal.SIGKILL)
            reload.communicate(timeout=30)          # its engine died: it says so, whatever it says
        finally:
            if reload.poll() is None:
                reload.kill()
                reload.wait()
        replaced(oxfile, snap["engine_pid"])
        # the dead engine's surge instance is stopped (it is no slot's worker: status would not show it)
        wait_until(lambda: all(gone(p) for p in surge), 20, 0.05, what=f"the surge instance(s) {surge} stopped")
        wait_until(lambda: (s := status(oxfile)) and (rl := s["processes"][0]["reload"]) and rl["state"] == "done"
                   and s["processes"][0]["release"] > snap["processes"][0]["release"], 60, 0.1,
                   what="the reload run again to its end")
        load.wait_for(50)
        tags = {body.split()[0] for body in load.bodies[-30:]}
    assert load.failures == [], explain(load.failures, tmp_path)
    assert tags == {"r2"}, f"every instance runs the new release at the end: {tags}"
    final = all_running(oxfile, {"app": 3})
    assert final is not None and not any(w["role"] for w in final["processes"][0]["workers"]), "no spare left"
    assert "runs again from the start" in (tmp_path / "logs" / "app.log").read_text()


def test_sigkill_of_oxtui_run_in_the_foreground_hands_the_workers_to_a_background_engine(tmp_path):
    oxfile = oxfile_with_counter(tmp_path, free_port())
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115 - the engine writes it for the whole test
    engine = subprocess.Popen([PY, "-m", "oxtui", "run", str(oxfile)], stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)
    try:
        before = wait_until(lambda: all_running(oxfile, {"app": 2, "count": 1}), 20, 0.05, what="everything running")
        killed_at = time.monotonic()
        engine.kill()
        engine.wait()
        after = replaced(oxfile, engine.pid)
        assert pids(after, "app") == pids(before, "app") and pids(after, "count") == pids(before, "count")
        new = psutil.Process(after["engine_pid"])
        assert "--recover" in new.cmdline() and "--background" in new.cmdline()
        assert os.getsid(new.pid) == new.pid, "a session of its own, not the dead engine's terminal"
        assert new.ppid() == after["engine"]["keeper_pid"], "the keeper reaps it and learns how it ended"
        wait_until(lambda: "starting a new one" in (tmp_path / "logs" / "oxtui-engine.out").read_text(), 5)
    finally:
        out.close()
        oxtui_cli("down", "-c", str(oxfile))
    assert_nothing_lost_while_no_engine_ran(tmp_path / "logs" / "count.log", killed_at)


def test_an_engine_that_dies_at_start_is_tried_again_later_while_the_workers_serve(tmp_path, brought_down):
    port = free_port()
    oxfile = oxfile_with_counter(tmp_path, port)
    brought_down.append(oxfile)
    assert oxtui_cli("up", str(oxfile), cwd=tmp_path).returncode == 0
    before = status(oxfile)
    good = oxfile.read_text()
    oxfile.write_text(good + "\n[processes.bad]\ncomand = 'typo'\n")      # a new engine cannot even load it
    killed_at = time.monotonic()
    os.kill(before["engine_pid"], signal.SIGKILL)
    out = tmp_path / "logs" / "oxtui-engine.out"
    wait_until(lambda: out.read_text().count("the new engine died too") >= 2, 15, 0.05, what="two failed starts")
    assert "[processes.bad]" in out.read_text(), "the new engines say why they cannot start"
    from conftest import http_get
    assert http_get(port)[0] == 200, "the workers serve all the while"
    # while it backs off, the keeper answers on the control socket in the engine's stead
    r = oxtui_cli("status", "-c", str(oxfile))
    assert r.returncode == 1 and "the keeper" in r.stderr and "3 worker(s) running" in r.stderr, r.stderr
    assert "[processes.bad]" in r.stderr and "next try in" in r.stderr, r.stderr
    oxfile.write_text(good)
    after = wait_until(lambda: (s := status(oxfile)) and s["engine_pid"] != before["engine_pid"] and s, 40, 0.1,
                       what="a later try to succeed once the oxfile is fixed")
    assert pids(after, "app") == pids(before, "app")
    rec = after["engine"]["recovered"]
    assert rec["attempts"] >= 3 and rec["cause"] == "SIGKILL", rec
    assert_nothing_lost_while_no_engine_ran(tmp_path / "logs" / "count.log", killed_at)


def test_sigkill_of_the_embedded_tui_costs_no_request(tmp_path, brought_down):
    port = free_port()
    oxfile = oxfile_with_counter(tmp_path, port)
    brought_down.append(oxfile)
    tui = PtyTUI(oxfile)
    try:
        before = wait_until(lambda: all_running(oxfile, {"app": 2, "count": 1}), 20, 0.05, what="the TUI's workers")
        assert before["engine_pid"] == tui.proc.pid
        with Load.steady(port, max_seconds=60) as load:
            load.wait_for(50)
            killed_at = time.monotonic()
            tui.proc.kill()
            after = replaced(oxfile, tui.proc.pid)
            load.wait_for(100)
        assert load.failures == [], explain(load.failures, tmp_path)
        assert pids(after, "app") == pids(before, "app")
        assert after["engine"]["recovered"]["cause"] == "SIGKILL"
        # attach: the header says what happened
        attached = PtyTUI(oxfile)
        try:
            wait_until(lambda: b"recovered from a crash at" in attached.output, 15, 0.05, what="the header's note")
        finally:
            attached.close()
    finally:
        tui.close()
    assert_nothing_lost_while_no_engine_ran(tmp_path / "logs" / "count.log", killed_at)


def test_an_exception_in_a_widget_hands_the_engine_to_the_background(tmp_path, brought_down):
    port = free_port()
    oxfile = oxfile_with_counter(tmp_path, port)
    brought_down.append(oxfile)
    tui = PtyTUI(oxfile, env={"OXTUI_TEST_RAISE_ON_KEY": "x"})
    try:
        before = wait_until(lambda: all_running(oxfile, {"app": 2, "count": 1}), 20, 0.05, what="the TUI's workers")
        wait_until(lambda: b"Reload" in tui.output, 10, 0.05, what="the TUI to draw its footer")
        with Load.steady(port, max_seconds=60) as load:
            load.wait_for(50)
            tui.press("x")
            assert tui.proc.wait(30) == 1, "a failed UI exits 1"
            after = replaced(oxfile, tui.proc.pid)
            load.wait_for(100)
        assert load.failures == [], explain(load.failures, tmp_path)
        text = tui.output.decode(errors="replace")
        assert "RuntimeError" in text and "test-only failure" in text, "the traceback is shown"
        assert "every worker keeps running in the background engine" in text
        assert pids(after, "app") == pids(before, "app") and pids(after, "count") == pids(before, "count")
        assert after["engine"]["recovered"] is None, "a hand-over, not a crash: nothing was lost"
        assert "--adopt" in psutil.Process(after["engine_pid"]).cmdline()
    finally:
        tui.close()
    assert_contiguous(numbers_in(tmp_path / "logs" / "count.log"))


def test_a_sigkilled_keeper_takes_every_worker_with_it(tmp_path, brought_down):
    """The keeper is the one process that must not die: if it does, no worker is left orphaned."""
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        instances = 2
    ''')
    brought_down.append(oxfile)
    assert oxtui_cli("up", str(oxfile), cwd=tmp_path).returncode == 0
    snap = status(oxfile)
    old = pids(snap, "app")
    os.kill(snap["engine"]["keeper_pid"], signal.SIGKILL)
    wait_until(lambda: all(gone(p) for p in old), 10, 0.05, what="the workers to die with their keeper")
    # the engine notices, starts a new keeper and the workers again
    after = wait_until(lambda: all_running(oxfile, {"app": 2}), 15, 0.1, what="new workers")
    assert after["engine_pid"] == snap["engine_pid"] and after["engine"]["keeper_pid"] != snap["engine"]["keeper_pid"]
    # and the new helper was made a keeper: the engine's own death is survived again
    os.kill(after["engine_pid"], signal.SIGKILL)
    again = replaced(oxfile, after["engine_pid"])
    assert pids(again, "app") == pids(after, "app") and again["engine"]["keeper_pid"] == after["engine"]["keeper_pid"]


def test_a_stop_asked_for_is_never_undone_by_the_keeper(tmp_path):
    """`oxtui down` then a SIGKILL of the engine while it stops: the keeper finishes the stop."""
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        instances = 2
        stop_signal = "SIGWINCH"
        stop_timeout = 30
    ''')
    assert oxtui_cli("up", str(oxfile), cwd=tmp_path).returncode == 0
    snap = status(oxfile)
    worker_pids = pids(snap, "app")
    stopping = subprocess.Popen([PY, "-m", "oxtui", "down", "-c", str(oxfile)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (s := status(oxfile)) is not None and all(w["state"] == "stopping"
                                                                   for w in s["processes"][0]["workers"]),
                   10, 0.02, what="the workers stopping")
        os.kill(snap["engine_pid"], signal.SIGKILL)
        wait_until(lambda: all(gone(p) for p in worker_pids + [snap["engine"]["keeper_pid"]]), 10, 0.05,
                   what="the keeper to end the stop instead of starting an engine")
        assert status(oxfile) is None
    finally:
        stopping.wait(30)


def test_down_while_no_engine_can_start_stops_everything_through_the_keeper(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        instances = 2
    ''')
    assert oxtui_cli("up", str(oxfile), cwd=tmp_path).returncode == 0
    snap = status(oxfile)
    oxfile.write_text(oxfile.read_text() + "\n[processes.bad]\ncomand = 'typo'\n")
    os.kill(snap["engine_pid"], signal.SIGKILL)
    out = tmp_path / "logs" / "oxtui-engine.out"
    wait_until(lambda: "the new engine died too" in out.read_text(), 15, 0.05, what="a failed start")
    r = oxtui_cli("down", "-c", str(oxfile))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"stopped the engine (pid {snap['engine']['keeper_pid']})" in r.stdout
    assert all(gone(p) for p in pids(snap, "app") + [snap["engine"]["keeper_pid"]])
    assert oxtui_cli("status", "-c", str(oxfile)).returncode == 3


def test_sigkill_while_a_canary_runs_stops_the_canary_and_runs_the_reload_again(tmp_path, brought_down):
    port = free_port()
    (tmp_path / "release.txt").write_text("ok r1")
    oxfile = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'app.py'}"
        instances = 2
        listen = "127.0.0.1:{port}"
        [processes.app.ready]
        log = "^ready"
        http = "/health"
        timeout = 15
    ''')
    brought_down.append(oxfile)
    assert oxtui_cli("up", str(oxfile), cwd=tmp_path).returncode == 0
    (tmp_path / "release.txt").write_text("slowok r2")         # the canary boots for 1.5 s
    with Load.steady(port, max_seconds=90) as load:
        load.wait_for(30)
        reload = subprocess.Popen([PY, "-m", "oxtui", "reload", "app", "-c", str(oxfile)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            snap = wait_until(lambda: (s := status(oxfile)) and any(w["role"] == "canary" and w["pid"]
                                                                    for w in s["processes"][0]["workers"]) and s,
                              15, 0.02, what="the canary, started")
            canary = next(w["pid"] for w in snap["processes"][0]["workers"] if w["role"] == "canary")
            os.kill(snap["engine_pid"], signal.SIGKILL)
            reload.wait(30)
        finally:
            if reload.poll() is None:
                reload.kill()
                reload.wait()
        replaced(oxfile, snap["engine_pid"])
        wait_until(lambda: gone(canary), 15, 0.05, what="the dead engine's canary stopped")
        final = wait_until(lambda: (s := status(oxfile)) and (rl := s["processes"][0]["reload"]) and rl["state"] == "done"
                           and s["processes"][0]["release"] > snap["processes"][0]["release"] and s, 60, 0.1,
                           what="the reload run again to its end")
        load.wait_for(50)
    assert load.failures == [], explain(load.failures, tmp_path)
    slots = [w for w in final["processes"][0]["workers"] if not w["role"]]
    assert len(slots) == 2 and canary not in [w["pid"] for w in slots], "the canary never took a slot"
