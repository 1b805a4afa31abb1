"""Coming from PM2 or a Procfile, leaving for Kubernetes or plain systemd: real ecosystem files (Node
evaluates the .js), the imported oxfile checked and run, manifests validated against the official
Kubernetes schemas, unit files verified by systemd-analyze."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from conftest import PY, ROOT, EngineProcess, free_port, http_get, oxtui_cli, wait_until, write_oxfile

APPS = [
    {"name": "api", "script": "server.js", "instances": "max", "exec_mode": "cluster",
     "env": {"NODE_ENV": "development", "LOG": "info"}, "env_production": {"NODE_ENV": "production"},
     "kill_timeout": 3000, "max_memory_restart": "300M", "wait_ready": True, "listen_timeout": 8000,
     "cron_restart": "0 3 * * *", "frobnicate": 1},
    {"name": "worker", "script": "worker.py", "autorestart": False, "max_restarts": 5, "restart_delay": 2000,
     "cron_restart": "*/5 * * * *"},
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
    assert worker["command"] == "python3 worker.py"
    assert tick["watch"] == ["src"] and tick["ignore"] == ["node_modules"]
    assert "# from kill_timeout: 3000 ms" in text and "# from max_memory_restart: '300M'" in text
    assert api["schedule"] == {"cron": "0 3 * * *"}, "cron_restart is a schedule: a rolling reload at each tick"
    assert worker["schedule"] == {"cron": "*/5 * * * *"}
    schedule_notes = [line for line in text.splitlines() if "from cron_restart" in line]
    assert "rolling reload" in schedule_notes[0] and "a fresh run at each tick" in schedule_notes[1], schedule_notes
    for said in ("frobnicate has no oxtui meaning", "out_file not carried over", "server.listen({fd: 3})", "wait_ready"):
        assert said in r.stderr, said
    assert "no schedules" not in r.stderr and "cron_restart" not in r.stderr


def test_pm2_instances_forms(tmp_path):
    apps = [{"name": "a", "script": "a.js", "instances": -1}, {"name": "b", "script": "b.js", "instances": 0},
            {"name": "c", "script": "c.js", "instances": 3, "exec_mode": "fork"}]
    r = oxtui_cli("import", "pm2", str(write_ecosystem(tmp_path, "json", apps)))
    assert r.returncode == 0, r.stderr
    data = tomllib.loads(r.stdout)["processes"]
    assert data["a"]["instances"] == max(1, len(os.sched_getaffinity(0)) - 1)
    assert data["b"]["instances"] == "max" and data["c"]["instances"] == 3


def test_pm2_delays_durations_cron_env_file_and_per_instance_variables(tmp_path):
    (tmp_path / ".env").write_text("DB_URL=postgres://u:secret@db/app\n")
    (tmp_path / "worker.env").write_text("QUEUE=jobs\n")
    apps = [{"name": "api", "script": "server.js", "instances": 2, "restart_delay": 1000,
             "exp_backoff_restart_delay": 100, "kill_timeout": "3000", "listen_timeout": "8s",
             "env": {"PORT": "3000", "DB_URL": "postgres://u:secret@db/app", "NODE_ENV": "production"},
             "increment_var": "PORT", "instance_var": "INSTANCE_ID"},
            {"name": "worker", "script": "worker.js", "interpreter": "none", "env_file": "worker.env"}]
    r = oxtui_cli("import", "pm2", str(write_ecosystem(tmp_path, "js", apps)))
    assert r.returncode == 0, r.stderr                   # both delays: once a KeyAlreadyPresent traceback
    data = tomllib.loads(r.stdout)["processes"]
    api, worker = data["api"], data["worker"]
    assert api["backoff"] == 0.1 and "backoff_max" not in api, "PM2 prefers the exponential backoff"
    assert "restart_delay not carried over: exp_backoff_restart_delay is set" in r.stderr
    assert api["stop_timeout"] == 3.0, "a PM2 duration without a unit is milliseconds"
    assert api["ready"]["timeout"] == 8.0
    assert api["env_file"] == ".env" and "DB_URL" not in api["env"] and "secret" not in r.stdout
    assert api["command"] == "PORT=$((PORT+OXTUI_INSTANCE)) INSTANCE_ID=$OXTUI_INSTANCE node server.js"
    assert worker["command"] == "./worker.js" and worker["env_file"] == "worker.env"
    # PM2's env_file may be a list: every file is kept, in its order
    apps[1]["env_file"] = ["worker.env", "secrets.env"]
    (tmp_path / "secrets.env").write_text("TOKEN=t\n")
    r = oxtui_cli("import", "pm2", str(write_ecosystem(tmp_path, "json", apps)))
    assert r.returncode == 0, r.stderr
    assert tomllib.loads(r.stdout)["processes"]["worker"]["env_file"] == ["worker.env", "secrets.env"]
    # the per-instance variables, for real: instance 1 gets PORT 3001 and INSTANCE_ID 1
    (tmp_path / "server.js").write_text("console.log(`port ${process.env.PORT} id ${process.env.INSTANCE_ID}`);"
                                        "setInterval(() => {}, 1000);")
    out = tmp_path / "oxfile.toml"
    out.write_text(r.stdout.split("[processes.worker]")[0] + '[logs]\ndir = "logs"\n')
    ep = EngineProcess(out)
    try:
        wait_until(lambda: ep.cli("status").returncode == 0, 15, 0.1)
        wait_until(lambda: "port 3001 id 1" in ep.cli("logs", "api").stdout, 15, 0.1, what="instance 1's own PORT")
        assert "port 3000 id 0" in ep.cli("logs", "api").stdout
    finally:
        assert ep.stop() == 0


def test_a_js_file_that_throws_is_one_line(tmp_path):
    bad = tmp_path / "ecosystem.config.js"
    bad.write_text("throw new Error('no config for you');\n")
    r = oxtui_cli("import", "pm2", str(bad))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no config for you" in r.stderr and str(bad) in r.stderr
    bad.write_text("module.exports = { apps: [ { name: 'a', script: 'a.js' }, } ] };\n")
    r = oxtui_cli("import", "pm2", str(bad))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "SyntaxError: Unexpected token" in r.stderr and "ecosystem.config.js:1" in r.stderr, r.stderr


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
    assert data == {"web": {"command": "gunicorn app:application", "listen": "127.0.0.1:5005", "env_file": ".env"},
                    "worker": {"command": "python3 w.py", "env_file": ".env"}}
    assert "abc" not in out.read_text() and "abc" not in r.stderr, "values of .env never copied"
    assert "no env_file key" not in r.stderr
    # a port given on the command line wins over the one in .env
    r = oxtui_cli("import", "procfile", str(tmp_path / "Procfile"), "--port", "6006")
    assert r.returncode == 0 and tomllib.loads(r.stdout)["processes"]["web"]["listen"] == "127.0.0.1:6006", r.stderr
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
    assert names == ["cleanup.target", "cleanup@.service", "cleanup@.timer", "flaky.target", "flaky@.service",
                     "migrate.target", "migrate@.service", "web.socket", "web.target", "web@.service",
                     "worker.target", "worker@.service"]
    assert "After=migrate.target" in (out / "web@.service").read_text()
    assert "Type=oneshot" in (out / "migrate@.service").read_text()
    # a one-off task stays "active" once done (what waits for it is satisfied); a scheduled one must end,
    # or its timer's next start finds it active and does nothing
    assert "RemainAfterExit=yes" in (out / "migrate@.service").read_text()
    assert "RemainAfterExit" not in (out / "cleanup@.service").read_text()
    timer = (out / "cleanup@.timer").read_text()
    assert "OnUnitActiveSec=30s" in timer and "Unit=cleanup@%i.service" in timer and "AccuracySec=100ms" in timer
    assert "Wants=cleanup@0.timer" in (out / "cleanup.target").read_text()
    web = (out / "web@.service").read_text()
    assert "Sockets=web.socket" in web and "Restart=always" in web and "TimeoutStopSec=10" in web
    assert "MemoryMax=268435456" in web and "StartLimitBurst=10" in web and "KillSignal=SIGTERM" in web
    assert "ListenStream=127.0.0.1:8080" in (out / "web.socket").read_text()
    assert "Wants=web@0.service web@1.service" in (out / "web.target").read_text()
    # systemd-analyze verifies instances of a template: link web@0.service -> web@.service
    for unit in ("web", "worker", "flaky", "migrate", "cleanup"):
        (out / f"{unit}@0.service").symlink_to(out / f"{unit}@.service")
    (out / "cleanup@0.timer").symlink_to(out / "cleanup@.timer")
    files = [str(p) for p in sorted(out.iterdir()) if not p.name.endswith(("@.service", "@.timer"))]
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: .ci/run installs it"
    v = subprocess.run([tool, "verify", *files], capture_output=True, text=True, timeout=60, check=False)
    assert v.returncode == 0 and not v.stdout.strip() and not v.stderr.strip(), v.stdout + v.stderr


def test_export_systemd_needs_a_folder(tmp_path):
    r = oxtui_cli("export", "systemd", str(ROOT / "sample_apps" / "oxfile.toml"))
    assert r.returncode == 2 and "-o DIR" in r.stderr


def _answers(port: int) -> bool:
    try:
        return http_get(port)[0] == 200
    except ConnectionRefusedError:
        return False


def test_a_procfile_release_runs_first_and_a_web_that_binds_port_itself_does_not_crash_loop(tmp_path):
    (tmp_path / "Procfile").write_text(
        "release: sh -c 'sleep 0.5; date +%s.%N > released'\n"
        f"web: {PY} -m http.server --bind 127.0.0.1 $PORT\n"
        "worker: sleep 60\n")
    port = free_port()
    out = tmp_path / "oxfile.toml"
    r = oxtui_cli("import", "procfile", str(tmp_path / "Procfile"), "--port", str(port), "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = tomllib.loads(out.read_text())["processes"]
    assert data["release"]["restart"] == "never", "release is a one-shot task"
    assert data["web"]["depends_on"] == data["worker"]["depends_on"] == {"release": "completed_successfully"}
    assert "listen" not in data["web"] and data["web"]["env"] == {"PORT": str(port)}
    assert f'add listen = "127.0.0.1:{port}"' in r.stderr
    with open(out, "a") as f:
        f.write('\n[logs]\ndir = "logs"\n')
    ep = EngineProcess(out)
    try:
        wait_until(lambda: ep.cli("status").returncode == 0, 15, 0.1)
        ep.wait_running("web", 1, timeout=20)
        # running means started here (no ready check): the server binds $PORT a moment later
        wait_until(lambda: _answers(port), 20, 0.1, what=f"an answer on port {port}")
        assert ep.workers("web")[0]["restarts"] == 0, "its own bind of $PORT works: no EADDRINUSE loop"
        released = float((tmp_path / "released").read_text())
        events = [json.loads(line) for line in ep.cli("events", "--json", "-n", "100").stdout.splitlines()]
        start = next(e["at"] for e in events if e["event"] == "start" and e["process"] == "web")
        assert released <= start, "web started before the release had run"
    finally:
        assert ep.stop() == 0


@pytest.mark.parametrize("web,command", [
    ("gunicorn app:application --bind 0.0.0.0:$PORT -w 1", "gunicorn app:application -w 1"),
    ("uvicorn main:app --host 0.0.0.0 --port $PORT --workers 1",
     "python3 -m oxtui.drain.uvicorn main:app --workers 1 --fd 3"),
])
def test_a_procfile_web_server_that_can_take_fd_3_is_given_it(tmp_path, web, command):
    (tmp_path / "Procfile").write_text(f"web: {web}\n")
    r = oxtui_cli("import", "procfile", str(tmp_path / "Procfile"), "--port", "5001")
    assert r.returncode == 0, r.stderr
    data = tomllib.loads(r.stdout)["processes"]["web"]
    assert (data["command"], data["listen"]) == (command, "127.0.0.1:5001")


def test_kubernetes_pods_listen_on_port_and_cronjobs_keep_their_time_zone(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.api]
        command = "python3 -m oxtui.drain.uvicorn --fd 3 main:app"
        listen = "127.0.0.1:8000"
        [processes.wsgi]
        command = "gunicorn app:application -w 1"
        listen = "127.0.0.1:8001"
        [processes.report]
        command = "true"
        restart = "never"
        [processes.report.schedule]
        cron = "0 9 * * 1"
        timezone = "Europe/Paris"
    ''')
    docs, err = export_k8s(oxfile)
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    api = by[("Deployment", "api")]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert "--fd" not in api and "--host 0.0.0.0 --port $PORT" in api, api
    assert "the image needs oxtui installed" in err
    wsgi = by[("Deployment", "wsgi")]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert wsgi.endswith("--bind 0.0.0.0:$PORT"), "no LISTEN_FDS in a pod: gunicorn must bind PORT"
    cron = by[("CronJob", "report")]["spec"]
    assert (cron["schedule"], cron["timeZone"]) == ("0 9 * * 1", "Europe/Paris")
    # every = a duration: a cron step in minutes (or hours), never the seconds themselves
    original = oxfile.read_text()
    for every, cron in (("5m", "*/5 * * * *"), ("120", "*/2 * * * *"), ("2h", "0 */2 * * *")):
        text = original.replace('timezone = "Europe/Paris"', "").replace(
            'cron = "0 9 * * 1"', f'every = "{every}"' if every[-1].isalpha() else f"every = {every}")
        docs, _ = export_k8s(write_oxfile(tmp_path, text))
        assert [d["spec"]["schedule"] for d in docs if d["kind"] == "CronJob"] == [cron], every


def test_systemd_units_quote_env_carry_path_and_user_and_order_what_must_succeed(tmp_path):
    oxfile = write_oxfile(tmp_path, '''
        [processes.migrate]
        command = "true"
        restart = "never"
        [processes.web]
        command = "gunicorn app:application"
        env = { GREETING = "hello world 100%", DOLLAR = "$HOME" }
        depends_on = { migrate = "completed_successfully" }
    ''')
    out = tmp_path / "units"
    r = oxtui_cli("export", "systemd", str(oxfile), "-o", str(out), env={"SUDO_USER": "daemon"})
    assert r.returncode == 0, r.stderr
    web = (out / "web@.service").read_text()
    assert 'Environment="GREETING=hello world 100%%"' in web, "quoted, and % is a specifier otherwise"
    assert "Environment=DOLLAR=$HOME" in web, "Environment= never expands $"
    assert f"Environment=PATH={os.environ['PATH']}" in web
    if os.geteuid() == 0:
        assert "User=daemon" in web, "exported through sudo: the units run as who ran sudo"
    assert "Requires=migrate.target" in web and "After=migrate.target" in web
    target = (out / "migrate.target").read_text()
    assert "After=migrate@0.service" in target and "Requires=migrate@0.service" in target
    (out / "web@0.service").symlink_to(out / "web@.service")
    (out / "migrate@0.service").symlink_to(out / "migrate@.service")
    v = subprocess.run([shutil.which("systemd-analyze"), "verify", *(str(p) for p in sorted(out.iterdir())
                        if not p.name.endswith("@.service"))], capture_output=True, text=True, timeout=60, check=False)
    assert v.returncode == 0 and not v.stdout.strip() and not v.stderr.strip(), v.stdout + v.stderr
    r = oxtui_cli("export", "systemd", str(oxfile), "-o", str(out))
    assert r.returncode == 1 and "pass --force to replace them" in r.stderr
    assert oxtui_cli("export", "systemd", str(oxfile), "-o", str(out), "--force").returncode == 0


def test_import_usage_mistakes_are_one_line_and_no_broken_oxfile_is_printed(tmp_path):
    (tmp_path / "Procfile").write_text("web: gunicorn app:application\n")
    r = oxtui_cli("import", "procfile", str(tmp_path / "Procfile"), "--port", "abc")
    assert r.returncode == 2 and r.stdout == "" and "--port must be a port number" in r.stderr
    r = oxtui_cli("import", "pm2", str(write_ecosystem(tmp_path, "json")), "--listen", "nope=127.0.0.1:3000")
    assert r.returncode == 2 and r.stdout == "" and "no app named 'nope' (apps: api, worker, tick)" in r.stderr
    (tmp_path / "Procfile.bad").write_text("web: gunicorn app:application\n")
    (tmp_path / ".env").write_text("PORT=99999\n")            # a port no oxfile accepts
    r = oxtui_cli("import", "procfile", str(tmp_path / "Procfile.bad"))
    assert r.returncode == 1 and r.stdout == "", "an oxfile that check refuses is never printed"
    assert "listen: port must be 1-65535" in r.stderr and "nothing written" in r.stderr
