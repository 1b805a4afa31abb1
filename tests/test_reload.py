"""Rolling reloads of a real app under continuous load, through the real CLI."""

from __future__ import annotations

import json
import os
import re
import threading
import time

import conftest
import pytest
from conftest import PY, free_port, http_get, under_load, wait_until, write_oxfile
from load import Load, explain


def release(tmp_path, text):
    (tmp_path / "release.txt").write_text(text)


def app_oxfile(tmp_path, port, instances=3, canary=True, extra="", ready_timeout=10):
    http = 'http = "/health"' if canary else ""
    return conftest.app_oxfile(tmp_path, port, instances, extra=f"stop_timeout = 10\n{extra}",
                               ready=f"{http}\ntimeout = {ready_timeout}")


def deploy_under_load(tmp_path, ep, port, text):
    """Put a new release on disk and reload it while a client keeps sending requests."""
    with Load(port) as load:
        load.wait_for(30)
        release(tmp_path, text)
        r = ep.cli("reload", "app")
        load.wait_for(30)
    return r, load


def fd3_inode(pid):
    return os.stat(f"/proc/{pid}/fd/3").st_ino


@under_load
def test_three_reloads_under_load_drop_nothing(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port))
    pids = {w["pid"] for w in ep.wait_running("app", 3)}
    inode = fd3_inode(next(iter(pids)))
    with Load(port) as load:
        load.wait_for(50)
        for n in (2, 3, 4):
            release(tmp_path, f"ok r{n}")
            r = ep.cli("reload", "app")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "canary: GET /health answered 200" in r.stdout
            new = {w["pid"] for w in ep.wait_running("app", 3)}
            assert not (new & pids), "every pid must be replaced"
            pids = new
            load.wait_for(50)
    assert load.failures == [], explain(load.failures, tmp_path)
    assert load.count > 300
    assert load.bodies[-1].startswith("r4 ")
    assert fd3_inode(next(iter(pids))) == inode, "the listening socket must be the same one"
    snap = ep.status()["processes"][0]["reload"]
    assert snap["state"] == "done" and [s["state"] for s in snap["slots"]] == ["done"] * 3


@under_load
def test_ready_instances_never_drop_below_the_target_with_a_slow_booting_release(tmp_path, engine_process):
    """A replacement that takes 1.5 s to boot: the old instance of its slot must serve until then.
    Sampled from status throughout the reload, the number of ready instances never goes below 3."""
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, canary=False))
    ep.wait_running("app", 3)
    ready_counts: list[int] = []
    with Load(port) as load:
        load.wait_for(30)
        release(tmp_path, "slowok r2")
        done = threading.Event()
        result = {}
        t = threading.Thread(target=lambda: (result.update(r=ep.cli("reload", "app")), done.set()))
        t.start()
        while not done.is_set():
            ws = ep.workers("app")
            ready_counts.append(sum(1 for w in ws if w["state"] == "running" and w["ready"] and w["role"] != "canary"))
        t.join()
        load.wait_for(30)
    assert result["r"].returncode == 0, result["r"].stderr
    assert len(ready_counts) > 10, "status was sampled throughout the reload"
    assert min(ready_counts) >= 3, ready_counts
    assert load.failures == [], explain(load.failures, tmp_path)
    assert load.bodies[-1].startswith("r2 ")


def test_the_canary_stops_beside_the_first_batch_and_the_reload_ends_after_it(tmp_path, engine_process):
    """A release that takes 2 s to stop: the first batch must not wait for its canary to be gone (it
    served only the probe, on its own port), yet the reload is done only once the canary is."""
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, instances=2))
    ep.wait_running("app", 2)
    release(tmp_path, "slowstop r2")
    r = ep.cli("reload", "app")
    assert r.returncode == 0, r.stdout + r.stderr
    events = [json.loads(line) for line in ep.cli("events", "--json", "-n", "100").stdout.splitlines()]
    [answered] = [e["at"] for e in events if e["text"] == "reload: canary: GET /health answered 200"]
    [canary_end] = [e["at"] for e in events if e["event"] == "stop" and e["role"] == "canary"]
    first_start = min(e["at"] for e in events if re.match(r"reload: slot \d: started new pid", e["text"]))
    [done] = [e["at"] for e in events if e["event"] == "reload_done"]
    assert canary_end - answered >= 2, "the canary kept serving 2 s after SIGTERM"
    assert first_start < canary_end, "the first batch started while the canary was still stopping"
    assert canary_end <= done, "the reload is done only once its canary is gone"
    snap = ep.status()["processes"][0]
    assert [w.get("role") for w in snap["workers"]] == [None, None], "no canary is left"


