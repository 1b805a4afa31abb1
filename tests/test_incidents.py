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

import pytest
from conftest import free_port, procs, wait_until, write_oxfile
from prometheus_client.parser import text_string_to_metric_families

PY = sys.executable


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


def test_a_hanging_webhook_never_slows_the_engine_and_a_crash_loop_is_coalesced(tmp_path, engine_process):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)          # accepts into the backlog, never answers
    try:
        ep = engine_process(write_oxfile(tmp_path, f'''
            [processes.loop]
            command = "sh -c 'exit 1'"
            backoff = 0.01
            backoff_max = 0.02
            max_restarts = 1000
            [notify]
            webhook = "http://127.0.0.1:{silent.getsockname()[1]}/hook"
        '''))
        wait_until(lambda: worker(ep, "loop")["restarts"] >= 50, 20, 0.1, what="50 exits")
        t0 = time.monotonic()
        ep.status()
        assert time.monotonic() - t0 < 1.0
        n = worker(ep, "loop")["restarts"]
        time.sleep(0.5)
        assert worker(ep, "loop")["restarts"] > n, "still supervising"
    finally:
        silent.close()


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
    follower = subprocess.Popen([PY, "-m", "oxtui", "events", "-f", "--json", "-n", "0", "-c", str(ep.oxfile)],
                                stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
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
