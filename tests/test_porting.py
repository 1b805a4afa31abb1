"""Coming from PM2 or a Procfile, leaving for Kubernetes or plain systemd: real ecosystem files (Node
evaluates the .js), the imported oxfile checked and run, manifests validated against the official
Kubernetes schemas, unit files verified by systemd-analyze."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import ROOT, EngineProcess, free_port, http_get, oxtui_cli, wait_until, write_oxfile

PY = sys.executable
APPS = [
    {"name": "api", "script": "server.js", "instances": "max", "exec_mode": "cluster",
     "env": {"NODE_ENV": "development", "LOG": "info"}, "env_production": {"NODE_ENV": "production"},
     "kill_timeout": 3000, "max_memory_restart": "300M", "wait_ready": True, "listen_timeout": 8000,
     "cron_restart": "0 3 * * *", "frobnicate": 1},
    {"name": "worker", "script": "worker.py", "autorestart": False, "max_restarts": 5, "restart_delay": 2000},
    {"name": "tick", "script": "/bin/sh", "args": ["-c", "echo tick; sleep 100"], "interpreter": "none",
     "watch": ["src"], "ignore_watch": ["node_modules"], "out_file": "/var/log/tick.log"},
]


def write_ecosystem(folder: Path, kind: str, apps: list = APPS) -> Path:
    (folder / "src").mkdir(exist_ok=True)
    if kind == "js":
        path = folder / "ecosystem.config.js"
        path.write_text(f"module.exports = {{ apps: {json.dumps(apps, indent=2)} }};\n")
    elif kind == "json":
        path = folder / "ecosystem.json"
        path.write_text(json.dumps({"apps": apps}))
    else:
        path = folder / "ecosystem.yaml"
        path.write_text(yaml.safe_dump({"apps": apps}))
    return path


@pytest.mark.parametrize("kind", ["js", "json", "yaml"])
def test_pm2_ecosystem_maps_every_key_and_passes_check(tmp_path, kind):
    source = write_ecosystem(tmp_path, kind)
    out = tmp_path / "oxfile.toml"
    r = oxtui_cli("import", "pm2", str(source), "-o", str(out), "--env", "production", "--listen", "127.0.0.1:3000")
    assert r.returncode == 0, r.stderr
    assert oxtui_cli("check", str(out)).returncode == 0
    text = out.read_text()
    data = tomllib.loads(text)["processes"]
    api, worker, tick = data["api"], data["worker"], data["tick"]
    assert api["command"] == "node server.js" and api["instances"] == "max"
    assert api["env"] == {"NODE_ENV": "production", "LOG": "info"}
    assert api["stop_timeout"] == 3.0 and api["max_memory"] == "300M" and api["ready"]["timeout"] == 8.0
    assert api["listen"] == "127.0.0.1:3000"
    assert worker["command"] == "python3 worker.py" and worker["restart_on_exit"] is False
    assert worker["max_restarts"] == 5 and worker["backoff"] == worker["backoff_max"] == 2.0
    assert tick["command"] == "/bin/sh -c 'echo tick; sleep 100'"
    assert tick["watch"] == ["src"] and tick["ignore"] == ["node_modules"]
    assert "# from kill_timeout: 3000 ms" in text and "# from max_memory_restart: '300M'" in text
    for said in ("frobnicate has no oxtui meaning", "cron_restart not carried over", "out_file not carried over",
                 "server.listen({fd: 3})", "wait_ready"):
        assert said in r.stderr, said


def test_pm2_instances_forms(tmp_path):
    apps = [{"name": "a", "script": "a.js", "instances": -1}, {"name": "b", "script": "b.js", "instances": 0},
            {"name": "c", "script": "c.js", "instances": 3, "exec_mode": "fork"}]
    r = oxtui_cli("import", "pm2", str(write_ecosystem(tmp_path, "json", apps)))
    assert r.returncode == 0, r.stderr
    data = tomllib.loads(r.stdout)["processes"]
    assert data["a"]["instances"] == max(1, len(os.sched_getaffinity(0)) - 1)
    assert data["b"]["instances"] == "max" and data["c"]["instances"] == 3


def test_a_js_file_that_throws_is_one_line(tmp_path):
    bad = tmp_path / "ecosystem.config.js"
    bad.write_text("throw new Error('no config for you');\n")
    r = oxtui_cli("import", "pm2", str(bad))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no config for you" in r.stderr and str(bad) in r.stderr


def test_three_pm2_apps_import_into_an_oxfile_that_runs(tmp_path):
    for f in ("server.js", "worker.py", "flaky.py"):
        shutil.copy(ROOT / "sample_apps" / f, tmp_path / f)
    port = free_port()
    apps = [{"name": "api", "script": "server.js", "instances": 2, "exec_mode": "cluster", "kill_timeout": 5000},
            {"name": "worker", "script": "worker.py", "interpreter": PY},
            {"name": "beat", "script": "/bin/sh", "args": "-c 'while true; do echo beat; sleep 1; done'",
             "interpreter": "none"}]
    source = write_ecosystem(tmp_path, "js", apps)
    out = tmp_path / "oxfile.toml"
    r = oxtui_cli("import", "pm2", str(source), "-o", str(out), "--listen", f"api=127.0.0.1:{port}")
    assert r.returncode == 0, r.stderr
    ep = EngineProcess(out)
    try:
        wait_until(lambda: ep.cli("status").returncode == 0, 15, 0.1)
        ep.wait_running("api", 2, timeout=30)
        ep.wait_running("worker", 1)
        ep.wait_running("beat", 1)
        assert http_get(port)[0] == 200
    finally:
        assert ep.stop() == 0


def test_procfile_with_comments_blank_lines_and_a_port_in_env(tmp_path):
    (tmp_path / "Procfile").write_text("# processes\n\nweb: gunicorn app:application\n  \nworker: python3 w.py\n")
    (tmp_path / ".env").write_text("SECRET=abc\nPORT=5005\n")
    out = tmp_path / "oxfile.toml"
    r = oxtui_cli("import", "procfile", str(tmp_path / "Procfile"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = tomllib.loads(out.read_text())["processes"]
    assert data == {"web": {"command": "gunicorn app:application", "listen": "127.0.0.1:5005"},
                    "worker": {"command": "python3 w.py"}}
    assert "abc" not in out.read_text() and "abc" not in r.stderr, "values of .env never copied"
    assert ".env" in r.stderr
    bad = tmp_path / "Procfile.bad"
    bad.write_text("web gunicorn\n")
    r = oxtui_cli("import", "procfile", str(bad))
    assert r.returncode == 2 and "Procfile.bad:1: not `name: command`" in r.stderr


# ---- Kubernetes ------------------------------------------------------------------------------------

EDGE = '''
[processes.api]
command = "node server.js --port $PORT"
instances = "max"
listen = "127.0.0.1:3000"
stop_timeout = 12.5
max_memory = 300000000
env = { NODE_ENV = "production" }
[processes.api.ready]
log = "listening"
http = "/ready"
timeout = 20
[processes.api.health]
http = "http://127.0.0.1:3000/health"
interval = 7
failures = 4
timeout = 2
[processes.pinger]
command = "sh -c 'sleep 100'"
restart_on_exit = false
stop_signal = "SIGINT"
[processes.pinger.health]
cmd = "test -f /tmp/ok"
[processes.tcp]
command = "redis-server"
[processes.tcp.health]
tcp = "127.0.0.1:6379"
'''


def export_k8s(oxfile: Path, *extra: str) -> tuple[list[dict], str]:
    r = oxtui_cli("export", "kubernetes", str(oxfile), "--image", "registry.example/app:1", *extra)
    assert r.returncode == 0, r.stderr
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    for d in docs:
        kubernetes_validate.validate(d, "1.31", strict=True)
    return docs, r.stderr


@pytest.mark.parametrize("which", ["sample", "edge"])
def test_kubernetes_manifests_are_valid_for_1_31(tmp_path, which):
    oxfile = ROOT / "sample_apps" / "oxfile.toml" if which == "sample" else write_oxfile(tmp_path, EDGE)
    docs, _ = export_k8s(oxfile, "--namespace", "shop")
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert ("Deployment", "web" if which == "sample" else "api") in kinds
    assert all(d["metadata"]["namespace"] == "shop" for d in docs)


def test_kubernetes_fields_equal_the_oxfile(tmp_path):
    docs, err = export_k8s(write_oxfile(tmp_path, EDGE))
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    api = by[("Deployment", "api")]["spec"]
    assert api["replicas"] == len(os.sched_getaffinity(0))
    assert api["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}
    pod = api["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 13
    c = pod["containers"][0]
    assert c["command"] == ["sh", "-c", "exec node server.js --port $PORT"]
    assert c["ports"] == [{"name": "http", "containerPort": 3000}]
    assert {"name": "NODE_ENV", "value": "production"} in c["env"] and {"name": "PORT", "value": "3000"} in c["env"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 3000}
    assert c["readinessProbe"]["failureThreshold"] == 20
    live = c["livenessProbe"]
    assert live["httpGet"] == {"path": "/health", "port": 3000}
    assert (live["periodSeconds"], live["failureThreshold"], live["timeoutSeconds"]) == (7, 4, 2)
    assert c["resources"]["limits"]["memory"] == "292969Ki"
    assert by[("Service", "api")]["spec"]["ports"] == [{"name": "http", "port": 3000, "targetPort": 3000}]
    job = by[("Job", "pinger")]["spec"]         # restart_on_exit = false: a task
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    pinger = job["template"]["spec"]["containers"][0]
    assert pinger["livenessProbe"]["exec"] == {"command": ["sh", "-c", "test -f /tmp/ok"]}
    tcp = by[("Deployment", "tcp")]["spec"]["template"]["spec"]["containers"][0]
    assert tcp["livenessProbe"]["tcpSocket"] == {"port": 6379}
    assert ("Service", "pinger") not in by
    for said in ("no shared socket on fd 3", "ready.log", "canary", "stop_signal SIGINT"):
        assert said in err, said


def test_kubernetes_export_to_a_folder(tmp_path):
    out = tmp_path / "k8s"
    r = oxtui_cli("export", "kubernetes", str(ROOT / "sample_apps" / "oxfile.toml"), "--image", "x:1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["cleanup.yaml", "flaky.yaml", "migrate.yaml", "web.yaml",
                                                      "worker.yaml"]
    by = {d["kind"]: d for f in out.iterdir() for d in yaml.safe_load_all(f.read_text()) if d}
    # every = "30s" is finer than a CronJob can run: once a minute, and said
    assert by["CronJob"]["spec"]["schedule"] == "* * * * *" and by["CronJob"]["spec"]["concurrencyPolicy"] == "Forbid"
    assert "cleanup: every = 30s cannot be a cron schedule" in r.stderr
    assert by["Job"]["metadata"]["name"] == "migrate"
    assert "depends_on (migrate completed_successfully) has no Kubernetes equivalent" in r.stderr


# ---- systemd -----------------------------------------------------------------------------------------

def test_systemd_units_verify_and_say_the_oxfile(tmp_path):
    out = tmp_path / "units"
    oxfile = ROOT / "sample_apps" / "oxfile.toml"
    r = oxtui_cli("export", "systemd", str(oxfile), "-o", str(out))
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cleanup.target", "cleanup.timer", "cleanup@.service", "flaky.target", "flaky@.service",
                     "migrate.target", "migrate@.service", "web.socket", "web.target", "web@.service",
                     "worker.target", "worker@.service"]
    assert "After=migrate.target" in (out / "web@.service").read_text()
    assert "Type=oneshot" in (out / "migrate@.service").read_text()
    assert "OnUnitActiveSec=30s" in (out / "cleanup.timer").read_text()
    web = (out / "web@.service").read_text()
    assert "Sockets=web.socket" in web and "Restart=always" in web and "TimeoutStopSec=10" in web
    assert "MemoryMax=268435456" in web and "StartLimitBurst=10" in web and "KillSignal=SIGTERM" in web
    assert "ListenStream=127.0.0.1:8080" in (out / "web.socket").read_text()
    assert "Wants=web@0.service web@1.service" in (out / "web.target").read_text()
    # systemd-analyze verifies instances of a template: link web@0.service -> web@.service
    for unit in ("web", "worker", "flaky", "migrate", "cleanup"):
        (out / f"{unit}@0.service").symlink_to(out / f"{unit}@.service")
    files = [str(p) for p in sorted(out.iterdir()) if not p.name.endswith("@.service")]
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: .ci/run installs it"
    v = subprocess.run([tool, "verify", *files], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and not v.stdout.strip() and not v.stderr.strip(), v.stdout + v.stderr


def test_export_systemd_needs_a_folder(tmp_path):
    r = oxtui_cli("export", "systemd", str(ROOT / "sample_apps" / "oxfile.toml"))
    assert r.returncode == 2 and "-o DIR" in r.stderr