# ready.timeout is the whole budget of a new instance (start, ready line, GET answered): wherever the
# reason to report is not the timeout itself (a crash at boot, a 500, a crash after answering), it is
# 8 s, so a slow Python start on a loaded machine cannot end the budget first and report "not ready"
# instead (seen in full parallel runs here and in CI, for the crash at boot too).
@pytest.mark.parametrize("mode,reason,timeout", [
    ("crash", r"canary: new pid \d+ exited with code 3 before it was ready", 8),
    ("noready", r"canary: new pid \d+ not ready within 3s", 3),
    ("fail500", r"canary did not answer 2xx on GET /health within 8s \(GET /health answered 500\)", 8),
    ("crashlater", r"canary exited with code 4 right after answering GET /health", 8),
])
@under_load
def test_bad_release_is_stopped_by_the_canary(tmp_path, engine_process, mode, reason, timeout):
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, ready_timeout=timeout))
    pids = [w["pid"] for w in ep.wait_running("app", 3)]
    r, load = deploy_under_load(tmp_path, ep, port, f"{mode} bad")
    assert r.returncode == 1
    assert re.search(reason, r.stderr), r.stderr
    assert [w["pid"] for w in ep.wait_running("app", 3)] == pids
    assert load.failures == [], explain(load.failures, tmp_path)
    assert not [b for b in load.bodies if b.startswith("bad")], "the broken release served a live request"
    rl = ep.status()["processes"][0]["reload"]
    assert rl["state"] == "failed" and rl["slot"] == "canary" and re.search(reason, rl["reason"])


@pytest.mark.parametrize("mode,reason,timeout", [
    ("crash", "slot 0: new pid {pid} exited with code 3 before it was ready", 8),
    ("noready", "slot 0: new pid {pid} not ready within 3s", 3),
])
@under_load
def test_bad_release_without_canary_stops_at_the_first_surge(tmp_path, engine_process, mode, reason, timeout):
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, canary=False, ready_timeout=timeout))
    pids = [w["pid"] for w in ep.wait_running("app", 3)]
    r, load = deploy_under_load(tmp_path, ep, port, f"{mode} bad")
    assert r.returncode == 1
    rl = ep.status()["processes"][0]["reload"]
    # max_surge 50% of 3: slots 0 and 1 are replaced together; both fail and slot 2 is never tried
    assert [(s["slot"], s["state"]) for s in rl["slots"]] == [(0, "failed"), (1, "failed")] and rl["slot"] == "0-1"
    assert reason.format(pid=rl["slots"][0]["new_pid"]) in r.stderr, r.stderr
    assert [w["pid"] for w in ep.wait_running("app", 3)] == pids
    assert load.failures == [], explain(load.failures, tmp_path)
    assert not [b for b in load.bodies if b.startswith("bad")]


def test_replacement_crashing_right_after_ready_fails_the_reload(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, canary=False))
    pids = [w["pid"] for w in ep.wait_running("app", 3)]
    release(tmp_path, "crashlater bad")
    r = ep.cli("reload", "app")
    assert r.returncode == 1 and "exited with code 4 right after becoming ready" in r.stderr
    release(tmp_path, "ok r1")
    assert [w["pid"] for w in ep.wait_running("app", 3)] == pids


