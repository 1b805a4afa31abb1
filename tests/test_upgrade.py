"""`oxtui upgrade`: an engine of an earlier release (tests/releases/) is upgraded to the code under test
the way a server does it: the package is replaced on disk (`pip install -U`), then `oxtui upgrade`.
Every app keeps its pid and its requests, the history stays, and no process of the old version is left.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import APPS, ROOT, free_port, marked_pids, oxtui_cli, wait_until, write_oxfile
from installs import OLD_VERSION, Install
from load import Load

from oxtui.engine.control import ANSWER_WAIT
from oxtui.runtime import socket_path


@pytest.fixture
def old(tmp_path):
    return Install(tmp_path / "venv")


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def helper_of(engine_pid: int) -> int:
    """The engine's spawner helper (its child running forkserver.py)."""
    return next(pid for pid in marked_pids() if any(a.endswith("forkserver.py") for a in cmdline(pid))
                and int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == engine_pid)


def running(snap: dict, name: str) -> dict[int, int]:
    p = next(p for p in snap["processes"] if p["name"] == name)
    return {w["instance"]: w["pid"] for w in p["workers"] if w["state"] == "running" and not w["role"]}


def up(old: Install, oxfile: Path) -> None:
    """`oxtui up` of the old release, inside the test's try (a crash-looping process makes it exit 1, with
    the engine running all the same), until web's four instances run."""
    r = old.oxtui("up", str(oxfile))
    assert r.returncode == 0 or "keeps running the rest" in r.stderr, r.stderr
    wait_until(lambda: len(running(old.status(oxfile), "web")) == 4, 20, 0.1, what="4 web instances")


