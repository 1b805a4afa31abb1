"""The habits a CLI of this kind must fit: pipes closed early, bad arguments, typos, Ctrl-C during a
reload, private files, refused connections to a stopped process, machine limits in `check`, shell
completion and the oxfile's JSON Schema."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
import tomllib
from pathlib import Path

import jsonschema
import pytest
from conftest import PY, ROOT, app_oxfile, default_sigint, free_port, oxtui_cli, wait_until, write_oxfile


def closed_pipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `oxtui ARGS` with a stdout whose reader is already gone (as `| head` after its lines)."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([PY, "-m", "oxtui", *args], stdout=w, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, cwd=cwd, timeout=30, env={**os.environ, "NO_COLOR": "1"}, check=False)
    finally:
        os.close(w)
    return proc


def test_every_printing_verb_ends_quietly_on_a_closed_pipe(tmp_path, engine_process):
    oxfile = write_oxfile(tmp_path, '[processes.app]\ncommand = "sh -c \'seq 1 500; exec sleep 60\'"\n')
    ep = engine_process(oxfile)
    ep.wait_running("app", 1)
    c = ("-c", str(oxfile))
    for args in (("status", *c), ("status", "--json", *c), ("logs", "-n", "100", *c), ("ls",), ("ls", "--json"),
                 ("check", str(oxfile)), ("completion", "bash"), ("schema",), ("--help",), ("status", "--help"),
                 ("save", *c)):
        r = closed_pipe(*args)
        assert r.returncode == 0 and r.stderr == "", (args, r.returncode, r.stderr)
    # -f: the engine keeps sending; the follower must notice its reader left and end quietly
    r = closed_pipe("logs", "-f", *c)
    assert r.returncode == 0 and r.stderr == "", r.stderr


@pytest.mark.parametrize("args,says", [
    (("kill", "app", "0", "--signal", "FOO"), "--signal must be a signal name"),
    (("scale", "app", "abc"), "N must be a number"),
    (("kill", "app", "x"), "invalid int value"),
    (("logs", "-n", "-1"), "-n must be a number of lines >= 0"),
    (("reload",), "the following arguments are required"),
    (("stauts",), "unknown command 'stauts'; did you mean 'status'?"),
    (("reloda", "web"), "unexpected arguments"),
    (("completion", "tcsh"), "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, says):
    r = oxtui_cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert says in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_folder_means_its_oxfile(tmp_path):
    r = oxtui_cli(".", cwd=tmp_path)
    assert r.returncode == 2 and f"{tmp_path / 'oxfile.toml'}: not found" in r.stderr
    write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 1"\n')
    assert oxtui_cli("check", ".", cwd=tmp_path).returncode == 0


def test_ctrl_c_leaves_the_reload_running_and_says_how_to_follow_it(tmp_path, engine_process):
    port = free_port()
    oxfile = app_oxfile(tmp_path, port, instances=2)
    ep = engine_process(oxfile)
    ep.wait_running("app", 2)
    (tmp_path / "release.txt").write_text("slowok r2")
    proc = subprocess.Popen([PY, "-m", "oxtui", "reload", "app", "-c", str(oxfile)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, preexec_fn=default_sigint)
    wait_until(lambda: (ep.status()["processes"][0]["reload"] or {}).get("state") == "running", 10, 0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "the reload carries on in the engine" in err and f"oxtui status -c {oxfile}" in err
    assert "Traceback" not in err
    wait_until(lambda: ep.status()["processes"][0]["reload"]["state"] == "done", 30, 0.2,
               what="the reload finished in the engine")


def test_the_background_engine_output_file_is_private(tmp_path):
    oxfile = write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\n')
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "oxtui-engine.out").write_text("older\n")
    os.chmod(tmp_path / "logs" / "oxtui-engine.out", 0o644)
    try:
        assert oxtui_cli("up", str(oxfile)).returncode == 0
        for f in (tmp_path / "logs").iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        oxtui_cli("down", str(oxfile))


def refused(port: int) -> bool:
    """True when a connection is refused at once (no listener), False when it is accepted."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.parametrize("how", ["stop", "scale"])
def test_a_stopped_process_refuses_connections_and_serves_again_on_start(tmp_path, engine_process, how):
    port = free_port()
    ep = engine_process(app_oxfile(tmp_path, port, instances=2))
    ep.wait_running("app", 2)
    assert not refused(port)
    r = ep.cli("stop", "app") if how == "stop" else ep.cli("scale", "app", "0")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    assert refused(port), "nothing serves the port: a client must be refused, not left waiting"
    assert time.monotonic() - t0 < 1
    r = ep.cli("start", "app") if how == "stop" else ep.cli("scale", "app", "2")
    assert r.returncode == 0, r.stderr
    ep.wait_running("app", 2)
    from conftest import http_get
    assert http_get(port)[0] == 200


