"""Chaos: random SIGKILL/SIGTERM of workers, rolling reloads and scale changes under continuous
load, against the real `oxtui run`. Afterwards the engine's status must agree with /proc, nothing
may be a zombie or an orphan, the engine's memory must be flat, and the only failed requests may
be those in flight on a worker that was SIGKILLed: the test app logs which pid accepted each client
port, so a failure is traced to its instance."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import psutil
import pytest
from conftest import APPS, PY, free_port, marked_pids, wait_until, write_oxfile
from load import Load, accept_owners, owner, parse_failure

# 60 s in CI, as the issue asks; OXTUI_CHAOS_SECONDS=600 for a longer run by hand.
DURATION = float(os.environ.get("OXTUI_CHAOS_SECONDS", "60"))
# A connection accepted by an instance killed before it could log the accept has no owner on record;
# only such a failure is excused by time (this soon after a SIGKILL), and there may be only a few.
KILL_BLAME_WINDOW = 1.0


@pytest.mark.slow
def test_chaos_under_load(tmp_path, engine_process):
    port = free_port()
    (tmp_path / "release.txt").write_text("ok r1")
    accepts = tmp_path / "accepts.log"
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'app.py'}"
        env = {{ ACCEPT_LOG = "{accepts}" }}
        instances = 3
        listen = "127.0.0.1:{port}"
        stop_timeout = 5
        backoff = 0.05
        max_restarts = 1000
        [processes.app.ready]
        log = "^ready"
        timeout = 10
    '''))
    ep.wait_running("app", 3)
    engine = psutil.Process(ep.proc.pid)
    rng = random.Random(1234)
    sigkills: list[tuple[float, int]] = []
    reloads: list[threading.Thread] = []
    counts = {"kill9": 0, "term": 0, "reload": 0, "scale": 0}

    def reload() -> None:
        ep.cli("reload", "app", timeout=120)

    with Load(port, max_seconds=DURATION + 60) as load:
        load.wait_for(50)
        time.sleep(2)
        rss_start = engine.memory_info().rss
        end = time.monotonic() + DURATION
        while time.monotonic() < end:
            workers = [w for w in ep.workers("app") if w["state"] == "running" and w["pid"] and not w["role"]]
            op = rng.choice(["kill9", "term", "term", "reload", "scale"])
            if op in ("kill9", "term") and workers:
                w = rng.choice(workers)
                sig = signal.SIGKILL if op == "kill9" else signal.SIGTERM
                if op == "kill9":
                    sigkills.append((time.time(), w["pid"]))
                try:
                    psutil.Process(w["pid"]).send_signal(sig)
                    counts[op] += 1
                except psutil.NoSuchProcess:
                    pass
            elif op == "reload" and not any(t.is_alive() for t in reloads):
                t = threading.Thread(target=reload)
                t.start()
                reloads.append(t)
                counts["reload"] += 1
            elif op == "scale" and ep.cli("scale", "app", str(rng.randint(2, 5))).returncode == 0:
                counts["scale"] += 1
            time.sleep(rng.uniform(0.2, 0.8))
        for t in reloads:
            t.join(120)
        ep.cli("scale", "app", "3")
        wait_until(lambda: len([w for w in ep.workers("app") if w["state"] == "running" and not w["role"]]) == 3,
                   30, 0.2, "3 running workers after the chaos")
        load.wait_for(50)
    assert all(counts.values()), counts

    # only requests in flight on a SIGKILLed worker may have failed
    owners = accept_owners(accepts)
    killed = {pid for _, pid in sigkills}
    unexplained, no_owner = [], []
    for f in load.failures:
        pid, at = owner(f, owners), parse_failure(f)[0]
        if pid is not None:
            if pid not in killed:
                unexplained.append(f"{f} (on pid {pid}, never SIGKILLed)")
        elif any(0 <= at - t <= KILL_BLAME_WINDOW for t, _ in sigkills):
            no_owner.append(f)
        else:
            unexplained.append(f"{f} (no instance accepted it, no SIGKILL near)")
    if unexplained:
        # in full in the captured output: an assertion's message is cut short in the report
        print("\n".join(["unexplained failures:", *unexplained[:5], f"counts {counts}", *_story(ep, unexplained[:5])]))
    assert not unexplained, (unexplained[:5], counts)
    assert len(no_owner) <= max(3, counts["kill9"]), no_owner[:5]
    assert load.count > 1000

    # status agrees with /proc
    snap = ep.status()["processes"][0]
    running = [w for w in snap["workers"] if w["state"] == "running"]
    assert len(running) == 3 and snap["instances"] == 3
    for w in running:
        p = psutil.Process(w["pid"])
        assert p.status() != psutil.STATUS_ZOMBIE and str(APPS / "app.py") in p.cmdline()
        assert p.environ()["OXTUI_INSTANCE"] == str(w["instance"])
    live = {w["pid"] for w in running}
    helper = [c for c in engine.children() if "forkserver" in " ".join(c.cmdline())]
    assert len(helper) == 1
    # Besides the instances the helper has at most one child: its spare, waiting (forkserver.py).
    # A spare forked a moment ago still wears the helper's command line until it renames itself.
    kids = helper[0].children()
    spares = {c.pid for c in kids if c.name() == "oxtui-spare" or c.cmdline() == helper[0].cmdline()}
    assert len(spares) <= 1
    assert {c.pid for c in kids} - spares == live, "no orphan, no stray instance"
    zombies = [c for c in engine.children(recursive=True) if c.status() == psutil.STATUS_ZOMBIE]
    assert not zombies
    assert set(marked_pids()) == live | spares | {ep.proc.pid, helper[0].pid}

    # memory flat
    rss_end = engine.memory_info().rss
    assert rss_end < rss_start + 25 * 2**20, (rss_start, rss_end)


def _story(ep, failures: list[str]) -> list[str]:
    """What the engine knows of the instances that dropped a request: each one's events, its exit
    record (how it ended, its last lines) and the log lines around its end, to see the cause."""
    import json
    import re
    pids = {int(m.group(1)) for f in failures if (m := re.search(r"on pid (\d+)", f))}
    events = [json.loads(line) for line in ep.cli("events", "--json", "-n", "1000").stdout.splitlines()]
    out = [json.dumps({k: e.get(k) for k in ("at", "event", "instance", "pid", "text", "cause", "signal", "code",
                                              "uptime_s", "tail")})
           for e in events if e.get("pid") in pids or (e["event"].startswith("reload") and pids)]
    log = (ep.oxfile.parent / "logs" / "app.log").read_text(errors="replace").splitlines()
    out += [line for line in log if any(str(pid) in line for pid in pids)][-40:]
    return out