def test_slow_requests_in_flight_complete_during_the_drain(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, instances=1, canary=False))
    ep.wait_running("app", 1)
    results = []

    def slow():
        results.append(http_get(port, "/slow?s=2", timeout=20))

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)   # let the slow requests reach the old instance before the reload starts
    release(tmp_path, "ok r2")
    r = ep.cli("reload", "app")
    for t in threads:
        t.join(20)
    assert r.returncode == 0, r.stderr
    assert [code for code, _ in results] == [200, 200, 200]


def test_one_reload_at_a_time_and_no_scaling_during_it(tmp_path, engine_process):
    import subprocess
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, instances=2, canary=False, ready_timeout=5))
    ep.wait_running("app", 2)
    # A release that never gets ready keeps the reload running for its whole ready timeout: the two
    # commands below meet it however slow the machine is (a good release could finish first).
    (tmp_path / "release.txt").write_text("noready")
    first = subprocess.Popen([PY, "-m", "oxtui", "reload", "app", "-c", str(ep.oxfile)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (rl := ep.status()["processes"][0]["reload"]) and rl["state"] == "running", 10, 0.05)
        r = ep.cli("reload", "app")
        assert r.returncode == 1 and "a rolling reload is already running" in r.stderr
        r = ep.cli("scale", "app", "+1")
        assert r.returncode == 1 and "a rolling reload is in progress" in r.stderr
        assert ep.status()["processes"][0]["reload"]["state"] == "running"
    finally:
        _out, err = first.communicate(timeout=60)
    assert first.returncode == 1 and "not ready" in err, err


def test_reload_all_goes_process_by_process(tmp_path, engine_process):
    port = free_port()
    path = app_oxfile(tmp_path, port, instances=1, canary=False)
    with open(path, "a") as f:
        f.write('\n[processes.bg]\ncommand = "sleep 60"\ninstances = 2\n')
    ep = engine_process(path)
    ep.wait_running("app", 1)
    ep.wait_running("bg", 2)
    r = ep.cli("reload", "all")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.index("app: done") < out.index("bg: release")
    assert ep.status()["processes"][1]["reload"]["state"] == "done"


@under_load
def test_file_change_under_watch_triggers_a_rolling_reload(tmp_path, engine_process):
    port = free_port()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "code.js").write_text("1")
    ep = engine_process(app_oxfile(tmp_path, port, instances=2, canary=False,
                                   extra='watch = ["src"]\nwatch_debounce = 0.2'))
    pids = {w["pid"] for w in ep.wait_running("app", 2)}
    time.sleep(0.5)   # inotify watches are set up asynchronously after start
    (tmp_path / "src" / "node_modules").mkdir()
    (tmp_path / "src" / "node_modules" / "ignored.js").write_text("x")
    time.sleep(1.0)
    assert ep.status()["processes"][0]["reload"] is None, "node_modules is ignored by default"
    with Load(port) as load:
        (tmp_path / "src" / "code.js").write_text("2")
        wait_until(lambda: (rl := ep.status()["processes"][0]["reload"]) and rl["state"] == "done", 30, 0.1)
    assert not ({w["pid"] for w in ep.wait_running("app", 2)} & pids)
    assert load.failures == [], explain(load.failures, tmp_path)
    assert "watch: src/code.js changed; rolling reload" in ep.output()


