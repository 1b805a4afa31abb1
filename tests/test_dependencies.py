"""depends_on, schedules and user/group (#11), against real children through the real `oxtui run`."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pwd
import signal
import time
from datetime import UTC, datetime

import psutil
import pytest
from conftest import PY, oxtui_cli, procs, wait_until, write_oxfile

from oxtui.engine.schedule import Scheduler, next_run
from oxtui.oxfile.config import ConfigError, ScheduleConfig, load


def stamp(path: str, linger: float = 0.0) -> str:
    """A command that appends 'start <time>' to a file and then serves forever; on SIGTERM it lingers,
    then notes the time (a slow stop: stopping everything at once would stamp the others first)."""
    return (f"{PY} -c 'import signal,sys,time\\n"
            f"def bye(*_):\\n    time.sleep({linger}); open(\\\"{path}\\\", \\\"a\\\").write(\\\"term %f\\\\n\\\" % time.time()); sys.exit(0)\\n"
            f"signal.signal(signal.SIGTERM, bye)\\n"
            f"open(\\\"{path}\\\", \\\"a\\\").write(\\\"start %f\\\\n\\\" % time.time())\\n"
            f"print(\\\"up\\\", flush=True)\\nwhile True: time.sleep(1)'")


def read_stamps(path) -> dict[str, float]:
    return {k: float(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def test_start_order_waits_for_a_late_ready_and_stop_runs_in_reverse(tmp_path, engine_process):
    # db prints its ready line once the test opens its gate; api waits for db ready, web for api ready.
    db, api, web, gate = (tmp_path / n for n in ("db.t", "api.t", "web.t", "gate"))
    late = (f"{PY} -c 'import os,signal,sys,time\\n"
            f"def bye(*_):\\n    open(\\\"{db}\\\", \\\"a\\\").write(\\\"term %f\\\\n\\\" % time.time()); sys.exit(0)\\n"
            f"signal.signal(signal.SIGTERM, bye)\\nwhile not os.path.exists(\\\"{gate}\\\"): time.sleep(0.05)\\n"
            f"open(\\\"{db}\\\", \\\"a\\\").write(\\\"start %f\\\\n\\\" % time.time())\\n"
            f"print(\\\"db ready\\\", flush=True)\\nwhile True: time.sleep(1)'")
    oxfile = write_oxfile(tmp_path, f'''
        [processes.web]
        command = "{stamp(web, 0.5)}"
        instances = 2
        depends_on = {{ api = "ready" }}
        [processes.api]
        command = "{stamp(api)}"
        depends_on = {{ db = "ready" }}
        [processes.api.ready]
        log = "up"
        [processes.db]
        command = "{late}"
        [processes.db.ready]
        log = "db ready"
    ''')
    ep = engine_process(oxfile)
    time.sleep(0.5)
    p = procs(ep)
    assert [w["state"] for w in p["web"]["workers"]] == ["waiting", "waiting"]
    assert p["api"]["workers"][0]["state"] == "waiting"
    assert "waiting for db (ready" in p["api"]["workers"][0]["reason"]
    assert p["web"]["depends_on"] == {"api": "ready"}
    assert "waiting" in ep.cli("status").stdout
    gate.touch()
    wait_until(lambda: all(w["state"] == "running" for n in ("web", "api", "db") for w in procs(ep)[n]["workers"]),
               20, 0.1, what="all running")
    ep.stop()
    s_db, s_api = read_stamps(db), read_stamps(api)
    webs = [line.split() for line in web.read_text().splitlines()]
    # db became ready at its 'start' stamp (written just before the ready line): api never before it
    assert s_api["start"] >= s_db["start"]
    assert min(float(t) for k, t in webs if k == "start") >= s_api["start"]
    # stop: dependents first: web, then api, then db
    assert max(float(t) for k, t in webs if k == "term") <= s_api["term"] <= s_db["term"]


def test_a_failed_task_blocks_its_dependents_and_says_why(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.migrate]
        command = "sh -c 'echo migration failed >&2; exit 3'"
        restart = "never"
        [processes.web]
        command = "sleep 60"
        depends_on = { migrate = "completed_successfully" }
        [processes.report]
        command = "sleep 60"
        depends_on = { migrate = "completed" }
    '''))
    w = wait_until(lambda: (w := procs(ep)["web"]["workers"][0])["reason"] and "blocked" in w["reason"] and w,
                   15, 0.1, what="web blocked")
    assert w["state"] == "waiting" and w["pid"] is None
    assert "migrate.0 failed (code 3)" in w["reason"] and "oxtui start migrate" in w["reason"]
    # `completed` holds whatever the exit
    wait_until(lambda: procs(ep)["report"]["workers"][0]["state"] == "running", 15, 0.1, what="report started")
    time.sleep(1.0)
    assert procs(ep)["web"]["workers"][0]["state"] == "waiting", "never started after a failed task"
    assert "will not start: blocked: migrate.0 failed" in ep.cli("logs", "web", "-n", "20").stdout
    r = ep.cli("reload", "web")
    assert r.returncode != 0 and "has not started yet" in r.stderr


def test_reload_all_reruns_the_task_first_and_stops_when_it_fails(tmp_path, engine_process):
    flag = tmp_path / "fail"
    runs = tmp_path / "runs"
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.web]
        command = "sleep 60"
        depends_on = {{ migrate = "completed_successfully" }}
        [processes.migrate]
        command = "sh -c 'echo run >> {runs}; test ! -e {flag}'"
        restart = "never"
    '''))
    wait_until(lambda: procs(ep)["web"]["workers"][0]["state"] == "running", 15, 0.1)
    pid = procs(ep)["web"]["workers"][0]["pid"]
    r = ep.cli("reload", "all")
    assert r.returncode == 0, r.stderr
    assert runs.read_text().count("run") == 2
    assert procs(ep)["web"]["workers"][0]["pid"] != pid, "web reloaded after the migration ran again"
    flag.write_text("")
    pid = procs(ep)["web"]["workers"][0]["pid"]
    r = ep.cli("reload", "all")
    assert r.returncode != 0 and "migrate.0 failed (code 1)" in (r.stdout + r.stderr)
    assert procs(ep)["web"]["workers"][0]["pid"] == pid, "a failed migration stops the reload before web"


def test_dependency_errors_name_the_process_and_the_cycle(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.web]
        command = "true"
        depends_on = { api = "ready", migrat = "completed_successfully" }
        [processes.api]
        command = "true"
        depends_on = { web = "started" }
        [processes.migrate]
        command = "true"
        [processes.job]
        command = "true"
        depends_on = { api = "finished" }
    ''')
    err = oxtui_cli("check", str(oxfile)).stderr
    assert "[processes.web] depends_on: no process named 'migrat'; did you mean 'migrate'?" in err
    assert "depends_on has a cycle: web -> api -> web" in err
    assert "[processes.job] depends_on: api = 'finished': the condition must be one of started, ready" in err
    write_oxfile(tmp_path, '''
        [processes.web]
        command = "true"
        depends_on = { migrate = "completed_successfully", db = "healthy" }
        [processes.migrate]
        command = "true"
        [processes.db]
        command = "true"
    ''')
    err = oxtui_cli("check", str(oxfile)).stderr
    assert 'migrate = \'completed_successfully\' needs migrate to be a task' in err
    assert 'db = "healthy" needs a [processes.db.health] check' in err


def test_every_second_runs_n_times_in_n_seconds_and_skips_overlaps(tmp_path, engine_process):
    quick, slow = tmp_path / "quick", tmp_path / "slow"
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.quick]
        command = "sh -c 'echo x >> {quick}'"
        restart = "never"
        [processes.quick.schedule]
        every = "1s"
        [processes.slow]
        command = "sh -c 'echo x >> {slow}; sleep 2.5'"
        restart = "never"
        [processes.slow.schedule]
        every = 1
        [processes.later]
        command = "true"
        restart = "never"
        [processes.later.schedule]
        every = "1m"
    '''))
    p = procs(ep)
    # Not quick's first look: on a loaded machine the first status came more than a second after the
    # start, and quick had rightly run by then. A minute's timetable cannot have ticked yet.
    assert p["later"]["workers"][0]["state"] == "waiting", "a scheduled task waits for its first tick"
    assert p["later"]["schedule"]["every"] == 60.0 and p["later"]["schedule"]["next_run"] > time.time() + 40
    assert p["quick"]["schedule"]["every"] == 1.0
    # From the engine's start events, not from a sleep and a count (a count after a fixed sleep was
    # off by one whenever the machine was busy): slow's runs never overlap (its ticks in between
    # are skipped, with the reason) and it runs again at the first tick after each end.
    def starts(name):
        events = [json.loads(line) for line in ep.cli("events", "--json", "-n", "200").stdout.splitlines()]
        return [e["at"] for e in events if e["event"] == "start" and e["process"] == name]
    slow_starts = wait_until(lambda: (t := starts("slow"))[1:] and t, 20, 0.2, "slow's 2nd run")
    gap = slow_starts[1] - slow_starts[0]
    assert 2.5 <= gap <= 3.7, f"a 2.5 s run ticked every second runs again at the first tick after its end: {gap}"
    assert len(starts("quick")) >= 3 and quick.read_text().count("x") >= 3
    p = procs(ep)
    assert p["quick"]["schedule"]["last_run"]["result"] in ("completed", "running")
    log = ep.cli("logs", "slow", "-n", "200").stdout
    assert "schedule: tick skipped: the last run is still going" in log


def test_a_schedule_on_a_server_is_a_rolling_reload(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.web]
        command = "sleep 60"
        [processes.web.schedule]
        every = "2s"
        [processes.web.reload]
        min_ready = 0.1
    '''))
    first = wait_until(lambda: procs(ep)["web"]["workers"][0]["pid"], 10, 0.1)
    p = wait_until(lambda: (p := procs(ep)["web"])["schedule"]["last_run"] and
                   p["schedule"]["last_run"]["result"] == "reloaded" and p, 15, 0.1, what="a scheduled reload")
    assert p["workers"][0]["pid"] != first and p["release"] >= 2


def test_cron_next_run_in_a_timezone():
    at = datetime(2026, 7, 1, 6, 59, tzinfo=UTC).timestamp()
    paris = next_run(ScheduleConfig(cron="0 9 * * *", timezone="Europe/Paris"), at, at)
    assert datetime.fromtimestamp(paris, UTC) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)  # CEST
    winter = datetime(2026, 12, 1, 7, 30, tzinfo=UTC).timestamp()
    paris = next_run(ScheduleConfig(cron="0 9 * * *", timezone="Europe/Paris"), winter, winter)
    assert datetime.fromtimestamp(paris, UTC) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # CET
    ten = next_run(ScheduleConfig(cron="*/10 * * * *", timezone="UTC"), at, at)
    assert datetime.fromtimestamp(ten, UTC) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    assert next_run(ScheduleConfig(every=30), at + 61, at) == at + 90


def test_schedule_errors(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.a]
        command = "true"
        [processes.a.schedule]
        cron = "every tuesday"
        [processes.b]
        command = "true"
        [processes.b.schedule]
        cron = "* * * * *"
        timezone = "Mars/Olympus"
        [processes.c]
        command = "true"
        [processes.c.schedule]
    ''')
    err = oxtui_cli("check", str(oxfile)).stderr
    assert "[processes.a.schedule] cron: 'every tuesday' is not a cron expression" in err
    assert "[processes.b.schedule] timezone: 'Mars/Olympus' is not a known time zone" in err
    assert "[processes.c.schedule]: needs exactly one of cron" in err


def _has_nobody() -> bool:
    try:
        pwd.getpwnam("nobody")
        return True
    except KeyError:
        return False


@pytest.mark.skipif(os.geteuid() != 0 or not _has_nobody(),
                    reason="running an instance as another user needs the engine to be root, and a user nobody")
def test_user_nobody_runs_with_nobodys_ids_and_home(tmp_path, engine_process):
    nobody = pwd.getpwnam("nobody")
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.app]
        command = "sh -c 'echo ids $(id -u) $(id -g) $(id -G) $USER $HOME; sleep 60'"
        cwd = "/"
        user = "nobody"
    '''))
    w = wait_until(lambda: (w := procs(ep)["app"]["workers"][0])["state"] == "running" and w, 10, 0.05)
    with open(f"/proc/{w['pid']}/status") as f:
        st = dict(line.split(":", 1) for line in f.read().splitlines())
    assert st["Uid"].split()[:2] == [str(nobody.pw_uid)] * 2
    assert st["Gid"].split()[:2] == [str(nobody.pw_gid)] * 2
    line = wait_until(lambda: [x for x in ep.cli("logs", "app", "-n", "5").stdout.splitlines() if " ids " in x],
                      10, 0.1)[0]
    assert line.split("ids ", 1)[1].split() == [str(nobody.pw_uid), str(nobody.pw_gid), str(nobody.pw_gid),
                                                "nobody", nobody.pw_dir]
    log = tmp_path / "logs" / "app.log"
    assert log.stat().st_uid == os.geteuid() and log.stat().st_mode & 0o077 == 0, "logs stay the engine's own"
    # A restart is handed to the helper's waiting spare (forked as root): it drops to nobody too.
    helper = psutil.Process(ep.proc.pid).children()[0]
    spare = wait_until(lambda: [c.pid for c in helper.children() if c.name() == "oxtui-spare"], 5, 0.02)[0]
    os.kill(w["pid"], signal.SIGKILL)
    new = wait_until(lambda: (x := procs(ep)["app"]["workers"][0])["state"] == "running"
                     and x["pid"] not in (None, w["pid"]) and x, 10, 0.05)
    assert new["pid"] == spare
    assert psutil.Process(spare).uids()[:2] == (nobody.pw_uid, nobody.pw_uid)
    assert psutil.Process(spare).gids()[:2] == (nobody.pw_gid, nobody.pw_gid)


@pytest.mark.skipif(not _has_nobody(), reason="needs a user nobody to stand for the engine's user")
def test_a_user_that_does_not_exist_or_cannot_be_used(tmp_path, monkeypatch):
    oxfile = write_oxfile(tmp_path, '[processes.a]\ncommand = "true"\nuser = "no-such-user-x"\n')
    err = oxtui_cli("check", str(oxfile)).stderr
    assert "[processes.a] user: no user 'no-such-user-x' on this machine" in err
    # an engine that is not root (nobody here) asked for another user
    write_oxfile(tmp_path, '[processes.a]\ncommand = "true"\nuser = "root"\n')
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr(os, "geteuid", lambda: nobody.pw_uid)
    with pytest.raises(ConfigError) as e:
        load(oxfile)
    assert e.value.errors == [(f"{oxfile}: [processes.a] user: oxtui runs as nobody, not root, so it cannot start "
                              "instances as root; run the engine as root (sudo oxtui startup) or remove this key")]


def test_ready_and_started_hold_for_an_ended_task_and_an_errored_dependency_blocks(tmp_path, engine_process):
    """`ready` on a task holds once it completed; `started` counts a task that ended, so a dependent
    stopped and started again starts; a dependency in a crash loop blocks with its reason."""
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.setup]
        command = "true"
        restart = "never"
        [processes.after_ready]
        command = "sleep 60"
        depends_on = { setup = "ready" }
        [processes.after_started]
        command = "sleep 60"
        depends_on = { setup = "started" }
        [processes.broken]
        command = "sh -c 'echo cannot connect >&2; exit 1'"
        backoff = 0.01
        max_restarts = 3
        [processes.blocked]
        command = "sleep 60"
        depends_on = { broken = "ready" }
    '''))
    wait_until(lambda: procs(ep)["after_ready"]["workers"][0]["state"] == "running", 15, 0.1,
               what="a dependent of a completed task's `ready`")
    wait_until(lambda: procs(ep)["after_started"]["workers"][0]["state"] == "running", 15, 0.1)
    assert ep.cli("stop", "after_started").returncode == 0
    assert ep.cli("start", "after_started").returncode == 0
    wait_until(lambda: procs(ep)["after_started"]["workers"][0]["state"] == "running", 10, 0.1,
               what="started again after the task had ended")
    w = wait_until(lambda: (w := procs(ep)["blocked"]["workers"][0])["reason"] and "blocked" in w["reason"] and w,
                   15, 0.1, what="blocked by the errored dependency")
    assert "broken.0 is errored (crash loop" in w["reason"] and "oxtui restart broken" in w["reason"]
    assert w["state"] == "waiting"


def test_every_ticks_strictly_after_and_cron_too():
    at = datetime(2026, 7, 1, 7, 0, tzinfo=UTC).timestamp()
    every = ScheduleConfig(every=30)
    assert next_run(every, at, at) == at + 30, "a tick right now is not the next one"
    assert next_run(every, at + 60, at) == at + 90
    assert next_run(every, at + 59.999, at) == at + 60
    cron = ScheduleConfig(cron="*/10 * * * *", timezone="UTC")
    assert next_run(cron, at, at) == at + 600, "cron: strictly after a time it matches"
    assert next_run(cron, at + 599, at) == at + 600


def test_a_taken_over_timetable_runs_the_one_tick_that_fell_inside_the_hand_over():
    """The old engine's loop is frozen while it hands over: a tick due then is owed, run at once, once."""
    async def ticks(owed_ago: float | None) -> tuple[float, list[float]]:
        # every 10 s, anchored 45 s ago: ticks fell at -35, -25, -15 and -5 s, the next is at +5 s,
        # long after the half second we look (whatever the machine's load)
        start = time.time()
        seen: list[float] = []
        s = Scheduler(ScheduleConfig(every=10), lambda: seen.append(time.time()), lambda: None, start - 45,
                      None if owed_ago is None else start - owed_ago)
        await asyncio.sleep(0.5)
        s.stop()
        return start, seen
    start, seen = asyncio.run(ticks(22))       # the last run 22 s ago: -15 and -5 fell due since
    assert len(seen) == 1 and seen[0] - start < 0.4, f"one owed tick at once, never a queue: {seen}"
    assert asyncio.run(ticks(4))[1] == [], "nothing fell due since the last run"
    assert asyncio.run(ticks(None))[1] == [], "a fresh timetable owes nothing"


