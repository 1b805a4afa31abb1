"""The typed contract between the engine and its views: the snapshot's shape is the TypedDicts',
views load no engine code, and every place that documents a key is made from the bindings."""

from __future__ import annotations

import subprocess
from typing import get_type_hints

from conftest import PY, ROOT, wait_until, write_oxfile

from oxtui.protocol import EngineInfo, Health, ProcessSnapshot, Snapshot, WorkerSnapshot, WorkerState
from oxtui.tui.keys import KEYS, markdown_table


def keys_of(td: type) -> set[str]:
    return set(get_type_hints(td))


def test_status_json_has_exactly_the_typed_shape(tmp_path, engine_process):
    oxfile = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 60"
        instances = 2
        [processes.app.health]
        cmd = "true"
        interval = 0.2
    ''')
    ep = engine_process(oxfile)
    ep.wait_running("app", 2)
    snap = wait_until(lambda: (s := ep.status())["processes"][0]["workers"][0]["health"] and s, 10, 0.1)
    assert set(snap) == keys_of(Snapshot)
    assert set(snap["engine"]) == keys_of(EngineInfo)
    proc = snap["processes"][0]
    assert set(proc) == keys_of(ProcessSnapshot)
    for w in proc["workers"]:
        assert set(w) == keys_of(WorkerSnapshot)
        assert w["state"] in set(WorkerState)     # a StrEnum: plain strings in the JSON
        assert set(w["health"]) == keys_of(Health)


def test_views_load_no_engine_code(tmp_path, engine_process):
    """`oxtui status`, `oxtui logs` and an attached TUI talk to an engine; they never import one (or psutil)."""
    oxfile = write_oxfile(tmp_path, '[processes.app]\ncommand = "sh -c \'echo hi; exec sleep 60\'"\n')
    ep = engine_process(oxfile)
    ep.wait_running("app", 1)
    probe = f'''
import contextlib, io, sys
from pathlib import Path
from oxtui.cli import main
from oxtui.client.remote import RemoteEngine
from oxtui.tui.app import OxtuiApp
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["status", "-c", {str(oxfile)!r}]) == 0
    assert main(["status", "--json", "-c", {str(oxfile)!r}]) == 0
    assert main(["logs", "-n", "5", "-c", {str(oxfile)!r}]) == 0
remote = RemoteEngine(Path({str(oxfile)!r}))
remote.connect()
app = OxtuiApp(remote, {str(oxfile)!r}, host="x")
assert remote.snapshot()["processes"][0]["name"] == "app"
remote.detach()
print(sorted(m for m in sys.modules if m.startswith("oxtui.engine") or m.split(".")[0] == "psutil"))
'''
    r = subprocess.run([PY, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_manual_s_key_table_is_made_from_the_bindings():
    page = (ROOT / "docs" / "tui.md").read_text()
    assert markdown_table() in page, "docs/tui.md's key table is stale: paste oxtui.tui.keys.markdown_table()"


def test_every_key_is_bound_and_every_binding_documented():
    from oxtui.tui.app import OxtuiApp
    from oxtui.tui.fleet import FleetApp
    from oxtui.tui.logview import LogView
    bound = {b.action for b in OxtuiApp.BINDINGS}
    for k in KEYS:
        if k.action:
            app = FleetApp if k.where == "fleet" else OxtuiApp
            name = k.action.split("(")[0]
            assert hasattr(app, f"action_{name}"), k
            assert k.action in {b.action for b in app.BINDINGS}
            assert k.where == "fleet" or k.action in {b.action for b in FleetApp.BINDINGS}, "the fleet has every key"
    log_keys = {key for b in LogView.BINDINGS for key in b.key.split(",")}
    for k in KEYS:
        if k.where == "logs":
            for key in k.shown.replace("End", "end").split(" / "):
                assert key in log_keys, (k, log_keys)
    documented = {k.action for k in KEYS}
    assert bound <= documented and {b.action for b in FleetApp.BINDINGS} <= documented


def test_help_screen_lists_every_key():
    import io

    from rich.console import Console

    from oxtui.tui.keys import help_text
    console = Console(width=400, file=io.StringIO(), record=True)
    console.print(help_text())
    lines = [" ".join(line.split()) for line in console.export_text().splitlines()]
    for k in KEYS:
        assert f"{k.shown} {k.doc}" in lines, k.shown

