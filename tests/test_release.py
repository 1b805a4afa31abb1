"""The release a user installs, as CI builds it: the sdist and the wheel (`python -m build`), checked by
twine, the wheel installed into a clean venv (not editable, not from the checkout) and run from there:
--version, check and a short run of the sample apps, schema, completion, and the man page placed."""

from __future__ import annotations

import signal
import subprocess
import sys
import venv
from pathlib import Path

from conftest import wait_until

from oxtui import __version__

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r


def test_the_wheel_installs_and_runs_on_its_own(tmp_path):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT))
    wheel = next(dist.glob(f"oxtui-{__version__}-py3-none-any.whl"))
    sdist = next(dist.glob(f"oxtui-{__version__}.tar.gz"))
    run(sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist))

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py, oxtui = str(env / "bin" / "python"), str(env / "bin" / "oxtui")
    run(py, "-m", "pip", "install", "-q", str(wheel))
    where = run(py, "-c", "import oxtui, sys; print(oxtui.__file__)", cwd=tmp_path).stdout.strip()
    assert where.startswith(str(env)), f"oxtui imported from {where}, not from the installed wheel"
    assert run(oxtui, "--version", cwd=tmp_path).stdout.strip() == f"oxtui {__version__}"
    assert (env / "share" / "man" / "man1" / "oxtui.1").read_text().startswith(".TH OXTUI 1")
    assert '"$schema"' in run(oxtui, "schema", cwd=tmp_path).stdout
    assert "_shtab_oxtui" in run(oxtui, "completion", "bash", cwd=tmp_path).stdout

    (tmp_path / "app.py").write_text("import time\nprint('up', flush=True)\nwhile True: time.sleep(1)\n")
    (tmp_path / "oxfile.toml").write_text(f'[processes.app]\ncommand = "{py} app.py"\ninstances = 2\n'
                                          '[logs]\ndir = "logs"\n')
    assert "OK (1 process(es))" in run(oxtui, "check", cwd=tmp_path).stdout
    engine = subprocess.Popen([oxtui, "run"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        log = tmp_path / "logs" / "app.log"
        wait_until(lambda: log.exists() and log.read_text().count("| up") == 2, 30, 0.1, "both instances up")
    finally:
        engine.send_signal(signal.SIGINT)
        out, _ = engine.communicate(timeout=30)
    assert engine.returncode == 0, out