def test_failing_health_check_restarts_the_instance(tmp_path, engine_process):
    flag = tmp_path / "healthy"
    flag.write_text("")
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.app]
        command = "sleep 60"
        instances = 2
        [processes.app.health]
        cmd = "test -e {flag}"
        interval = 0.2
        failures = 3
    '''))
    pids = {w["pid"] for w in ep.wait_running("app", 2)}
    wait_until(lambda: all(w["health"] and w["health"]["ok"] for w in ep.workers("app")), 5, 0.1)
    flag.unlink()
    wait_until(lambda: all(w["restarts"] >= 1 for w in ep.workers("app")), 15, 0.1, "health restarts")
    ws = ep.workers("app")
    assert all("health check failed 3 times in a row" in w["reason"] for w in ws)
    assert not ({w["pid"] for w in ws} & pids)


def test_surge_counts():
    from oxtui.oxfile.values import surge_count
    # the default: half the instances, at least 2 (never more than there are)
    assert [surge_count(None, n) for n in (1, 2, 3, 4, 5, 8)] == [1, 2, 2, 2, 3, 4]
    # a percentage rounds up: 34% of 4 is 1.36 instances, so 2
    assert surge_count("34%", 4) == 2 and surge_count("50%", 3) == 2 and surge_count("1%", 10) == 1
    assert surge_count(3, 2) == 2 and surge_count("100%", 4) == 4


@pytest.mark.parametrize("surge,expect", [(1, 1), ("100%", 4), (None, 2)])
@under_load
def test_max_surge_replaces_that_many_at_once_and_never_fewer_ready(tmp_path, engine_process, surge, expect):
    port = free_port()
    table = "" if surge is None else f"max_surge = {surge!r}\n".replace("'", '"')     # None: the default
    ep = engine_process(app_oxfile(tmp_path, port, instances=4, canary=False,
                                   extra=f"[processes.app.reload]\n{table}min_ready = 0.3\n"))
    ep.wait_running("app", 4)
    release(tmp_path, "slowok r2")
    surges, ready = [], []
    with Load(port) as load:
        load.wait_for(20)
        t = threading.Thread(target=lambda: ep.cli("reload", "app"))
        t.start()
        while t.is_alive():
            ws = ep.workers("app")
            surges.append(sum(1 for w in ws if w["role"] == "surge"))
            ready.append(sum(1 for w in ws if w["state"] == "running" and w["ready"]))
            time.sleep(0.05)
        t.join()
        load.wait_for(20)
    assert max(surges) == expect, surges
    assert min(ready) >= 4, ready
    assert load.failures == [], explain(load.failures, tmp_path)
    assert ep.status()["processes"][0]["reload"]["state"] == "done"


def test_min_ready_fails_a_replacement_that_dies_within_it(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, instances=2, canary=False,
                                   extra="[processes.app.reload]\nmax_surge = 1\nmin_ready = 2.0\n"))
    pids = [w["pid"] for w in ep.wait_running("app", 2)]
    # No load here: the replacement serves live requests for its second and then exits hard, which
    # drops what it had in flight (that is a crash; only a canary on a private port avoids it).
    release(tmp_path, "crashlater 1.0")
    r = ep.cli("reload", "app")
    assert r.returncode == 1 and "right after becoming ready" in r.stderr, r.stderr
    assert [w["pid"] for w in ep.wait_running("app", 2)] == pids


def test_the_next_batch_starts_while_the_last_one_drains(tmp_path, engine_process):
    """Old instances that take 2 s to drain: slot 1's replacement starts before slot 0's old instance is
    gone (the drain overlaps the next batch), and the reload still waits for every drain."""
    linger = (f"{PY} -c 'import signal,sys,time\\n"
              f"signal.signal(signal.SIGTERM, lambda *_: (time.sleep(2), sys.exit(0)))\\n"
              f"print(\\\"up\\\", flush=True)\\nwhile True: time.sleep(1)'")
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{linger}"
        instances = 2
        [processes.app.ready]
        log = "up"
        [processes.app.reload]
        max_surge = 1
        min_ready = 0.1
    '''))
    old = [w["pid"] for w in ep.wait_running("app", 2)]
    r = ep.cli("reload", "app")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in ep.cli("events", "app", "--json", "-n", "100").stdout.splitlines()]
    slot1_started = next(e["at"] for e in events if e["event"] == "reload_step" and "slot 1: started new pid" in e["text"])
    slot0_old_gone = next(e["at"] for e in events if e["event"] == "stop" and e["pid"] == old[0])
    assert slot1_started < slot0_old_gone, "slot 1 waited for slot 0's drain"
    done = next(e["at"] for e in events if e["event"] == "reload_done")
    assert done >= max(e["at"] for e in events if e["event"] == "stop" and e["pid"] in old)
