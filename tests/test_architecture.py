"""The architecture as tests: the layers and "no import circle" (import-linter's contracts in
pyproject.toml), and modules small enough to hold in one's head."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is missing: pip install -e '.[test]' installs it"
    r = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_no_module_is_over_450_lines():
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / "oxtui").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these by meaning: {big}"
