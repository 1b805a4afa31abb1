"""Every Python server recipe in the manual, run under oxtui on a shared port with keep-alive load through
3 rolling reloads: the number of lost requests it states (0) is asserted here. The two plain servers
that are not recipes go through one reload, held to the bound the manual states for each.

The apps are the samples in sample_apps/ (FastAPI, Django), started by the real `oxtui run`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import PY, ROOT, free_port, under_load, write_oxfile
from keepalive import KeepAliveLoad

BIN = Path(PY).parent
FASTAPI = ROOT / "sample_apps" / "fastapi_app"
DJANGO = ROOT / "sample_apps" / "django_app"
UVICORN_READY = "Application startup complete"
DJANGO_READY = "django app loaded"

CONNECTIONS = 16
INSTANCES = 2
# A server that closes idle keep-alive connections at once on SIGTERM loses at most the request in
# flight on each connection it holds, for each instance a reload replaces: the manual's bound for them.
# That bound is per reload, so they go through one (the recipes through 3: their promise is 0).
LOSSY = CONNECTIONS * INSTANCES
PAUSE = 0.02

# (id, app folder, command, ready line, most requests it may lose): README's table, with this venv's
# paths. 0 is a promise. The servers that lose requests on their own are in the table too, labelled,
# with the bound README states (the exact number varies from run to run).
RECIPES = [
    ("gunicorn-sync", DJANGO, f"{BIN}/gunicorn -w 1 app:application", DJANGO_READY, 0),
    ("gunicorn-gthread", DJANGO, f"{BIN}/gunicorn -w 1 -k gthread --threads 4 --keep-alive 5 app:application",
     DJANGO_READY, 0),
    ("gunicorn-uvicorn-drain", FASTAPI, f"{BIN}/gunicorn -w 1 -k oxtui.drain.uvicorn.Worker main:app",
     UVICORN_READY, 0),
    ("uvicorn-drain", FASTAPI, f"{PY} -m oxtui.drain.uvicorn --fd 3 main:app", UVICORN_READY, 0),
    ("uvicorn-plain", FASTAPI, f"{BIN}/uvicorn --fd 3 main:app", UVICORN_READY, LOSSY),
    ("hypercorn-plain", FASTAPI, f"{BIN}/hypercorn --bind fd://3 main:app", "Running on", LOSSY),
]


def oxfile_for(tmp_path: Path, app: Path, command: str, ready: str, port: int) -> Path:
    work = tmp_path / app.name
    shutil.copytree(app, work, ignore=shutil.ignore_patterns("oxfile.toml", "__pycache__"))
    return write_oxfile(work, f'''
        [processes.app]
        command = "{command}"
        instances = {INSTANCES}
        listen = "127.0.0.1:{port}"
        stop_timeout = 35
        env = {{ PYTHONPATH = "{ROOT}" }}
        [processes.app.ready]
        log = "{ready}"
        http = "/health"
        timeout = 30
    ''')


@pytest.mark.parametrize("name,app,command,ready,may_lose", RECIPES, ids=[r[0] for r in RECIPES])
@under_load
def test_recipe_under_keep_alive_load_through_reloads(tmp_path, engine_process, name, app, command, ready,
                                                       may_lose):
    port = free_port()
    ep = engine_process(oxfile_for(tmp_path, app, command, ready, port))
    first = {w["pid"] for w in ep.wait_running("app", INSTANCES, timeout=60)}
    with KeepAliveLoad(port, connections=CONNECTIONS, max_seconds=150, pause=PAUSE) as load:
        load.wait_for(200)
        # two: the second replaces instances a reload started (a third only repeated it)
        for n in range(2 if may_lose == 0 else 1):
            r = ep.cli("reload", "app", timeout=120)
            assert r.returncode == 0, f"reload {n + 1}: {r.stdout}\n{r.stderr}"
            load.wait_for(100)
    now = {w["pid"] for w in ep.wait_running("app", INSTANCES)}
    assert not (first & now), "every instance was replaced"
    lost = len(load.failures)
    print(f"{name}: lost {lost} of {load.count} requests ({load.reconnects} clean reconnects)")
    assert load.ok >= 500
    if may_lose == 0:
        assert load.failures == [], f"{lost} lost of {load.count}: {load.failures[:5]}"
        assert load.reconnects > 0, "the drained instances handed their connections back (Connection: close)"
    else:
        assert lost <= may_lose, f"{lost} lost of {load.count}, more than README says"


VENV_PATH = {"PATH": f"{BIN}:{os.environ['PATH']}"}     # gunicorn and uvicorn live in this venv


def test_check_warns_about_gunicorn_binding_fd_3_itself(tmp_path):
    from conftest import oxtui_cli
    oxfile = write_oxfile(tmp_path, '[processes.web]\ncommand = "gunicorn --bind fd://3 app:application"\n'
                                    'listen = "127.0.0.1:9000"\n')
    r = oxtui_cli("check", str(oxfile), env=VENV_PATH)
    assert r.returncode == 0 and "gunicorn adopts fd 3 by itself" in r.stderr and "remove the --bind" in r.stderr
    write_oxfile(tmp_path, '[processes.web]\ncommand = "gunicorn app:application"\nlisten = "127.0.0.1:9000"\n')
    assert "warning" not in oxtui_cli("check", str(oxfile), env=VENV_PATH).stderr


@pytest.mark.parametrize("app", [FASTAPI, DJANGO], ids=["fastapi", "django"])
def test_the_python_samples_pass_check(app):
    from conftest import oxtui_cli
    r = oxtui_cli("check", str(app / "oxfile.toml"), env={"PATH": f"{Path(PY).parent}:{os.environ['PATH']}"})
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
