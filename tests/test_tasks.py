"""Restart modes and one-shot tasks, a missing program named, and .env files (part of #11), against
real children through the real `oxtui run`."""

from __future__ import annotations

import json

import pytest
from conftest import PY, oxtui_cli, procs, wait_until, write_oxfile

EXITS = {"zero": "sh -c 'echo bye; exit 0'", "one": "sh -c 'echo oops; exit 1'", "killed": "sh -c 'kill -9 $$'"}


@pytest.mark.parametrize("mode,restarts,ends", [
    ("always", {"zero", "one", "killed"}, {}),
    ("on-failure", {"one", "killed"}, {"zero": "completed"}),
    ("never", set(), {"zero": "completed", "one": "failed", "killed": "failed"}),
])
def test_restart_modes_for_exit_0_exit_1_and_a_signal(tmp_path, engine_process, mode, restarts, ends):
    body = "".join(f'[processes.{name}]\ncommand = "{cmd}"\nrestart = "{mode}"\nbackoff = 0.05\nmax_restarts = 1000\n'
                   for name, cmd in EXITS.items())
    ep = engine_process(write_oxfile(tmp_path, body))
    for name in restarts:
        wait_until(lambda n=name: procs(ep)[n]["workers"][0]["restarts"] >= 2, 15, 0.1, what=f"{name} restarted")
    for name, state in ends.items():
        w = wait_until(lambda n=name, s=state: (w := procs(ep)[n]["workers"][0])["state"] == s and w, 15, 0.1,
                       what=f"{name} {state}")
        assert w["restarts"] == 0 and w["pid"] is None
    if "zero" in ends:
        # a task's last output stays: in the engine's ring (at once) and in its file (flushed within 0.2 s)
        assert "bye" in ep.cli("logs", "zero", "-n", "10").stdout
        wait_until(lambda: "bye" in (tmp_path / "logs" / "zero.log").read_text(), 2, 0.05, what="bye in zero.log")
    text = ep.cli("status").stdout
    for name, state in ends.items():
        assert state in text


def test_restart_and_restart_on_exit_together_is_an_error(tmp_path):
    oxfile = write_oxfile(tmp_path, '[processes.a]\ncommand = "true"\nrestart = "never"\nrestart_on_exit = false\n')
    r = oxtui_cli("check", str(oxfile))
    assert r.returncode == 2 and "restart_on_exit: is the older name of restart; give only restart" in r.stderr
    write_oxfile(tmp_path, '[processes.a]\ncommand = "true"\nrestart = "sometimes"\n')
    r = oxtui_cli("check", str(oxfile))
    assert r.returncode == 2 and 'restart: must be "always", "on-failure" or "never"' in r.stderr


def test_restart_on_exit_false_is_a_task(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '[processes.a]\ncommand = "sh -c \'exit 0\'"\nrestart_on_exit = false\n'))
    wait_until(lambda: procs(ep)["a"]["workers"][0]["state"] == "completed", 15, 0.1)


def test_a_finished_instance_shows_no_cpu_or_memory(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '[processes.a]\ncommand = "sleep 3"\nrestart = "never"\n'))
    wait_until(lambda: procs(ep)["a"]["workers"][0]["rss_bytes"], 10, 0.1, what="a memory sample while it runs")
    w = wait_until(lambda: (w := procs(ep)["a"]["workers"][0])["state"] == "completed" and w, 10, 0.1)
    assert w["rss_bytes"] is None and w["cpu_percent"] is None, "not its last sample"


def test_a_missing_program_is_named_not_a_bare_code(tmp_path, engine_process):
    ep = engine_process(write_oxfile(tmp_path, '''
        [processes.direct]
        command = "no-such-program-xyz --port 1"
        restart = "never"
        [processes.shell]
        command = "FOO=1 no-such-program-abc --x; exit $?"
        restart = "never"
    '''))
    for name, program in (("direct", "no-such-program-xyz"), ("shell", "no-such-program-abc")):
        w = wait_until(lambda n=name: (w := procs(ep)[n]["workers"][0])["state"] == "failed" and w, 15, 0.1)
        assert w["exit_code"] == 127
        assert w["reason"] == f"command not found: {program}"
    assert "command not found: no-such-program-xyz" in ep.cli("logs", "direct", "-n", "20").stdout


