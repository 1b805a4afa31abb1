import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import oxtui_cli, write_oxfile

from oxtui.oxfile.config import ConfigError, load, parse_size, usable_cpus


def errors_of(tmp_path: Path, body: str) -> list[str]:
    path = write_oxfile(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load(path)
    return e.value.errors


def test_minimal_defaults(tmp_path):
    cfg = load(write_oxfile(tmp_path, '[processes.api]\ncommand = "node server.js"\n'))
    (p,) = cfg.processes
    assert p.instances == 1 and p.restart_on_exit and p.stop_signal == signal.SIGTERM
    assert p.stop_timeout == 10 and p.cwd == tmp_path.resolve() and p.listen is None and p.ready is None
    assert cfg.logs.dir == (tmp_path / "logs").resolve() and cfg.logs.max_size == 10 * 2**20 and cfg.logs.keep == 5


def test_full_table(tmp_path):
    (tmp_path / "app").mkdir()
    cfg = load(write_oxfile(tmp_path, '''
        [processes.api]
        command = "node server.js"
        instances = "max"
        restart_on_exit = false
        cwd = "app"
        env = { NODE_ENV = "production", WORKERS = 2 }
        listen = "127.0.0.1:3000"
        stop_signal = "INT"
        stop_timeout = 2.5
        max_memory = "512M"
        [processes.api.ready]
        log = "listening on"
        http = "/health"
        timeout = 5
        [processes.api.health]
        tcp = "127.0.0.1:3000"
        interval = 1
        failures = 2
    '''))
    p = cfg.process("api")
    assert p.instances == usable_cpus() and p.instances_spec == "max"
    assert p.cwd == (tmp_path / "app").resolve() and dict(p.env) == {"NODE_ENV": "production", "WORKERS": "2"}
    assert p.listen == ("127.0.0.1", 3000) and p.stop_signal == signal.SIGINT and p.stop_timeout == 2.5
    assert p.max_memory == 512 * 2**20 and p.ready.log.search("now listening on 3000") and p.ready.timeout == 5
    assert p.health.tcp == ("127.0.0.1", 3000) and p.health.failures == 2


@pytest.mark.parametrize("value,expected", [("512M", 512 * 2**20), ("1G", 2**30), ("10MB", 10 * 2**20),
                                            (4096, 4096), ("1.5K", 1536), ("2k", 2048)])
def test_sizes(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("body,needle", [
    ('command = "x"\ninstanse = 2', r"\[processes\.api\] instanse: unknown key; did you mean 'instances'\?"),
    ('command = "x"\ninstances = -1', r"\[processes\.api\] instances: must be an integer >= 0 or \"max\" \(got -1\)"),
    ('command = "x"\ninstances = "lots"', r"instances: must be an integer >= 0 or \"max\""),
    ('command = "x"\nlisten = "localhost"', r"\[processes\.api\] listen: must be \"HOST:PORT\""),
    ('command = "x"\nlisten = "127.0.0.1:99999"', r"listen: port must be 1-65535"),
    ('command = "x"\nstop_signal = "SIGNOPE"', r"stop_signal: must be a signal name"),
    ('command = "x"\nmax_memory = "12Q"', r"max_memory: must be a size like \"512M\".*'12Q'"),
    ('command = "x"\nrestart_on_exit = "yes"', r"restart_on_exit: must be true or false"),
    ('command = "x"\nstop_timeout = "10s"', r"stop_timeout: must be a number of seconds"),
    ('command = "x"\ncwd = "nope"', r"cwd: folder .* does not exist"),
    ('instances = 2', r"\[processes\.api\] command: is required"),
    ('command = "x"\n[processes.api.ready]\nlog = "listening (on"', r"\[processes\.api\.ready\] log: regex does not compile"),
    ('command = "x"\n[processes.api.ready]\nhttp = "/health"', r"ready: http readiness needs `listen`"),
    ('command = "x"\n[processes.api.health]\ninterval = 3', r"\[processes\.api\.health\]: needs exactly one of http, tcp or cmd"),
])
def test_each_error_names_file_table_and_key(tmp_path, body, needle):
    errs = errors_of(tmp_path, "[processes.api]\n" + body + "\n")
    assert len(errs) == 1, errs
    assert errs[0].startswith(str(tmp_path / "oxfile.toml") + ": ")
    assert re.search(needle, errs[0]), errs[0]


def test_all_errors_at_once_and_unknown_top_level(tmp_path):
    errs = errors_of(tmp_path, '''
        [procesess.api]
        command = "x"
        [processes.a]
        command = "x"
        instances = -2
        [processes.b]
        commnd = "x"
        listen = "1.2.3:4"
    ''')
    text = "\n".join(errs)
    assert "unknown top-level table 'procesess'" in text
    assert "[processes.a] instances" in text and "[processes.b] commnd: unknown key; did you mean 'command'" in text
    assert "[processes.b] listen" in text and "[processes.b] command: is required" in text


def test_duplicate_listen(tmp_path):
    errs = errors_of(tmp_path, '''
        [processes.a]
        command = "x"
        listen = "127.0.0.1:3000"
        [processes.b]
        command = "y"
        listen = "127.0.0.1:3000"
    ''')
    assert any("[processes.b] listen: 127.0.0.1:3000 is already used by [processes.a]" in e for e in errs)


def test_toml_syntax_error_has_line(tmp_path):
    errs = errors_of(tmp_path, '[processes.api]\ncommand = "x\ninstances = 2\n')
    assert len(errs) == 1 and "TOML syntax error" in errs[0] and "line 2" in errs[0]


def test_check_cli_prints_every_error_and_exits_2(tmp_path):
    path = write_oxfile(tmp_path, '[processes.api]\ncommand = "x"\ninstances = -1\nmax_memory = "12Q"\nbogus = 1\n')
    r = oxtui_cli("check", str(path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith(str(path))]
    assert len(lines) == 4, r.stderr   # three errors and the count
    assert "3 error(s)" in r.stderr


def test_check_cli_ok_and_missing_file(tmp_path):
    path = write_oxfile(tmp_path, '[processes.api]\ncommand = "x"\ninstances = 3\n')
    r = oxtui_cli("check", str(path))
    assert r.returncode == 0 and "api: 3 x `x`" in r.stdout
    r = oxtui_cli("check", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and "nope.toml: not found" in r.stderr and "Traceback" not in r.stderr


def test_run_with_bad_config_exits_2_without_traceback(tmp_path):
    path = write_oxfile(tmp_path, '[processes.api]\ncommand = 5\n')
    r = oxtui_cli("run", str(path), timeout=20)
    assert r.returncode == 2 and "[processes.api] command: must be a string (got 5)" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_catches_what_run_would_fail_on(tmp_path):
    """Before `run` fails: own-port binds beside listen, a taken port, an unwritable log folder, a script
    that is not executable, a user that cannot enter cwd, an env PORT that listen replaces."""
    import os
    import socket
    import stat
    (tmp_path / "start.sh").write_text("#!/bin/sh\nexec sleep 60\n")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    oxfile = tmp_path / "oxfile.toml"
    oxfile.write_text(f'''
[processes.uv]
command = "uvicorn main:app --port 8000"
instances = 2
listen = "127.0.0.1:8001"
[processes.gu]
command = "gunicorn app:application --bind 0.0.0.0:8002"
listen = "127.0.0.1:8002"
[processes.script]
command = "./start.sh"
[processes.busy]
command = "sleep 60"
listen = "127.0.0.1:{port}"
env = {{ PORT = "5000" }}
[processes.walled]
command = "sleep 60"
cwd = "private"
user = "nobody"
[logs]
dir = "start.sh/logs"
''')
    try:
        r = subprocess.run([sys.executable, "-m", "oxtui", "check", str(oxfile)], capture_output=True, text=True,
                           timeout=60, check=False)
    finally:
        taken.close()
    err = r.stderr
    assert r.returncode == 2, err
    assert "[processes.uv] command: `--port 8000` makes it bind a port of its own" in err and "--fd 3" in err
    assert "[processes.gu] command: `--bind 0.0.0.0:8002` makes it bind a port of its own" in err
    assert "[processes.script] command: './start.sh' exists" in err and "chmod +x ./start.sh" in err
    assert f"[processes.busy] listen: 127.0.0.1:{port} is in use by another program now" in err
    assert "[processes.busy] env: PORT = '5000' is replaced by listen's port" in err
    assert "[logs] dir:" in err and "is not writable by this user" in err
    if os.geteuid() == 0:
        assert f"[processes.walled] user: nobody cannot enter its cwd {private}" in err
    assert "Traceback" not in err
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_a_default_stands_for_a_variable_unset_or_empty_and_only_then():
    from oxtui.oxfile.interpolate import interpolate
    errors: list[str] = []

    def value(text: str, environ: dict[str, str]) -> str:
        return interpolate({"processes": {"app": {"env": {"X": text}}}}, environ, "oxfile.toml", errors)[
            "processes"]["app"]["env"]["X"]
    assert value("${MODE:-production}", {}) == "production"
    assert value("${MODE:-production}", {"MODE": ""}) == "production", "empty counts as unset, as in the shell"
    assert value("${MODE:-production}", {"MODE": "dev"}) == "dev"
    assert value("a${EMPTY}b", {"EMPTY": ""}) == "ab", "set but empty, without a default: empty, no error"
    assert errors == []
    assert value("${GONE}", {}) == ""
    said = ("oxfile.toml: [processes.app] env: ${GONE} is not set in the environment oxtui runs in; "
            "set it, or write ${GONE:-default}")
    assert errors == [said]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_run_as_user_may_enter_its_own_private_folder_and_no_one_else_s():
    from oxtui.oxfile.preflight import _can_enter
    top = Path(tempfile.mkdtemp(prefix="oxtui-enter-", dir="/tmp"))     # under /tmp: every parent searchable
    try:
        top.chmod(0o755)
        own, other, team = top / "own", top / "other", top / "team"
        for folder in (own, other, team):
            folder.mkdir()
        own.chmod(0o700)
        os.chown(own, 65534, 65534)
        other.chmod(0o700)
        team.chmod(0o710)
        os.chown(team, 0, 4242)
        assert _can_enter(own, 65534, set()) is None, "its owner may enter a 0700 folder"
        assert _can_enter(other, 65534, set()) == other
        assert _can_enter(team, 65534, {4242}) is None and _can_enter(team, 65534, set()) == team
        assert _can_enter(other, 0, set()) is None
    finally:
        shutil.rmtree(top)
