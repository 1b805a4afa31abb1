"""Found from anywhere: one runtime folder whatever the environment says, every verb taking the
oxfile positionally or with -c from any folder, the only engine as the default, `oxtui ls`, hints
that work when pasted, and `oxtui save` keeping the file as written."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess

import pytest
from conftest import PY, EngineProcess, oxtui_cli, wait_until, write_oxfile

from oxtui.client.remote import RemoteEngine
from oxtui.runtime import socket_path


def sleeper(folder, n=1, name="oxfile.toml"):
    folder.mkdir(parents=True, exist_ok=True)
    return write_oxfile(folder, f'''
        # the app (a comment that must survive `save`)
        [processes.app]
        command = "sleep 60"   # inline comment
        instances = {n}

        [processes.app.ready]
        timeout = 5
    ''', name=name)


def ready_engine(engine_process, oxfile, n=1):
    ep = engine_process(oxfile)
    ep.wait_running("app", n)
    return ep


def cli_json(*args, **kw):
    r = oxtui_cli(*args, **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_runtime_folder_does_not_depend_on_xdg_runtime_dir(tmp_path, monkeypatch):
    """A systemd unit has no XDG_RUNTIME_DIR, an SSH login shell has one: they must meet."""
    monkeypatch.delenv("OXTUI_RUNTIME_DIR")
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    for i, (engine_env, viewer_env) in enumerate((({"XDG_RUNTIME_DIR": None}, {"XDG_RUNTIME_DIR": str(xdg)}),
                                                  ({"XDG_RUNTIME_DIR": str(xdg)}, {"XDG_RUNTIME_DIR": None}))):
        oxfile = sleeper(tmp_path / f"app{i}")
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        env.update({k: v for k, v in engine_env.items() if v})
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        ep = EngineProcess(oxfile, env=env)
        try:
            for k, v in viewer_env.items():
                if v:
                    monkeypatch.setenv(k, v)
                else:
                    monkeypatch.delenv(k, raising=False)
            wait_until(lambda oxfile=oxfile: oxtui_cli("status", str(oxfile)).returncode == 0, 15, 0.1,
                       what="status finds it")
            assert any(e["oxfile"] == str(oxfile) for e in cli_json("ls", "--json"))
            remote = RemoteEngine(oxfile)      # what `oxtui` attaches with
            remote.connect()
            assert remote.snapshot()["engine_pid"] == ep.proc.pid
            remote.detach()
            second = oxtui_cli("run", str(oxfile), timeout=30)
            assert second.returncode == 1 and "already running" in second.stderr
        finally:
            assert ep.stop() == 0


def test_verbs_take_the_oxfile_from_any_folder(tmp_path, engine_process):
    oxfile = sleeper(tmp_path / "shop")
    ep = ready_engine(engine_process, oxfile)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    snap = cli_json("status", "--json", str(oxfile), cwd=elsewhere)
    assert snap["engine_pid"] == ep.proc.pid and snap["oxfile"] == str(oxfile)
    assert cli_json("status", "--json", str(oxfile.parent), cwd=elsewhere)["engine_pid"] == ep.proc.pid  # a folder
    both = oxtui_cli("status", str(oxfile), "-c", str(tmp_path / "other.toml"), cwd=elsewhere)
    assert both.returncode == 2 and "two oxfiles" in both.stderr
    r = oxtui_cli("down", str(oxfile), cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert ep.proc.wait(15) == 0


def test_the_only_engine_is_the_default_and_several_are_listed(tmp_path, engine_process):
    nowhere = tmp_path / "home"
    nowhere.mkdir()
    assert oxtui_cli("status", cwd=nowhere).returncode == 3         # none at all: "no engine" as before
    a = sleeper(tmp_path / "a")
    ep_a = ready_engine(engine_process, a)
    snap = cli_json("status", "--json", cwd=nowhere)
    assert snap["oxfile"] == str(a)
    assert "app" in oxtui_cli("logs", "-n", "5", cwd=nowhere).stdout
    b = sleeper(tmp_path / "b", name="staging.toml")
    ep_b = ready_engine(engine_process, b)
    r = oxtui_cli("status", cwd=nowhere)
    assert r.returncode == 2
    assert str(a) in r.stderr and str(b) in r.stderr and "-c" in r.stderr
    listed = {e["oxfile"]: e for e in cli_json("ls", "--json", cwd=nowhere)}
    assert set(listed) == {str(a), str(b)}
    assert listed[str(b)]["pid"] == ep_b.proc.pid and listed[str(b)]["systemd"] is False
    assert listed[str(a)]["processes"] == [{"name": "app", "instances": 1, "oxfile_instances": 1, "running": 1,
                                            "task": False, "summary": "1/1"}]
    text = oxtui_cli("ls", cwd=nowhere).stdout
    assert str(a) in text and "app 1/1" in text
    # An engine SIGKILLed with its keeper (its whole process group) leaves a socket nobody answers on:
    # cleaned, never listed as live.
    os.killpg(ep_a.proc.pid, signal.SIGKILL)
    ep_a.proc.wait()
    assert socket_path(a).exists()
    assert [e["oxfile"] for e in cli_json("ls", "--json", cwd=nowhere)] == [str(b)]
    assert not socket_path(a).exists(), "ls removes a dead engine's socket"
    assert cli_json("status", "--json", cwd=nowhere)["oxfile"] == str(b)    # the only one again


def test_hints_work_when_pasted_from_another_folder(tmp_path):
    oxfile = sleeper(tmp_path / "shop")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = oxtui_cli("status", "-c", str(oxfile), cwd=elsewhere)
    assert r.returncode == 3
    up = r.stderr.split("`")[1]                       # "... start one with `oxtui up /abs/oxfile.toml` ..."
    assert up.startswith("oxtui up ")
    started = subprocess.run([PY, "-m", "oxtui", *shlex.split(up)[1:]], capture_output=True, text=True,
                             cwd="/", timeout=60, stdin=subprocess.DEVNULL, check=False)
    try:
        assert started.returncode == 0, started.stderr
        again = oxtui_cli("up", str(oxfile), cwd=elsewhere)
        apply = again.stdout.split("`")[1]
        assert apply == f"oxtui apply -c {oxfile}"
        assert subprocess.run([PY, "-m", "oxtui", *shlex.split(apply)[1:]], capture_output=True,
                              cwd="/", timeout=60, check=False).returncode == 0
    finally:
        assert oxtui_cli("down", "-c", str(oxfile), cwd="/").returncode == 0


def test_save_writes_running_counts_and_keeps_the_file_byte_for_byte(tmp_path, engine_process):
    oxfile = sleeper(tmp_path, n=1)
    before = oxfile.read_text()
    ep = ready_engine(engine_process, oxfile)
    assert ep.cli("scale", "app", "3").returncode == 0
    ep.wait_running("app", 3)
    proc = ep.status()["processes"][0]
    assert (proc["instances"], proc["oxfile_instances"]) == (3, 1)
    assert "app (3, oxfile says 1)" in ep.cli("status").stdout
    r = ep.cli("save")
    assert r.returncode == 0, r.stderr
    assert "app: instances = 3 (was 1)" in r.stdout
    assert oxfile.read_text() == before.replace("instances = 1", "instances = 3")
    assert ep.status()["processes"][0]["oxfile_instances"] == 3
    assert "nothing to save" in ep.cli("save", "app").stdout
    assert "unchanged: app" in ep.cli("apply").stdout       # the engine's view of the file moved with it
    # An edit made by someone else since the engine read the file is never overwritten.
    edited = oxfile.read_text().replace("# the app", "# edited by hand")
    oxfile.write_text(edited)
    assert ep.cli("scale", "app", "2").returncode == 0
    r = ep.cli("save")
    assert r.returncode == 1 and "changed on disk" in r.stderr and "oxtui apply -c" in r.stderr
    assert oxfile.read_text() == edited


def test_save_adds_a_missing_instances_key(tmp_path, engine_process):
    oxfile = write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\n\n[processes.other]\ncommand = "sleep 60"\n')
    ep = engine_process(oxfile)
    ep.wait_running("app", 1)
    assert ep.cli("scale", "app", "+1").returncode == 0
    assert ep.cli("save", "app").returncode == 0
    text = oxfile.read_text()
    assert text.startswith('[processes.app]\ncommand = "sleep 60"\ninstances = 2\n\n[processes.other]')


@pytest.mark.parametrize("verb,code,says", [("run", 2, ": not found"), ("up", 2, ": not found"),
                                            ("check", 2, ": not found"), ("apply", 2, ": not found"),
                                            ("startup", 2, ": not found"),
                                            ("status", 3, ", and there is no such file"),
                                            ("down", 3, ", and there is no such file"),
                                            ("save", 3, ", and there is no such file")])
def test_every_verb_accepts_c_and_a_folder(tmp_path, verb, code, says):
    """-c works for every verb; for a folder the oxfile inside is used."""
    r = oxtui_cli(verb, "-c", str(tmp_path), cwd="/", timeout=30)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert f"{tmp_path / 'oxfile.toml'}{says}" in r.stderr


def test_save_keeps_max_and_the_files_mode(tmp_path, engine_process):
    from oxtui.oxfile.values import usable_cpus
    cpus = usable_cpus()
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 60"
        instances = "max"
        [processes.other]
        command = "sleep 60"
        instances = 1
    ''')
    oxfile.chmod(0o640)
    ep = engine_process(oxfile)
    ep.wait_running("app", cpus)
    assert ep.cli("scale", "other", "2").returncode == 0
    r = ep.cli("save")
    assert r.returncode == 0, r.stderr
    text = oxfile.read_text()
    assert 'instances = "max"' in text, "max is what the file means; the count only equals it on this machine"
    assert "instances = 2" in text
    assert oxfile.stat().st_mode & 0o777 == 0o640, oct(oxfile.stat().st_mode)


def test_ls_lists_an_engine_that_holds_its_lock_but_does_not_answer(tmp_path, engine_process):
    oxfile = sleeper(tmp_path / "a")
    ep = ready_engine(engine_process, oxfile)
    os.kill(ep.proc.pid, signal.SIGSTOP)
    try:
        listed = cli_json("ls", "--json", timeout=60)
    finally:
        os.kill(ep.proc.pid, signal.SIGCONT)
    assert [(e["oxfile"], e["pid"], e["answering"]) for e in listed] == [(str(oxfile), ep.proc.pid, False)]


@pytest.mark.skipif(os.getuid() != 0, reason="a folder owned by someone else is made with chown, as root")
def test_a_runtime_folder_owned_by_someone_else_is_refused(tmp_path, monkeypatch):
    run = tmp_path / "theirs"
    run.mkdir(mode=0o700)
    os.chown(run, 65534, 65534)          # nobody: it could have put a socket there that answers as an engine
    monkeypatch.setenv("OXTUI_RUNTIME_DIR", str(run))
    r = oxtui_cli("status", "-c", str(sleeper(tmp_path / "a")))
    assert r.returncode == 1 and "exists but is not a folder owned by you" in r.stderr, r.stderr
