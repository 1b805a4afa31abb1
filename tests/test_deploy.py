"""Deploys from a real git repository the test makes (tags v1..v4 of tests/apps/app.py), under HTTP load:
releases beside the live one, the build run there, `current` switched, a rolling reload; a release
that crashes at boot rolled back as a whole; a build that fails touching nothing; rollback; pruning;
one deploy at a time; an unreachable source, an unknown ref and a missing shared path each one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import APPS, free_port, http_get, oxtui_cli, until, wait_until, write_oxfile
from load import Load, explain

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is missing")

BUILD = """#!/bin/sh
# the build of each release: it proves it ran in the release folder, and v4's fails
echo "building $(cat release.txt)"
test -f data/slow && sleep 3
echo built > built.txt
"""


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_source(folder: Path) -> Path:
    """v1 and v2 serve their tag, v3 crashes at boot, v4's build fails."""
    folder.mkdir()
    git(folder, "init", "-q", "-b", "main")
    shutil.copy(APPS / "app.py", folder / "app.py")
    for tag, release, build in (("v1", "ok v1", BUILD), ("v2", "ok v2", BUILD), ("v3", "crash", BUILD),
                                ("v4", "ok v4", BUILD + "echo 'npm ERR! missing script: build' >&2\nexit 1\n")):
        (folder / "release.txt").write_text(release)
        (folder / "build.sh").write_text(build)
        git(folder, "add", "-A")
        git(folder, "commit", "-q", "-m", f"release {tag}")
        git(folder, "tag", tag)
    git(folder, "reset", "-q", "--hard", "v2")      # main is v2: what a bare `oxtui deploy` takes
    return folder


def site(tmp_path: Path, port: int, source: Path, extra: str = "") -> Path:
    folder = tmp_path / "site"
    (folder / "shared" / "data").mkdir(parents=True)
    return write_oxfile(folder, f'''
        [deploy]
        source = "{source}"
        build = "sh build.sh"
        shared = ["data"]
        keep = 3
        {extra}
        [processes.side]                # reloaded before web: what must go back when web rolls back
        command = "{sys.executable} -c 'import time; time.sleep(600)'"
        cwd = "current"
        reload = {{ min_ready = 0.1 }}
        [processes.web]
        command = "{sys.executable} app.py"
        cwd = "current"
        depends_on = {{ side = "started" }}
        instances = 2
        listen = "127.0.0.1:{port}"
        [processes.web.ready]
        log = "^ready"
        [processes.web.reload]
        min_ready = 0.1
    ''')