def timetable_fault(times: list[float], began: float, ended: float, every: float) -> str | None:
    """What is wrong with a schedule's run times around an upgrade that ran from began to ended, or None.

    Every slot of the timetable runs once. A slot that fell due while the engines handed over (the old
    one's loop frozen; one slot or several, as long as the upgrade took) is owed: the new engine runs
    it once, at once when it takes over, and one run pays for every slot owed then, as a tick during a
    long run is skipped, not queued. Every other run is on time.
    """
    early = [t for t in times if t < began]
    phase = sorted(t - every * round((t - early[0]) / every) for t in early)[len(early) // 2]
    # A run belongs to the latest slot due when it began (a hair early for the phase's own jitter).
    slots = [int((t - phase + every / 8) // every) for t in times]
    settle = ended + 1.5
    # ... except the run owed at takeover that happens to begin that hair before the next slot is due,
    # with that slot's on-time run right after it (seen in a full run: owed 7.85, on time 8.0).
    for i in range(len(times) - 1):
        k = slots[i]
        due = phase + every * k
        if (slots[i + 1] == k and k - 1 not in slots and began <= times[i] <= settle
                and times[i] < due <= times[i + 1] + every / 40):
            slots[i] = k - 1
    if slots != sorted(set(slots)):
        return "a slot run twice"
    handed_over = lambda k: began <= phase + every * k <= ended
    for t, k in zip(times, slots):
        if not began <= t <= settle and t - (phase + every * k) > every / 4:
            return "a run off its slot"
    for k in set(range(slots[0], slots[-1] + 1)) - set(slots):
        payer = next(i for i, s in enumerate(slots) if s > k)
        if not handed_over(k) or not handed_over(slots[payer]) or times[payer] > settle:
            return f"slot {k} skipped"
    return None


def web_oxfile(folder: Path, port: int, extra: str = "") -> Path:
    (folder / "release.txt").write_text("ok r1")
    return write_oxfile(folder, f'''
        [processes.web]
        command = "{sys.executable} {APPS / 'app.py'}"
        instances = 4
        listen = "127.0.0.1:{port}"
        [processes.web.ready]
        log = "^ready"
        [processes.web.reload]
        min_ready = 0.2
        {extra}
    ''')


def test_an_upgrade_keeps_every_worker_its_requests_and_the_history(old, tmp_path):
    port = free_port()
    runs = tmp_path / "runs"
    oxfile = web_oxfile(tmp_path, port, f'''
        [processes.flaky]
        command = "sh -c 'sleep 0.4; exit 1'"
        backoff = 0.3
        max_restarts = 1000
        [processes.tick]
        command = "sh -c 'date +%s.%N >> {runs}'"
        restart = "never"
        [processes.tick.schedule]
        every = "2s"
    ''')
    try:
        up(old, oxfile)
        before = old.status(oxfile)
        assert before["engine"]["version"] == OLD_VERSION
        old_engine = before["engine_pid"]
        helper = helper_of(old_engine)
        wait_until(lambda: runs.exists() and len(runs.read_text().split()) >= 2, 10, 0.1, what="two scheduled runs")
        with Load.steady(port) as load:
            load.wait_for(50)
            before = old.status(oxfile)
            events_before = [json.loads(line) for line in
                             old.oxtui("events", "--json", "-n", "1000", "-c", str(oxfile)).stdout.splitlines()]
            old.install_code_under_test()
            began = time.time()
            r = old.oxtui("upgrade", "-c", str(oxfile))
            ended = time.time()
            assert r.returncode == 0, r.stdout + r.stderr
            load.wait_for(50)
        assert f"oxtui {OLD_VERSION} (pid {old_engine}) -> 0.2.0 (pid " in r.stdout, r.stdout
        assert load.failures == [], load.failures[:5]
        after = old.status(oxfile)
        assert after["engine"]["version"] == "0.2.0" and after["engine_pid"] != old_engine
        assert running(after, "web") == running(before, "web"), "every web instance kept its pid"
        by = {p["name"]: p for p in after["processes"]}
        was = {p["name"]: p for p in before["processes"]}
        assert by["flaky"]["workers"][0]["restarts"] >= was["flaky"]["workers"][0]["restarts"] > 0
        assert by["flaky"]["exits"][:len(was["flaky"]["exits"])] == was["flaky"]["exits"], "exit records kept"
        assert by["flaky"]["counters"]["exits"]["crash"] >= len(was["flaky"]["exits"])
        events = [json.loads(line) for line in old.oxtui("events", "--json", "-n", "1000", "-c", str(oxfile))
                  .stdout.splitlines()]
        assert events[:len(events_before)] == events_before, "the event history is kept"
        assert f"took over from pid {old_engine} (oxtui {OLD_VERSION})" in old.oxtui("logs", "-n", "200", "-c",
                                                                                 str(oxfile)).stdout
        # no process of the old version: a new engine, and the helper exec'd the installed program in place
        assert not Path(f"/proc/{old_engine}").exists() or "Z" in Path(f"/proc/{old_engine}/stat").read_text()
        assert "--adopt" in cmdline(after["engine_pid"])
        now = cmdline(helper)
        assert len(now) == 6 and '"spawned"' in now[5], f"the helper was not re-exec'd: {now}"
        # the timetable goes on as before: a run every 2 s, none skipped or doubled around the upgrade
        seen = len(runs.read_text().split())
        wait_until(lambda: len(runs.read_text().split()) >= seen + 2, 10, 0.1, what="two more scheduled runs")
        times = [float(t) for t in runs.read_text().split()]
        fault = timetable_fault(times, began, ended, every=2)
        assert fault is None, f"{fault}: runs {[round(x - times[0], 2) for x in times]}, " \
                              f"upgrade {began - times[0]:.2f}-{ended - times[0]:.2f} s"
    finally:
        old.oxtui("down", "-c", str(oxfile))


def test_an_upgrade_waits_for_a_reload_and_goes_through_a_crash_loop(old, tmp_path):
    port = free_port()
    oxfile = web_oxfile(tmp_path, port, '''
        [processes.loop]
        command = "sh -c 'sleep 0.3; exit 1'"
        backoff = 0
        max_restarts = 25
        restart_window = 600
    ''')
    try:
        up(old, oxfile)
        (tmp_path / "release.txt").write_text("slowok r2")       # each new instance takes 1.5 s to boot
        reload = subprocess.Popen([str(old.python), "-m", "oxtui", "reload", "web", "-c", str(oxfile)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: (p := next(p for p in old.status(oxfile)["processes"] if p["name"] == "web"))["reload"]
                   and p["reload"]["state"] == "running", 10, 0.05, what="the reload under way")
        old.install_code_under_test()
        r = old.oxtui("upgrade", "-c", str(oxfile))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "waiting: web: a rolling reload is in progress" in r.stdout
        out, err = reload.communicate(timeout=120)
        # The reload ran to its end. 0.2.0rc2 can still cut its answer, in the instant between the end
        # and the answer: that engine hands over without waiting for answers in flight (fixed since:
        # test_an_upgrade_waits_for_the_answers_being_read_and_not_for_a_reader_that_never_reads).
        assert reload.returncode == 0 or ("the engine closed the connection" in err
                                          and "web: done: 4 instance(s) replaced" in out), out + err
        snap = old.status(oxfile)
        web = next(p for p in snap["processes"] if p["name"] == "web")
        assert web["reload"]["state"] == "done" and web["release"] == 2 and snap["engine"]["version"] == "0.2.0"
        # the crash loop went over with its window: it is declared after 25 exits in all, not 25 more
        loop = wait_until(lambda: (w := next(p for p in old.status(oxfile)["processes"]
                                             if p["name"] == "loop")["workers"][0])["state"] == "errored" and w,
                          60, 0.2, what="the crash loop declared")
        assert loop["restarts"] == 24, loop["restarts"]
    finally:
        old.oxtui("down", "-c", str(oxfile))


def test_a_broken_install_leaves_the_old_engine_running(old, tmp_path):
    port = free_port()
    oxfile = web_oxfile(tmp_path, port)
    try:
        up(old, oxfile)
        before = old.status(oxfile)
        old.install_code_under_test()
        main = old.site / "oxtui" / "cli" / "main.py"
        main.write_text("this is not python (a broken install)\n" + main.read_text())
        r = old.oxtui("upgrade", "-c", str(oxfile))
        assert r.returncode == 1
        shutil.copy(ROOT / "oxtui" / "cli" / "main.py", main)         # `oxtui status` needs a working oxtui
        assert "not upgraded, nothing changed" in r.stderr and "SyntaxError" in r.stderr, r.stderr
        after = old.status(oxfile)
        assert after["engine_pid"] == before["engine_pid"] and after["engine"]["version"] == OLD_VERSION
        assert running(after, "web") == running(before, "web")
        assert old.oxtui("scale", "web", "5", "-c", str(oxfile)).returncode == 0, "it still supervises"
    finally:
        old.oxtui("down", "-c", str(oxfile))


def test_an_upgrade_refused_for_a_moment_is_tried_again_on_the_reply_s_field_or_an_old_engine_s_words():
    from oxtui.cli.upgrade import worth_retrying
    from oxtui.client.connection import ControlError
    from oxtui.engine.handover import NotNow
    soon, later = NotNow("a worker has just exited", soon=True), NotNow("web: a reload is in progress")
    assert worth_retrying(ControlError(f"not upgraded, nothing changed: {soon.what}", retry=True)), \
        "the field decides, whatever the words"
    assert worth_retrying(ControlError(f"not upgraded, nothing changed: {soon}")), "an engine from before the field"
    assert not worth_retrying(ControlError(f"not upgraded, nothing changed: {later}"))


def test_which_versions_hand_over_agrees_with_the_releases_tested():
    from oxtui.format import FIRST_TO_HAND_OVER, hands_over, older
    assert FIRST_TO_HAND_OVER == OLD_VERSION, "the oldest release the upgrade tests run is the first that hands over"
    assert hands_over("0.2.0rc2") and hands_over("0.2.0") and hands_over("0.3.1")
    assert not hands_over("0.1.0") and not hands_over("0.2.0rc1") and not hands_over(None)
    assert older("0.1.0") and older("0.2.0rc2") and not older("0.2.0")


def test_versions_and_an_older_engine_in_status_and_ls(old, tmp_path):
    oxfile = write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\n')
    try:
        assert old.oxtui("up", str(oxfile)).returncode == 0
        new = [sys.executable, "-m", "oxtui"]
        r = subprocess.run([*new, "status", "-c", str(oxfile)], capture_output=True, text=True, timeout=30, check=False)
        assert f"oxtui {OLD_VERSION}, older than the installed 0.2.0" in r.stdout and "oxtui upgrade" in r.stdout
        listed = json.loads(subprocess.run([*new, "ls", "--json"], capture_output=True, text=True, timeout=30, check=False).stdout)
        assert [(e["version"], e["older"]) for e in listed] == [(OLD_VERSION, True)]
        text = subprocess.run([*new, "ls"], capture_output=True, text=True, timeout=30, check=False).stdout
        assert f"{OLD_VERSION} (older)" in text
    finally:
        old.oxtui("down", "-c", str(oxfile))


@pytest.mark.slow
def test_an_upgrade_waits_for_the_answers_being_read_and_not_for_a_reader_that_never_reads(tmp_path):
    """The old engine's connections die with it: an upgrade first lets every answer in flight reach
    its reader (as the reply to a reload that just ended), but a reader that stopped reading holds it
    up ANSWER_WAIT s at most. This release upgraded to itself."""
    oxfile = write_oxfile(tmp_path, f'''
        [processes.chatty]
        command = "{sys.executable} -c 'import time; [print(\\"x\\" * 150, i) for i in range(12000)]; time.sleep(600)'"
    ''')
    try:
        assert oxtui_cli("up", str(oxfile)).returncode == 0
        wait_until(lambda: len(oxtui_cli("logs", "chatty", "-n", "20000", "-c", str(oxfile)).stdout.splitlines())
                   >= 8000, 20, 0.2, what="the chatty process's lines")
        first = json.loads(oxtui_cli("status", "--json", "-c", str(oxfile)).stdout)["engine_pid"]

        def ask_for_lines() -> socket.socket:
            # 8,000 lines of 160 bytes: far more than the socket holds, so the answer stays in flight
            # until we read it
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(socket_path(oxfile)))
            s.sendall(b'{"cmd": "logs", "name": "chatty", "n": 8000}\n')
            return s
        slow = ask_for_lines()
        time.sleep(0.5)
        upgrade = subprocess.Popen([sys.executable, "-m", "oxtui", "upgrade", "-c", str(oxfile)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        assert upgrade.poll() is None, "the upgrade went ahead with an answer in flight"
        with slow, slow.makefile("rb") as f:
            answer = json.loads(f.readline())
        lines = answer["result"]["lines"]
        assert answer["ok"] and len(lines) == 8000 and lines[-1][4].endswith(" 11999"), "the whole answer"
        out, err = upgrade.communicate(timeout=60)
        assert upgrade.returncode == 0, out + err
        assert "waiting: 1 other command(s) being answered" in out, out
        second = json.loads(oxtui_cli("status", "--json", "-c", str(oxfile)).stdout)["engine_pid"]
        assert second != first
        # one that never reads: the upgrade waits for it ANSWER_WAIT s, then goes ahead and cuts it
        with ask_for_lines() as stuck:
            began = time.monotonic()
            r = oxtui_cli("upgrade", "-c", str(oxfile), timeout=120)
            took = time.monotonic() - began
            assert r.returncode == 0, r.stdout + r.stderr
            assert ANSWER_WAIT - 1 <= took < ANSWER_WAIT + 30, took
            stuck.settimeout(10)
            cut = b"".join(iter(lambda: stuck.recv(1 << 20), b""))
            assert not cut.endswith(b"\n"), "its answer was cut with the old engine"
        third = json.loads(oxtui_cli("status", "--json", "-c", str(oxfile)).stdout)["engine_pid"]
        assert third not in (first, second)
    finally:
        oxtui_cli("down", "-c", str(oxfile))


def test_after_an_upgrade_from_an_engine_without_a_keeper_its_death_is_survived(old, tmp_path):
    """0.2.0rc2's helper held no pipes: after the upgrade the new engine hands them to the helper (now a
    keeper), or a SIGKILL of that engine would leave the workers' output with no reader at all."""
    oxfile = write_oxfile(tmp_path, f'''
        [processes.count]
        command = "{sys.executable} {APPS / 'counter.py'} 0.01"
    ''')
    try:
        r = old.oxtui("up", str(oxfile))
        assert r.returncode == 0, r.stderr
        old.install_code_under_test()
        r = old.oxtui("upgrade", "-c", str(oxfile))
        assert r.returncode == 0, r.stdout + r.stderr
        before = old.status(oxfile)
        pid = running(before, "count")[0]
        import os
        import signal
        os.kill(before["engine_pid"], signal.SIGKILL)
        after = wait_until(lambda: (r := old.oxtui("status", "--json", "-c", str(oxfile))).returncode == 0
                           and (s := json.loads(r.stdout))["engine_pid"] != before["engine_pid"] and s, 15, 0.1,
                           what="a new engine in place of the killed one")
        assert running(after, "count") == {0: pid}, "the worker kept its pid"
        log = tmp_path / "logs" / "count.log"
        seen = log.read_text().count("| n ")
        wait_until(lambda: log.read_text().count("| n ") > seen + 20, 10, 0.1,
                   what="the worker's output read by the new engine")
    finally:
        old.oxtui("down", "-c", str(oxfile))