def test_every_second_ticks_once_a_second(tmp_path, engine_process):
    """The ticks themselves, from the engine's start event of each run: one a second, never two at once.
    (Not from a timestamp the run writes: on a loaded machine its fork and exec may lag its tick by
    half a second, and the next run, on time, then looks early.)"""
    stamps = tmp_path / "stamps"
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.quick]
        command = "sh -c 'date +%s.%N >> {stamps}'"
        restart = "never"
        [processes.quick.schedule]
        every = "1s"
    '''))
    time.sleep(5.5)
    asked = time.time()
    events = [json.loads(line) for line in ep.cli("events", "--json", "-n", "200").stdout.splitlines()]
    times = [e["at"] for e in events if e["event"] == "start" and e["process"] == "quick"]
    assert len(stamps.read_text().split()) >= len(times) - 1, "every run ran"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # How many depends on when the events were read (a CLI call took over a second beside two busy
    # loops, and 7 runs were then right): at least 4 in the 5.5 s, and still ticking when asked.
    assert len(times) >= 4 and asked - times[-1] <= 1.3, (asked, times)
    assert all(0.7 <= g <= 1.3 for g in gaps), gaps
    assert procs(ep)["quick"]["schedule"]["next_run"] > time.time()


@pytest.mark.slow
def test_a_tick_during_a_long_reload_is_skipped_and_the_timetable_goes_on(tmp_path, engine_process):
    """A server reloaded every second whose reload takes about 2 s: the ticks in between are skipped
    with the reason, the releases keep moving, and the next run is always ahead."""
    slow = (f"{PY} -c 'import time; time.sleep(1.2); print(\\\"ready\\\", flush=True); time.sleep(60)'")
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.web]
        command = "{slow}"
        [processes.web.ready]
        log = "^ready"
        [processes.web.schedule]
        every = "1s"
        [processes.web.reload]
        min_ready = 0.1
    '''))
    time.sleep(8)
    p = procs(ep)["web"]
    assert p["release"] >= 3, p["release"]
    assert p["schedule"]["next_run"] > time.time() - 0.2, "the timetable stopped"
    log = ep.cli("logs", "web", "-n", "500").stdout
    assert "schedule: tick skipped: a reload is still running" in log
    time.sleep(2.5)
    assert procs(ep)["web"]["release"] > p["release"], "the releases stopped moving"


def test_timezone_only_with_cron(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.a]
        command = "true"
        restart = "never"
        [processes.a.schedule]
        every = "1h"
        timezone = "Europe/Paris"
    ''')
    r = oxtui_cli("check", str(oxfile))
    assert r.returncode == 2 and "[processes.a.schedule] timezone: only applies to cron" in r.stderr, r.stderr