def cli(oxfile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return oxtui_cli(*args, "-c", str(oxfile), timeout=timeout)


def live(oxfile: Path) -> str:
    return os.readlink(oxfile.parent / "current")


def tags(ep, name: str = "web") -> set[str]:
    return {w["release"] for w in ep.workers(name) if w["role"] is None}


def serving(port: int) -> set[str]:
    return {http_get(port)[1].split()[0] for _ in range(8)}


@pytest.mark.slow
def test_deploy_rollback_and_failures_under_load(tmp_path, engine_process):
    port = free_port()
    source = make_source(tmp_path / "src")
    oxfile = site(tmp_path, port, source)
    r = cli(oxfile, "up")
    assert r.returncode == 1 and "which no deploy has made yet" in r.stderr and "oxtui deploy" in r.stderr, r.stderr

    # no engine yet: the release is made and switched, and the next start runs it
    r = cli(oxfile, "deploy", "v1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "building ok v1" in r.stdout and "no engine is running" in r.stdout
    v1 = Path(live(oxfile)).name
    assert (oxfile.parent / "releases" / v1 / "built.txt").exists(), "the build ran in the release"
    assert os.readlink(oxfile.parent / "releases" / v1 / "data") == str(oxfile.parent / "shared" / "data")
    ep = engine_process(oxfile)
    ep.wait_running("web", 2)
    assert tags(ep) == {v1} and serving(port) == {"v1"}

    with Load.steady(port, max_seconds=120) as load:
        load.wait_for(20)
        r = cli(oxfile, "deploy")                      # main: v2
        assert r.returncode == 0, r.stdout + r.stderr
        v2 = Path(live(oxfile)).name
        assert v2.endswith(git(source, "rev-parse", "--short=7", "v2").strip()) and f"{v2} is live" in r.stdout
        assert "building ok v2" in r.stdout and "web: done" in r.stdout, r.stdout
        ep.wait_running("web", 2)
        assert tags(ep) == {v2} and serving(port) == {"v2"}
        assert (oxfile.parent / "releases" / v1 / "release.txt").read_text() == "ok v1", "the old release untouched"

        pids = {w["pid"] for w in ep.workers("web") if w["role"] is None}
        r = cli(oxfile, "deploy", "v3")                # crashes at boot: rolled back as a whole
        assert r.returncode == 1 and "web: rolled back" in r.stderr and f"back on {v2}" in r.stderr, r.stderr
        assert Path(live(oxfile)).name == v2 and tags(ep) == {v2} and serving(port) == {"v2"}
        assert {w["pid"] for w in ep.workers("web") if w["role"] is None} == pids, "the old instances kept serving"
        wait_until(lambda: tags(ep, "side") == {v2}, 30, 0.1, "side back on v2: nothing of v3 is left running")

        r = cli(oxfile, "deploy", "v4")                # the build fails: nothing is touched
        assert r.returncode == 1 and "build failed (exit 1)" in r.stderr and "npm ERR! missing script" in r.stderr
        assert Path(live(oxfile)).name == v2 and {w["pid"] for w in ep.workers("web") if w["role"] is None} == pids
        assert "npm ERR! missing script: build" in r.stdout, "the build's output streamed"

        r = cli(oxfile, "rollback")                    # to v1: v3 went live and rolled back, never a target
        assert r.returncode == 0, r.stdout + r.stderr
        assert Path(live(oxfile)).name == v1 and tags(ep) == {v1} and serving(port) == {"v1"}
        load.wait_for(20)
    assert not load.failures, explain(load.failures, tmp_path)

    listed = json.loads(cli(oxfile, "releases", "--json").stdout)
    by = {x["name"]: x for x in listed}
    assert [x["name"] for x in listed] == sorted(by, reverse=True), "newest first"
    assert by[v1]["live"] and not by[v2]["live"] and by[v1]["ref"] == "v1" and by[v2]["ref"] == "main"
    assert by[v2]["subject"] == "release v2" and by[v2]["build"] == "ok"
    failed = [x for x in listed if x["build"] == "failed"]
    assert len(failed) == 1 and failed[0]["ref"] == "v4"
    assert [x["ref"] for x in listed if x["rolled_back"]] == ["v3"]

    r = cli(oxfile, "rollback", "nope")
    assert r.returncode == 1 and "no release 'nope'" in r.stderr
    r = cli(oxfile, "deploy", "nope")
    assert r.returncode == 1 and "'nope' is not a branch, tag or commit" in r.stderr
    assert Path(live(oxfile)).name == v1

    # keep = 3: the oldest go after a good deploy, never the live one nor the one before it
    r = cli(oxfile, "deploy", "v2")
    assert r.returncode == 0, r.stderr
    names = {x["name"] for x in json.loads(cli(oxfile, "releases", "--json").stdout)}
    assert len(names) == 4 and Path(live(oxfile)).name in names and v1 in names, names
    assert "removed 1 old release(s)" in r.stdout and v2 not in names, r.stdout

    # one deploy at a time: a second one while the first builds is refused at once
    (oxfile.parent / "shared" / "data" / "slow").write_text("")
    first = subprocess.Popen([sys.executable, "-m", "oxtui", "deploy", "v1", "-c", str(oxfile)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (ep.status()["engine"]["deploy"] or {}).get("step") == "building", 30, 0.05, "building")
        r = cli(oxfile, "deploy", "v2")
        assert r.returncode == 1 and "is running already" in r.stderr, r.stderr
        r = cli(oxfile, "reload", "web")
        assert r.returncode == 0, "a reload of what runs is still allowed while a build runs"
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err


def test_a_source_that_cannot_be_reached_and_a_missing_shared_path_are_one_line_each(tmp_path):
    port = free_port()
    oxfile = site(tmp_path, port, tmp_path / "nowhere")
    r = cli(oxfile, "deploy")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "cannot clone" in r.stderr, r.stderr
    assert not (oxfile.parent / "current").exists() and not list((oxfile.parent / "releases").glob("2*"))
    source = make_source(tmp_path / "src")
    (oxfile.parent / "oxfile.toml").write_text((oxfile.parent / "oxfile.toml").read_text()
                                               .replace(str(tmp_path / "nowhere"), str(source))
                                               .replace('shared = ["data"]', 'shared = ["data", ".env"]'))
    r = cli(oxfile, "deploy")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert f"{oxfile.parent / 'shared' / '.env'} does not exist" in r.stderr and "Traceback" not in r.stderr
    r = cli(oxfile, "releases")
    assert r.returncode == 0 and "no release yet" in r.stdout
    # a ref typed in the TUI's prompt reaches git only as a ref, never as one of its options
    from oxtui.oxfile.config import load
    from oxtui.releases import DeployError, Releases
    cfg = load(oxfile).deploy
    assert cfg is not None
    shutil.rmtree(oxfile.parent / "repo", ignore_errors=True)
    with pytest.raises(DeployError, match="'--upload-pack=touch x' is not a branch"):
        Releases(cfg).fetch("--upload-pack=touch x", lambda line: None)
    assert not (oxfile.parent / "repo").exists(), "refused before git was asked anything"
    # with no engine, the lock is what keeps two deploys apart
    (oxfile.parent / "shared" / ".env").write_text("")
    (oxfile.parent / "shared" / "data" / "slow").write_text("")
    first = subprocess.Popen([sys.executable, "-m", "oxtui", "deploy", "v1", "-c", str(oxfile)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: list((oxfile.parent / "releases").glob("2*/build.sh")), 30, 0.05, "the first building")
        r = cli(oxfile, "deploy", "v2")
        assert r.returncode == 1 and "another deploy or rollback is running (pid" in r.stderr, r.stderr
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0 and "no engine is running" in out, out + err
    (tmp_path / "plain").mkdir()
    plain = write_oxfile(tmp_path / "plain", '[processes.a]\ncommand = "true"\n')
    r = cli(plain, "deploy")
    assert r.returncode == 2 and "has no [deploy] table" in r.stderr


async def test_d_in_the_tui_deploys_the_ref_typed_and_the_panel_and_details_show_it(tmp_path):
    from oxtui.client.embedded import EmbeddedEngine
    from oxtui.oxfile.config import load
    from oxtui.tui.app import OxtuiApp
    from oxtui.tui.details import details_text
    from oxtui.tui.model import reload_lines
    from oxtui.tui.screens import SearchScreen
    source = make_source(tmp_path / "src")
    oxfile = site(tmp_path, free_port(), source)
    assert cli(oxfile, "deploy", "v1").returncode == 0
    v1 = Path(live(oxfile)).name
    engine = EmbeddedEngine(load(oxfile))
    engine.start()
    try:
        app = OxtuiApp(engine, oxfile, host="testhost")
        async with app.run_test(size=(120, 36)) as pilot:
            def web() -> dict:
                return next(p for p in engine.snapshot()["processes"] if p["name"] == "web")
            await until(pilot, lambda: [w["release"] for w in web()["workers"] if w["state"] == "running"] == [v1] * 2,
                        20)
            await pilot.press("D")
            await until(pilot, lambda: isinstance(app.screen, SearchScreen), what="the ref prompt")
            await pilot.press(*"v2", "enter")
            await until(pilot, lambda: Path(live(oxfile)).name != v1, 20, what="current switched")
            v2 = Path(live(oxfile)).name
            await until(pilot, lambda: (engine.snapshot()["engine"]["deploy"] or {}).get("state") == "done", 60,
                        what="the deploy done")
            assert {w["release"] for w in web()["workers"] if not w["role"]} == {v2}
            panel = reload_lines(engine.snapshot())
            assert panel[0] == f"deploy v2: done · release {v2}", panel
            assert f"deployed release: {v2} (2 instances)" in details_text(web(), None)
            # while two releases run side by side, each row names its own
            from oxtui.tui.model import History, build_rows
            snap = engine.snapshot()
            web_snap = next(p for p in snap["processes"] if p["name"] == "web")
            web_snap["workers"][0]["release"] = v1
            cells = [r.cells[-1] for r in build_rows(snap, History()) if r.kind == "worker" and r.process == "web"]
            assert cells[0].startswith(f"@{v1[-7:-3]} ") and cells[1].startswith(f"@{v2[-7:-3]} "), cells
            await until(pilot, lambda: any(f"{v2} is live" in n.message for n in app._notifications), 20,
                        what="the notification")
    finally:
        engine.shutdown()
        assert engine.join(30)