def test_check_knows_the_machine_limits(tmp_path):
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    oxfile = write_oxfile(tmp_path, f'[processes.app]\ncommand = "sleep 1"\ninstances = {pid_max + 1}\n')
    r = oxtui_cli("check", str(oxfile))
    assert r.returncode == 2 and f"pid_max = {pid_max}" in r.stderr
    many = 16 * len(os.sched_getaffinity(0)) + 65
    write_oxfile(tmp_path, f'[processes.app]\ncommand = "sleep 1"\ninstances = {many}\n')
    r = oxtui_cli("check", str(oxfile))
    assert r.returncode == 0 and "warning:" in r.stderr and f"instances: {many} is over 16x" in r.stderr


SHELL_CHECK = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_valid(tmp_path, shell):
    r = oxtui_cli("completion", shell)
    assert r.returncode == 0 and "oxtui _names" in r.stdout
    for verb in ("status", "reload", "startup", "save"):
        assert verb in r.stdout
    script = tmp_path / f"oxtui.{shell}"
    script.write_text(r.stdout)
    tool = shutil.which(SHELL_CHECK[shell][0])
    assert tool, f"{shell} is not installed: .ci/run installs it for this test"
    check = subprocess.run([tool, *SHELL_CHECK[shell][1:], str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr


def test_bash_completes_verbs_and_the_running_engines_process_names(tmp_path, engine_process):
    oxfile = write_oxfile(tmp_path, '[processes.web]\ncommand = "sleep 60"\n[processes.worker]\ncommand = "sleep 60"\n')
    ep = engine_process(oxfile)
    ep.wait_running("web", 1)
    script = tmp_path / "oxtui.bash"
    script.write_text(oxtui_cli("completion", "bash").stdout)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "oxtui").write_text(f'#!/bin/sh\nexec {PY} -m oxtui "$@"\n')
    os.chmod(shim / "oxtui", 0o755)
    body = (f'source {script}\n'
            'COMP_WORDS=(oxtui rel); COMP_CWORD=1; _shtab_oxtui oxtui rel oxtui; echo "${COMPREPLY[*]}"\n'
            'COMP_WORDS=(oxtui reload ""); COMP_CWORD=2; _shtab_oxtui oxtui "" reload; echo "${COMPREPLY[*]}"\n')
    r = subprocess.run(["bash", "-c", body], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}, check=False)
    assert r.stdout.splitlines() == ["reload releases", "web worker all"], (r.stdout, r.stderr)


# ---- the JSON Schema -----------------------------------------------------------------------------

def schema() -> dict:
    return json.loads(oxtui_cli("schema").stdout)


def test_the_shipped_schema_is_the_generated_one():
    assert json.loads((ROOT / "oxtui" / "oxfile" / "oxfile.schema.json").read_text()) == schema()


def test_the_schema_accepts_every_sample_oxfile():
    s = schema()
    samples = sorted((ROOT / "sample_apps").glob("oxfile*.toml"))
    assert samples
    for path in samples:
        jsonschema.validate(tomllib.loads(path.read_text()), s)
        assert oxtui_cli("check", str(path)).returncode == 0


# Every error case `check` rejects in test_config, and whether a schema can see it: whether a folder
# exists, a regex compiles, or a port number is in range is for `check` alone.
import test_config

NOT_FOR_A_SCHEMA = ("cwd: folder", "regex does not compile")


def error_cases(for_schema: bool) -> list[tuple[str, str]]:
    cases = [c for mark in test_config.test_each_error_names_file_table_and_key.pytestmark
             if mark.name == "parametrize" for c in mark.args[1]]
    return [c for c in cases if any(n in c[1] for n in NOT_FOR_A_SCHEMA) != for_schema]


def test_only_filesystem_and_regex_errors_are_left_to_check():
    assert len(error_cases(for_schema=False)) == len(NOT_FOR_A_SCHEMA)


@pytest.mark.parametrize("body,needle", error_cases(for_schema=True))
def test_the_schema_rejects_what_check_rejects(tmp_path, body, needle):
    text = "[processes.api]\n" + body + "\n"
    oxfile = tmp_path / "oxfile.toml"
    oxfile.write_text(text)
    assert oxtui_cli("check", str(oxfile)).returncode == 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(tomllib.loads(text), schema())


def test_the_schema_and_check_know_the_same_keys():
    from oxtui.oxfile import fields
    s = schema()
    process = s["properties"]["processes"]["additionalProperties"]
    assert set(process["properties"]) == set(fields.PROCESS)
    assert set(process["properties"]["ready"]["properties"]) == set(fields.READY)
    assert set(process["properties"]["health"]["properties"]) == set(fields.HEALTH)
    assert set(s["properties"]["logs"]["properties"]) == set(fields.LOGS)
    assert re.search(r"\bcommand\b", json.dumps(process["required"]))


def test_a_hint_never_points_at_a_file_that_does_not_exist(tmp_path):
    r = oxtui_cli("status", "-c", str(tmp_path / "nowhere" / "oxfile.toml"))
    assert r.returncode == 3
    assert "there is no such file" in r.stderr and "oxtui up" not in r.stderr, r.stderr