def test_env_file_precedence_reload_and_values_never_shown(tmp_path, engine_process):
    (tmp_path / "base.env").write_text("SHARED=from-base\nONLY_BASE=b\nSECRET=hunter2\n")
    (tmp_path / ".env").write_text("SHARED=from-dotenv\nTOKEN=first-token\nINLINE=from-file\n")
    show = f"{PY} -c 'import os,time; print(os.environ[\\\"SHARED\\\"], os.environ[\\\"ONLY_BASE\\\"], os.environ[\\\"TOKEN\\\"], os.environ[\\\"INLINE\\\"], flush=True); time.sleep(60)'"
    oxfile = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{show}"
        env_file = ["base.env", ".env"]
        env = {{ INLINE = "inline", TOKEN_NOT = "x" }}
    ''')
    ep = engine_process(oxfile)
    log = tmp_path / "logs" / "app.log"
    wait_until(lambda: "from-dotenv b first-token inline" in log.read_text(), 15, 0.1, what="env from files")
    (tmp_path / ".env").write_text("SHARED=from-dotenv\nTOKEN=rotated-token\n")
    r = ep.cli("apply")
    assert r.returncode == 0 and "reloaded: app" in r.stdout, r.stdout + r.stderr
    wait_until(lambda: "from-dotenv b rotated-token inline" in log.read_text(), 15, 0.1, what="the rotated token")
    snap = json.dumps(ep.status())
    for secret in ("hunter2", "rotated-token", "first-token"):
        assert secret not in snap
    (tmp_path / "missing.toml").write_text('[processes.a]\ncommand = "true"\nenv_file = "nope.env"\n')
    r = oxtui_cli("check", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "env_file:" in r.stderr and "nope.env" in r.stderr


def test_check_warns_about_a_program_it_cannot_find_but_passes(tmp_path):
    oxfile = write_oxfile(tmp_path, '[processes.a]\ncommand = "no-such-prog-q --x"\n[processes.b]\ncommand = "./run.sh"\n'
                                    '[processes.c]\ncommand = "exec sleep 5"\n[processes.d]\ncommand = "prog"\n'
                                    'env = { PATH = "/opt/none" }\n')
    r = oxtui_cli("check", str(oxfile))
    assert r.returncode == 0, r.stderr
    assert "'no-such-prog-q' is not found on the PATH the instances get" in r.stderr
    assert "'./run.sh' is not an executable file in" in r.stderr
    assert "[processes.c]" not in r.stderr
    assert "[processes.d] command: 'prog' is not found" in r.stderr


def test_a_finished_or_waiting_task_never_reads_as_an_outage(tmp_path):
    """`up`, `ls` and the TUI's rows say "done" for a task that ended well, "next HH:MM:SS" for a schedule
    not yet run ("scheduled" in the grid, whose worker row says "at HH:MM:SS") and "failed" for one
    that failed: never "0/1", the look of a server that is down."""
    from oxtui.format import count_text
    from oxtui.tui.model import History, build_rows
    path = write_oxfile(tmp_path, '''
        [processes.migrate]
        command = "true"
        restart = "never"
        [processes.broken]
        command = "false"
        restart = "never"
        [processes.cleanup]
        command = "true"
        restart = "never"
        [processes.cleanup.schedule]
        every = "1h"
        [processes.web]
        command = "sleep 600"
        depends_on = { migrate = "completed_successfully" }
    ''')
    try:
        r = oxtui_cli("up", str(path), timeout=60)
        assert r.returncode == 1 and "broken.0 exited with code 1 while starting" in r.stderr, r.stdout + r.stderr
        wait_until(lambda: '"running"' in oxtui_cli("status", "--json", "-c", str(path)).stdout, 10, 0.1, "web up")
        r = oxtui_cli("ls")
        row = next(line for line in r.stdout.splitlines() if str(path) in line)
        assert "migrate done" in row and "broken failed" in row and "web 1/1" in row, row
        assert "cleanup next " in row and "0/1" not in row, row
        snap = json.loads(oxtui_cli("status", "--json", "-c", str(path)).stdout)
        by = {p["name"]: p for p in snap["processes"]}
        assert count_text(by["migrate"]) == "done" and count_text(by["web"]) == "1/1 running"
        assert count_text(by["broken"]) == "failed" and count_text(by["cleanup"]).startswith("next ")
        rows = build_rows(snap, History())
        cells = {row.process: row.cells[2] for row in rows if row.kind == "process"}
        # the grid's 9 cells: "scheduled", and the worker row says when (READY/HEALTH)
        assert cells == {"migrate": "done", "broken": "failed", "cleanup": "scheduled", "web": "1/1 up"}
        cleanup = next(row for row in rows if row.key == "w:cleanup:0:")
        assert cleanup.cells[10] == count_text(by["cleanup"]).replace("next", "at"), cleanup.cells
        assert oxtui_cli("down", "-c", str(path)).returncode == 0
        path.write_text(path.read_text().replace('command = "false"', 'command = "true"'))
        r = oxtui_cli("up", str(path), timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "migrate done, broken done, cleanup next " in r.stdout and "web 1/1 running" in r.stdout, r.stdout
    finally:
        oxtui_cli("down", "-c", str(path))


def test_a_server_s_count_fits_the_grid_s_state_cells_whole_from_1000_workers():
    from oxtui.format import SHORT_CELLS, count_text
    from oxtui.tui.columns import COLUMNS
    assert dict(COLUMNS)["STATE"] == SHORT_CELLS

    def proc(n: int) -> dict:
        return {"name": "web", "instances": n, "task": False,
                "workers": [{"instance": i, "state": "running"} for i in range(n)]}
    assert count_text(proc(16), "up", short=True) == "16/16 up"
    # seen in tmux at 1,000 workers: "1000/100…"; the word goes, the numbers stay
    assert count_text(proc(1000), "up", short=True) == "1000/1000"
    assert count_text(proc(1000)) == "1000/1000 running", "only the grid's short form drops the word"
