"""When something breaks (#12): exit records by cause, the event stream, notifications to a real local
webhook and a command, and Prometheus metrics scraped for real, all against real children."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import PY, free_port, procs, wait_until, write_oxfile
from prometheus_client.parser import text_string_to_metric_families


def worker(ep, name: str, i: int = 0) -> dict:
    return procs(ep)[name]["workers"][i]


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POSTed JSON body with its arrival time."""

    def __init__(self) -> None:
        self.bodies: list[tuple[float, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append((time.time(), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_exit_records_for_each_cause_survive_restarts(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.crash]
        command = "sh -c 'echo starting; echo Traceback: ValueError >&2; sleep 0.3; exit 1'"
        backoff = 5
        [processes.missing]
        command = "no-such-program-qq"
        restart = "never"
        [processes.victim]
        command = "sleep 60"
        [processes.hog]
        command = "{PY} -c 'import time; x = bytearray(120 * 2**20); print(\\"allocated\\", flush=True); time.sleep(60)'"
        max_memory = "60M"
        backoff = 5
        [processes.sick]
        command = "sleep 60"
        backoff = 5
        [processes.sick.health]
        cmd = "false"
        interval = 0.3
        failures = 2
        [processes.calm]
        command = "sleep 60"
    '''))
    def cause(name: str) -> dict | None:
        rec = worker(ep, name)["last_exit"]
        return rec if rec and rec["cause"] else None

    rec = wait_until(lambda: cause("crash"), 10, 0.1, what="crash record")
    assert (rec["cause"], rec["code"], rec["signal"]) == ("crash", 1, None)
    assert rec["tail"] == ["starting", "Traceback: ValueError"]
    rec = wait_until(lambda: cause("missing"), 10, 0.1)
    assert (rec["cause"], rec["code"], rec["note"]) == ("not_found", 127, "command not found: no-such-program-qq")
    assert rec["tail"] == ["oxtui: no-such-program-qq: not found"], "printed right before it died, and kept"
    victim = wait_until(lambda: (w := worker(ep, "victim"))["state"] == "running" and w, 10, 0.1)
    os.kill(victim["pid"], signal.SIGKILL)
    rec = wait_until(lambda: cause("victim"), 10, 0.1)
    assert (rec["cause"], rec["signal"], rec["pid"]) == ("killed", "SIGKILL", victim["pid"])
    w = wait_until(lambda: (w := worker(ep, "victim"))["state"] == "running" and w["pid"] not in (None, victim["pid"]) and w,
                   10, 0.1, what="victim restarted")
    assert w["last_exit"]["pid"] == victim["pid"], "last_exit survives the restart"
    rec = wait_until(lambda: cause("hog"), 20, 0.1, what="max_memory")
    assert rec["cause"] == "max_memory" and "over max_memory" in rec["note"] and rec["tail"] == ["allocated"]
    rec = wait_until(lambda: cause("sick"), 20, 0.1, what="health")
    assert rec["cause"] == "health" and "health check failed 2 times" in rec["note"]
    checks = [text for _, text in worker(ep, "sick")["checks"]]
    assert any(t.endswith("ready after 1.0s") for t in checks) and "health FAIL 2/2: `false` exited with 1" in checks, checks
    r = ep.cli("stop", "calm")
    assert r.returncode == 0
    rec = worker(ep, "calm")["last_exit"]
    assert (rec["cause"], rec["signal"]) == ("stopped", "SIGTERM")
    p = procs(ep)
    assert [e["cause"] for e in p["victim"]["exits"]] == ["killed"] and p["crash"]["exits"][0]["instance"] == 0
    text = ep.cli("status").stdout
    assert "127 not found" in text and "killed" in text and "max_memory" in text


def test_a_crash_reaches_the_webhook_once_within_2s(tmp_path, engine_process, receiver):
    flag = tmp_path / "crashed-once"
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.api]
        command = "sh -c 'if [ -e {flag} ]; then exec sleep 60; fi; touch {flag}; sleep 1; echo fatal: db gone >&2; exit 2'"
        [notify]
        webhook = "{receiver.url}"
    '''))
    wait_until(lambda: receiver.bodies, 10, 0.05, what="a webhook POST")
    time.sleep(1.5)
    assert len(receiver.bodies) == 1, receiver.bodies
    arrived, body = receiver.bodies[0]
    rec = worker(ep, "api")["last_exit"]
    assert arrived - rec["at"] < 2.0
    for key, value in {"event": "crash", "process": "api", "instance": 0, "pid": rec["pid"], "code": 2,
                       "cause": "crash", "tail": ["fatal: db gone"]}.items():
        assert body[key] == value, key
    assert "api.0: crash" in body["text"] and body["content"] == body["text"] and body["at"] == rec["at"]


class Silent:
    """A webhook receiver that accepts connections and never answers; counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def test_a_hanging_webhook_never_slows_the_engine_and_a_crash_loop_is_coalesced(tmp_path, engine_process):
    silent = Silent()
    try:
        ep = engine_process(write_oxfile(tmp_path, f'''
            [processes.loop]
            command = "sh -c 'exit 1'"
            backoff = 0.01
            backoff_max = 0.02
            max_restarts = 1000
            [notify]
            webhook = "{silent.url}"
        '''))
        wait_until(lambda: worker(ep, "loop")["restarts"] >= 50, 20, 0.1, what="50 exits")
        t0 = time.monotonic()
        ep.status()
        assert time.monotonic() - t0 < 1.0
        n = worker(ep, "loop")["restarts"]
        time.sleep(0.5)
        assert worker(ep, "loop")["restarts"] > n, "still supervising"
        # 50 crashes in one 10 s window are one message (its first try is hanging) and a summary later:
        # one connection, not fifty
        assert len(silent.held) == 1, len(silent.held)
        assert ep.status()["engine"]["notify"]["pending"] == 1
    finally:
        silent.close()


def openssl_mapped(pid: int) -> bool:
    return any(lib in line for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
               for lib in ("libcrypto", "libssl"))


def test_openssl_is_loaded_only_for_an_https_webhook(tmp_path, engine_process):
    """The engine keeps libcrypto out (4.5 MB of RSS) until something needs TLS; an https webhook
    still speaks TLS: its first bytes at the receiver are a TLS handshake record."""
    plain = tmp_path / "plain"
    plain.mkdir()
    ep = engine_process(write_oxfile(plain, '''
        [processes.idle]
        command = "sleep 60"
    '''))
    assert not openssl_mapped(ep.status()["engine_pid"]), "OpenSSL loaded by an engine that needs no TLS"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(15)
    try:
        tls = tmp_path / "tls"
        tls.mkdir()
        ep = engine_process(write_oxfile(tls, f'''
            [processes.crash]
            command = "sh -c 'sleep 0.3; exit 1'"
            [notify]
            webhook = "https://127.0.0.1:{listener.getsockname()[1]}/hook"
        '''))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            first = conn.recv(3)
        assert first[:2] == b"\x16\x03", f"not a TLS ClientHello: {first!r}"
        assert openssl_mapped(ep.status()["engine_pid"])
    finally:
        listener.close()


@pytest.mark.slow
def test_a_hanging_receiver_delays_only_its_own_messages(tmp_path, engine_process, receiver):
    """A process whose own [notify] webhook never answers, in a crash loop, beside a process whose crash
    goes to a receiver that works: that crash arrives within 2 s, whatever the hanging one does."""
    silent = Silent()
    try:
        ep = engine_process(write_oxfile(tmp_path, f'''
            [processes.loop]
            command = "sh -c 'sleep 0.2; exit 1'"
            backoff = 0.01
            backoff_max = 0.02
            max_restarts = 1000
            [processes.loop.notify]
            webhook = "{silent.url}"
            coalesce = 0.5
            [processes.victim]
            command = "sleep 60"
            [notify]
            webhook = "{receiver.url}"
        '''))
        wait_until(lambda: len(silent.held) >= 4, 20, 0.05, what="the silent receiver holding 4 deliveries")
        w = wait_until(lambda: (w := worker(ep, "victim"))["state"] == "running" and w, 10, 0.1)
        os.kill(w["pid"], signal.SIGKILL)
        killed = time.time()
        body = wait_until(lambda: next((b for _, b in receiver.bodies if b["process"] == "victim"), None), 5, 0.02,
                          what="the victim's crash at the working receiver")
        arrived = next(t for t, b in receiver.bodies if b is body)
        assert arrived - killed < 2.0, arrived - killed
        assert body["event"] == "crash" and body["cause"] == "killed"
        assert not [b for _, b in receiver.bodies if b["process"] == "loop"], "loop's events go to its own receiver"
    finally:
        silent.close()


async def test_each_receiver_has_a_delivery_limit_of_its_own(monkeypatch, receiver):
    """A receiver that never answers holds PER_RECEIVER deliveries and no more; another receiver's message
    goes out while they hang. In-process, with the webhook timeout put off past the test, so the hanging
    deliveries never end by themselves: under one limit shared by every receiver the message never comes."""
    import asyncio

    from oxtui.observers import notify
    from oxtui.oxfile.model import NotifyConfig
    monkeypatch.setattr(notify, "WEBHOOK_TIMEOUT", 600)
    names = tuple(f"event{i}" for i in range(notify.PER_RECEIVER + 2))      # a lane each: all at once

    class Feed:
        def log(self, text: str) -> None: ...
        def publish(self, *args: object, **fields: object) -> None: ...
    silent = Silent()
    hooks = {"loop": NotifyConfig(webhook=silent.url, events=names), "victim": NotifyConfig(webhook=receiver.url)}
    n = notify.Notifications(Feed(), hooks.__getitem__, ".")

    async def until(cond, what: str) -> None:
        for _ in range(600):
            if cond():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what}: not within 30 s")
    try:
        for name in names:
            n.on_event({"event": name, "process": "loop", "text": ""})
        await until(lambda: len(silent.held) >= notify.PER_RECEIVER, "the silent receiver holding its deliveries")
        n.on_event({"event": "crash", "process": "victim", "cause": "killed", "text": "killed"})
        await until(lambda: any(b["process"] == "victim" for _, b in receiver.bodies), "the working receiver's message")
        assert len(silent.held) == notify.PER_RECEIVER, "a hanging receiver holds its limit, no more"
    finally:
        n.close()
        silent.close()

def test_a_failed_delivery_is_an_event_and_counts_in_status(tmp_path, engine_process):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    closed.close()                    # nothing listens: every try is refused at once
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.victim]
        command = "sleep 60"
        [notify]
        webhook = "{url}"
    '''))
    w = wait_until(lambda: (w := worker(ep, "victim"))["state"] == "running" and w, 10, 0.1)
    os.kill(w["pid"], signal.SIGKILL)
    notify = wait_until(lambda: (n := ep.status()["engine"]["notify"])["failed"] and n, 15, 0.1,
                        what="the failure counted")
    assert notify["sent"] == 0 and notify["pending"] == 0
    assert f"webhook {url} failed 3 times" in notify["last_failure"] and "crash of victim not sent" in notify["last_failure"]
    r = ep.cli("events", "--json", "-n", "50")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    failed = [e for e in events if e["event"] == "notify_failed"]
    assert len(failed) == 1 and failed[0]["process"] == "victim" and failed[0]["failed_event"] == "crash"
    assert "failed 3 times" in ep.cli("status").stdout, "status says it in words too"


def test_a_crash_loop_of_50_exits_sends_a_handful_of_messages(tmp_path, engine_process, receiver):
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.loop]
        command = "sh -c 'exit 1'"
        backoff = 0.01
        backoff_max = 0.02
        max_restarts = 50
        restart_window = 600
        [notify]
        webhook = "{receiver.url}"
        coalesce = 3
    '''))
    wait_until(lambda: worker(ep, "loop")["state"] == "errored", 30, 0.1, what="errored after 50 exits")
    time.sleep(3.5)      # one coalescing window: its summary is sent when it ends
    events = [b["event"] for _, b in receiver.bodies]
    assert len(procs(ep)["loop"]["exits"]) == 50
    assert events.count("crash") <= 3 and "errored" in events, events
    summary = [b for _, b in receiver.bodies if b.get("coalesced")]
    assert summary and summary[0]["coalesced"] >= 40, receiver.bodies


def test_a_storm_that_goes_on_sends_one_summary_per_window(tmp_path, engine_process, receiver):
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.loop]
        command = "sh -c 'sleep 0.05; exit 1'"
        backoff = 0.01
        backoff_max = 0.02
        max_restarts = 10000
        [notify]
        webhook = "{receiver.url}"
        coalesce = 1
    '''))
    time.sleep(5.5)
    crashes = [b for _, b in receiver.bodies if b["event"] == "crash"]
    summaries = [b for b in crashes if b.get("coalesced")]
    exits = procs(ep)["loop"]["counters"]["exits"]["crash"]
    assert exits >= 30, exits
    assert len(crashes) <= 8, f"{len(crashes)} messages for {exits} crashes in 5.5 s of 1 s windows"
    assert len(summaries) >= 3, "a summary for every window the storm goes on"
    told = 1 + sum(b["coalesced"] for b in summaries)
    assert exits - 40 <= told <= exits, (told, exits)    # all but the last window's are counted in a message


def test_crash_covers_every_unexpected_exit(tmp_path, engine_process, receiver):
    """events = ["crash"]: a restart for memory or health is an unexpected exit too, and is told."""
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.hog]
        command = "{PY} -c 'import time; x = bytearray(120 * 2**20); print(\\"allocated\\", flush=True); time.sleep(60)'"
        max_memory = "60M"
        backoff = 30
        [processes.sick]
        command = "sleep 60"
        backoff = 30
        [processes.sick.health]
        cmd = "false"
        interval = 0.3
        failures = 2
        [processes.calm]
        command = "sleep 60"
        [notify]
        webhook = "{receiver.url}"
        events = ["crash"]
    '''))
    wait_until(lambda: {b["process"] for _, b in receiver.bodies} >= {"hog", "sick"}, 20, 0.1,
               what="both told")
    causes = {b["process"]: b["cause"] for _, b in receiver.bodies}
    assert causes["hog"] == "max_memory" and causes["sick"] == "health", causes
    assert ep.cli("stop", "calm").returncode == 0
    time.sleep(1)
    assert "calm" not in {b["process"] for _, b in receiver.bodies}, "a stop asked for is not a crash"


def test_a_command_hook_gets_the_event_in_its_environment_and_stdin(tmp_path, engine_process):
    out = tmp_path / "hook.out"
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.victim]
        command = "sleep 60"
        [notify]
        command = "echo $OXTUI_EVENT $OXTUI_PROCESS $OXTUI_INSTANCE $OXTUI_PID $OXTUI_EXIT_SIGNAL $OXTUI_CAUSE >> {out}; cat >> {out}"
        events = ["crash", "start"]
    '''))
    w = wait_until(lambda: (w := worker(ep, "victim"))["state"] == "running" and w, 10, 0.1)
    os.kill(w["pid"], signal.SIGKILL)
    wait_until(lambda: out.exists() and out.read_text().count("\n") >= 4, 10, 0.1, what="two hook runs")
    lines = out.read_text().splitlines()
    assert f"start victim 0 {w['pid']}" in lines[0]
    assert json.loads(lines[1])["event"] == "start"
    assert lines[2] == f"crash victim 0 {w['pid']} SIGKILL killed"
    assert json.loads(lines[3])["cause"] == "killed"


def test_metrics_parse_and_agree_with_status(tmp_path, engine_process):
    port = free_port()
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.web]
        command = "{PY} -c 'import time; x = bytearray(20 * 2**20); print(\\"up\\", flush=True); time.sleep(60)'"
        instances = 2
        [processes.flaky]
        command = "sh -c 'sleep 0.2; exit 1'"
        backoff = 0.05
        [processes.half]
        command = "sh -c 'if [ $OXTUI_INSTANCE = 1 ]; then exit 1; fi; exec sleep 60'"
        instances = 2
        backoff = 30
        [processes.slowpoke]
        command = "sleep 60"
        [processes.slowpoke.ready]
        log = "never printed"
        timeout = 60
        [metrics]
        listen = "127.0.0.1:{port}"
    '''))
    wait_until(lambda: all(w["state"] == "running" and w["rss_bytes"] for w in procs(ep)["web"]["workers"]),
               10, 0.1)
    wait_until(lambda: worker(ep, "flaky")["restarts"] >= 2, 10, 0.1)
    time.sleep(1.5)         # the exporter serves the last sample: let one pass after the status above
    snap = procs(ep)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        families = {f.name: f for f in text_string_to_metric_families(r.read().decode())}
    def value(family: str, **labels) -> float:
        return next(s.value for s in families[family].samples
                    if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created"))
    assert value("oxtui_process_instances", process="web") == 2
    assert value("oxtui_process_instances_running", process="web") == 2
    assert value("oxtui_worker_up", process="web", instance="1") == 1
    assert abs(value("oxtui_worker_restarts", process="flaky", instance="0") - snap["flaky"]["workers"][0]["restarts"]) <= 2
    rss = snap["web"]["workers"][0]["rss_bytes"]
    assert abs(value("oxtui_worker_rss_bytes", process="web", instance="0") - rss) < 0.2 * rss
    assert value("oxtui_exits", process="flaky", cause="crash") >= 2
    assert value("oxtui_engine_rss_bytes") > 0 and "oxtui_log_lines" in families
    # a process with one of two instances waiting to restart, and one that never gets ready
    assert snap["half"]["workers"][1]["state"] == "backoff"
    assert value("oxtui_process_instances", process="half") == 2
    assert value("oxtui_process_instances_running", process="half") == 1
    assert value("oxtui_worker_up", process="half", instance="1") == 0
    assert value("oxtui_worker_ready", process="half", instance="0") == 1
    assert value("oxtui_worker_ready", process="half", instance="1") == 0
    assert snap["slowpoke"]["workers"][0]["state"] == "starting"
    assert value("oxtui_worker_up", process="slowpoke", instance="0") == 1
    assert value("oxtui_worker_ready", process="slowpoke", instance="0") == 0
    assert value("oxtui_process_instances_running", process="slowpoke") == 0


def test_an_instance_being_stopped_is_not_counted_ready():
    """A draining instance still has ready = true in its snapshot (it was ready), but serves no new
    connection: the gauge says 0 for it, as the running count does. Here on a snapshot, without a server."""
    from oxtui.observers.prometheus import Exporter

    def worker(slot: int, state: str) -> dict:
        return {"instance": slot, "state": state, "ready": True, "restarts": 0, "cpu_seconds": 0.0, "rss_bytes": 1}
    exporter = Exporter.__new__(Exporter)        # collect() reads only the snapshot
    exporter.snapshot = {"engine": {"cpu_seconds": 1.0, "rss_bytes": 1, "started_at": 0.0}, "processes": [
        {"name": "web", "instances": 2, "workers": [worker(0, "running"), worker(1, "stopping")],
         "counters": {"reloads": {}, "last_reload_s": None, "log_lines": 0, "exits": {}}}]}
    families = {f.name: f for f in exporter.collect()}
    assert {s.labels["instance"]: s.value for s in families["oxtui_worker_ready"].samples} == {"0": 1.0, "1": 0.0}
    assert [s.value for s in families["oxtui_process_instances_running"].samples] == [1.0]

def test_metrics_on_a_public_address_needs_opt_in(tmp_path):
    from conftest import oxtui_cli
    oxfile = write_oxfile(tmp_path, '[processes.a]\ncommand = "true"\n[metrics]\nlisten = "0.0.0.0:9464"\n')
    r = oxtui_cli("check", str(oxfile))
    assert r.returncode == 2 and "[metrics] listen: 0.0.0.0 is not loopback" in r.stderr and "public = true" in r.stderr


def test_events_json_follow_streams_a_kill_and_a_reload(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 60"
        [processes.app.reload]
        min_ready = 0.1
    '''))
    w = wait_until(lambda: (w := worker(ep, "app"))["state"] == "running" and w, 10, 0.1)
    follower = subprocess.Popen([PY, "-m", "oxtui", "events", "-f", "--json", "-n", "1", "-c", str(ep.oxfile)],
                                stdout=subprocess.PIPE, text=True)
    try:
        # the last event comes first, once the follower is subscribed: from then on it misses nothing
        assert json.loads(follower.stdout.readline())["event"] == "start"
        os.kill(w["pid"], signal.SIGKILL)
        wait_until(lambda: worker(ep, "app")["state"] == "running" and worker(ep, "app")["pid"] not in (None, w["pid"]),
                   10, 0.1)
        assert ep.cli("reload", "app").returncode == 0
        seen: list[dict] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e["event"] == "reload_done" for e in seen):
            seen.append(json.loads(follower.stdout.readline()))
    finally:
        follower.terminate()
        follower.wait(10)
    kinds = [e["event"] for e in seen]
    crash = seen[kinds.index("crash")]
    assert (crash["pid"], crash["cause"], crash["process"], crash["instance"]) == (w["pid"], "killed", "app", 0)
    assert kinds.index("crash") < kinds.index("reload_done") and "start" in kinds
    assert all({"at", "event", "process", "instance", "pid"} <= set(e) for e in seen)


def test_causes_are_classified_in_order():
    from oxtui.engine.exits import classify
    none = (None, None)
    # a SIGKILL while the kernel counted an OOM kill is "oom", not "killed": the counters come first
    assert classify(None, "SIGKILL", None, None, (0, 7), (1, 7))[0] == "oom"
    assert "probably" in classify(None, "SIGKILL", None, None, (None, 7), (None, 8))[1]
    assert classify(None, "SIGKILL", None, None, (0, 7), (0, 7)) == ("killed", None)
    # where the cgroup counts kills, another cgroup's OOM kill (the machine's count moved) is not ours
    assert classify(None, "SIGKILL", None, None, (0, 7), (0, 9)) == ("killed", None)
    assert classify(None, "SIGSEGV", None, None, none, none) == ("killed", None)
    assert classify(137, None, None, None, (0, 7), (1, 7))[0] == "oom", "a shell's child OOM-killed"
    assert classify(137, None, None, None, none, none) == ("crash", None)
    assert classify(127, None, None, None, none, none)[0] == "not_found"
    assert classify(3, None, None, None, none, none) == ("crash", None)
    assert classify(None, "SIGTERM", "stop", "reload", none, none) == ("reload", None)
    assert classify(0, None, None, None, none, none, task_done=True) == ("stopped", "exited 0")
    assert classify(0, None, None, None, none, none, task_done=False)[0] == "stopped", "exit 0 is never a crash"


def test_an_exit_0_is_not_a_crash_and_a_crash_loop_counts_exits(tmp_path, engine_process, receiver):
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.server]
        command = "sh -c 'sleep 0.3; exit 0'"
        backoff = 0.01
        max_restarts = 4
        restart_window = 30
        [processes.job]
        command = "true"
        restart = "never"
        [notify]
        webhook = "{receiver.url}"
    '''))
    w = wait_until(lambda: (w := worker(ep, "server"))["state"] == "errored" and w, 15, 0.1, what="errored")
    assert w["restarts"] == 3
    assert w["reason"].startswith("crash loop: exited 4 times within 30s"), w["reason"]
    rec = w["last_exit"]
    assert (rec["cause"], rec["code"]) == ("stopped", 0) and "on its own" in rec["note"], rec
    job = wait_until(lambda: worker(ep, "job")["last_exit"], 10, 0.1)
    assert (job["cause"], job["note"]) == ("stopped", "exited 0")
    wait_until(lambda: [b for _, b in receiver.bodies if b["event"] == "errored"], 10, 0.1)
    assert not [b for _, b in receiver.bodies if b["event"] == "crash"], "no crash message for an exit 0"


class MemoryCgroup:
    """A memory cgroup with a limit, for a real OOM kill: cgroup v2 where its memory controller is
    enabled (the kernel's count is then certain), else v1's (then only /proc/vmstat counts it)."""

    def __init__(self, limit: int):
        import uuid
        from pathlib import Path
        name = f"oxtui-test-{uuid.uuid4().hex[:8]}"
        v2 = Path("/sys/fs/cgroup")
        if "memory" in (v2 / "cgroup.subtree_control").read_text() if (v2 / "cgroup.subtree_control").exists() else "":
            self.path = v2 / name
            self.path.mkdir()
            (self.path / "memory.max").write_text(str(limit))
            (self.path / "memory.swap.max").write_text("0")
        elif (Path("/sys/fs/cgroup/memory") / "memory.limit_in_bytes").exists():
            self.path = Path("/sys/fs/cgroup/memory") / name
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
        else:
            pytest.skip("no memory cgroup controller to limit (neither cgroup v2's nor v1's)")

    def close(self) -> None:
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a memory cgroup needs root")
def test_a_real_oom_kill_is_told_as_oom(tmp_path, receiver):
    """The kernel's OOM killer ends an instance inside a memory limit: the exit is "oom", not "killed",
    for a program exec'd directly (SIGKILL) and for one under a shell (which exits 137)."""
    cg = MemoryCgroup(150 * 2**20)
    hog = "x = [bytearray(8 * 2**20) for _ in range(100)]"
    oxfile = write_oxfile(tmp_path, f"""
        [processes.hog]
        command = "{PY} -c '{hog}'"
        backoff = 30
        [processes.wrapped]
        command = "sh -c '{PY} -c \\"{hog}\\"; exit $?'"
        backoff = 30
        [notify]
        webhook = "{receiver.url}"
    """)
    proc = subprocess.Popen(["sh", "-c", f'echo $$ > {cg.path}/cgroup.procs && exec "$0" -m oxtui run "$1"',
                             PY, str(oxfile)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        from oxtui.client.connection import Client

        def last_exits():
            try:
                with Client(oxfile.resolve(), timeout=5) as c:
                    snap = c.call({"cmd": "status"})
            except Exception:
                return None
            recs = [p["workers"][0]["last_exit"] for p in snap["processes"]]
            return recs if all(recs) else None
        hog_exit, wrapped = wait_until(last_exits, 60, 0.2, what="both hogs' exits")
        assert (hog_exit["cause"], hog_exit["signal"]) == ("oom", "SIGKILL"), hog_exit
        # a shell whose child the OOM killer ended exits 137: that is an OOM kill too
        assert (wrapped["cause"], wrapped["code"]) == ("oom", 137), wrapped
        assert "its cgroup counted the kill" in hog_exit["note"] and "its cgroup counted the kill" in wrapped["note"]
        wait_until(lambda: [b for _, b in receiver.bodies if b["event"] == "oom"], 10, 0.1, what="an oom message")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        cg.close()


def test_the_cgroup_file_that_counts_oom_kills(tmp_path):
    from oxtui.engine.exits import _cgroup_oom_file
    root = tmp_path / "sys"
    (root / "app.slice" / "x.service").mkdir(parents=True)
    (root / "app.slice" / "x.service" / "memory.events").write_text("oom 0\noom_kill 0\n")
    (root / "memory" / "ours").mkdir(parents=True)
    (root / "memory" / "ours" / "memory.oom_control").write_text("oom_kill_disable 0\noom_kill 0\n")
    v2 = tmp_path / "v2"
    v2.write_text("0::/app.slice/x.service\n")
    assert _cgroup_oom_file(str(v2), str(root)) == str(root / "app.slice/x.service/memory.events")
    hybrid = tmp_path / "hybrid"
    hybrid.write_text("4:memory:/ours\n1:cpu:/\n0::/\n")
    assert _cgroup_oom_file(str(hybrid), str(root)) == str(root / "memory/ours/memory.oom_control")
    none = tmp_path / "none"
    none.write_text("1:cpu:/\n0::/nowhere\n")
    assert _cgroup_oom_file(str(none), str(root)) is None


GROW = ("import os, sys, time\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
        "block = bytearray(80 * 2**20)\n"
        "for i in range(0, len(block), 4096): block[i] = 1\n"
        "print('grown', flush=True)\n"
        "time.sleep(600)\n")


@pytest.mark.slow
def test_an_unwatched_engine_samples_rarely_yet_status_and_max_memory_stay_current(tmp_path, engine_process):
    """Nobody looking and nothing needing the figures: samples once a minute, but a `status` samples
    first (never shows old figures). A max_memory is still enforced within seconds while nobody looks."""
    (tmp_path / "grow.py").write_text(GROW)
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.grow]
        command = "{sys.executable} grow.py {tmp_path / 'grow-flag'}"
    '''))
    time.sleep(6.5)          # no status for longer than "looked at recently": the engine is unwatched
    (tmp_path / "grow-flag").touch()
    wait_until(lambda: "grown" in ep.output(), 10, 0.05, what="the allocation")
    assert worker(ep, "grow")["rss_bytes"] > 80 * 2**20, "status showed figures from before the allocation"

    capped = tmp_path / "capped"
    capped.mkdir()
    (capped / "grow.py").write_text(GROW)
    ep = engine_process(write_oxfile(capped, f'''
        [processes.hog]
        command = "{sys.executable} grow.py {capped / 'grow-flag'}"
        max_memory = "50M"
    '''))
    time.sleep(6.5)
    (capped / "grow-flag").touch()
    # read its output, never its status (a status would make it watched and sample each second)
    wait_until(lambda: "over max_memory" in ep.output(), 12, 0.1, what="max_memory enforced while unwatched")
