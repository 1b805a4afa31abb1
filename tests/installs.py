"""An earlier release of oxtui installed beside the code under test, for the upgrade tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_VERSION = "0.2.0rc2"
OLD_WHEEL = ROOT / "tests" / "releases" / f"oxtui-{OLD_VERSION}-py3-none-any.whl"


class Install:
    """A venv of its own with an earlier oxtui in it; its dependencies are the test venv's."""

    def __init__(self, folder: Path, wheel: Path = OLD_WHEEL):
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
        self.python = folder / "bin" / "python"
        self.site = Path(subprocess.check_output(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
        (self.site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        with zipfile.ZipFile(wheel) as whl:
            whl.extractall(self.site)

    def install_code_under_test(self) -> None:
        """What `pip install -U` does: the package's files replaced on disk, running processes untouched."""
        shutil.rmtree(self.site / "oxtui")
        shutil.copytree(ROOT / "oxtui", self.site / "oxtui", ignore=shutil.ignore_patterns("__pycache__"))

    def oxtui(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), "-m", "oxtui", *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "NO_COLOR": "1"}, stdin=subprocess.DEVNULL, check=False)

    def status(self, oxfile: Path) -> dict:
        r = self.oxtui("status", "--json", "-c", str(oxfile))
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
