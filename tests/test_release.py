"""The release a user installs, as CI builds it: the sdist and the wheel (`python -m build`), checked by
twine, the wheel installed into a clean venv (not editable, not from the checkout) and run from there:
--version, check and a short run of the sample apps, schema, completion, and the man page placed.

The clean venv gets the wheel's declared dependencies (and theirs) from this venv, not from the index:
downloading them again took most of the test's 65 s and tested pip, not us. Only what the wheel's
metadata names is visible there, so an import the metadata forgets still fails, and `pip check` holds
the installed versions to the declared ranges."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import signal
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from conftest import free_port, http_get, wait_until
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from oxtui import __version__

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r


def declared(wheel: Path) -> list[importlib.metadata.Distribution]:
    """The wheel's Requires-Dist and theirs, markers evaluated (no extras), as installed in this venv."""
    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(f"oxtui-{__version__}.dist-info/METADATA").decode())
    todo, found = list(meta.get_all("Requires-Dist") or []), {}
    while todo:
        req = Requirement(todo.pop())
        if (req.marker is not None and not req.marker.evaluate({"extra": ""})) or canonicalize_name(req.name) in found:
            continue
        found[canonicalize_name(req.name)] = dist = importlib.metadata.distribution(req.name)
        todo += dist.requires or []
    return list(found.values())


def provide(dists: list[importlib.metadata.Distribution], env: Path) -> None:
    """Make exactly these distributions importable in the venv at `env` (a folder of links, on its path)."""
    links = env / "declared"
    links.mkdir()
    for dist in dists:
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if not (links / top).exists():
                (links / top).symlink_to(Path(str(dist.locate_file(top))))
    site = next(env.glob("lib/python3*/site-packages"))
    (site / "declared.pth").write_text(f"{links}\n")


@pytest.mark.slow
def test_the_wheel_installs_and_runs_on_its_own(tmp_path):
    dist = tmp_path / "dist"
    # --no-isolation: with the test extra's setuptools (what [build-system] requires), not fetched twice
    run(sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT))
    wheel = next(dist.glob(f"oxtui-{__version__}-py3-none-any.whl"))
    sdist = next(dist.glob(f"oxtui-{__version__}.tar.gz"))
    run(sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist))

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py, oxtui = str(env / "bin" / "python"), str(env / "bin" / "oxtui")
    provide(declared(wheel), env)
    run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel))
    run(py, "-m", "pip", "check")         # every declared dependency there, in its declared range
    where = run(py, "-c", "import oxtui, sys; print(oxtui.__file__)", cwd=tmp_path).stdout.strip()
    assert where.startswith(str(env)), f"oxtui imported from {where}, not from the installed wheel"
    assert run(oxtui, "--version", cwd=tmp_path).stdout.strip() == f"oxtui {__version__}"
    assert (env / "share" / "man" / "man1" / "oxtui.1").read_text().startswith(".TH OXTUI 1")
    assert '"$schema"' in run(oxtui, "schema", cwd=tmp_path).stdout
    assert "_shtab_oxtui" in run(oxtui, "completion", "bash", cwd=tmp_path).stdout

    # the sample apps, on a port of their own, run by the installed oxtui with the venv's python
    apps = tmp_path / "sample_apps"
    shutil.copytree(ROOT / "sample_apps", apps)
    port = free_port()
    oxfile = apps / "oxfile.toml"
    oxfile.write_text(oxfile.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                      .replace("python3 ", f"{py} ") + '\n[logs]\ndir = "logs"\n')
    assert "OK (" in run(oxtui, "check", str(oxfile), cwd=tmp_path).stdout
    engine = subprocess.Popen([oxtui, "run", str(oxfile)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        def serving() -> bool:
            try:
                return engine.poll() is not None or http_get(port, timeout=2)[0] == 200
            except OSError:
                return False
        wait_until(serving, 60, 0.2, "the sample's web")
        assert engine.poll() is None
        snap = json.loads(run(oxtui, "status", "--json", "-c", str(oxfile), cwd=tmp_path).stdout)
        assert {p["name"] for p in snap["processes"]} >= {"web", "worker"}
    finally:
        engine.send_signal(signal.SIGINT)
        out, _ = engine.communicate(timeout=60)
    assert engine.returncode == 0, out[-3000:]
