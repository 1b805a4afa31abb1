"""The architecture as tests: the layers and "no import circle" (import-linter's contracts in
pyproject.toml), and modules small enough to hold in one's head."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 450
# Size is a reason to look, not a rule: a module past MAX_LINES was looked at and kept whole because
# splitting it would cut one meaning in two. Each says why, and how far it may grow before another look.
LOOKED_AT = {
    # one worker's life from spawn to its exit's account; its exit report was a mixin that re-declared
    # 12 of Worker's attributes (exitreport.py): the pure part is exits.account(), the rest is back here
    "oxtui/engine/worker.py": 480,
    # the App: what each key does, wired to the engine and to the screens. What a key computes lives
    # beside what it changes (model, logpane, rowfilter, columns, screens); what stays is one action
    # per key, and Textual wants them on the App (splitting them off would be a mixin)
    "oxtui/tui/app.py": 470,
}


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is missing: pip install -e '.[test]' installs it"
    r = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is in the test extra"
    r = subprocess.run([ruff, "check", "oxtui", "tests"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_module_is_over_450_lines_unless_looked_at():
    big = {name: n for p in (ROOT / "oxtui").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > LOOKED_AT.get(name := str(p.relative_to(ROOT)), MAX_LINES)}
    assert not big, f"split these by meaning, or say in LOOKED_AT why not: {big}"


def test_the_types_check():
    """mypy over oxtui/ ([tool.mypy] in pyproject.toml): the Protocols are checked against what satisfies them."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy, "mypy is in the test extra"
    r = subprocess.run([mypy], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


# The helper process (oxtui/helper/) runs as `python -I -S helper/forkserver.py` (no site, no package): its
# modules may import the standard library and each other, nothing else (pyproject's import-linter contract
# forbids the rest of oxtui and the third-party packages; this checks against the standard library's list).
# A third-party import would fail only there, in the process whose death ends every app.
HELPER_DIR = ROOT / "oxtui" / "helper"
HELPER = tuple(p.stem for p in sorted(HELPER_DIR.glob("*.py")) if p.stem != "__init__")


def test_the_helper_s_modules_import_only_the_standard_library_and_each_other():
    import ast
    assert set(HELPER) == {"forkserver", "forkchild", "keeper", "spare", "approved"}
    bad = []
    for name in (*HELPER, "__init__"):
        tree = ast.parse((HELPER_DIR / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):      # `from .x` is a sibling; `from ..x` is not
                mods = [(node.module or "").split(".")[0]] if node.level <= 1 else ["oxtui (from ..)"]
            else:
                continue
            bad += [f"{name}.py: {m}" for m in mods
                    if m not in sys.stdlib_module_names and m not in HELPER and m != "__future__"]
    assert not bad, f"the helper must import only the standard library: {bad}"
    # and it runs for real that way: the script starts with no site and no package
    script = (f"import sys; sys.argv = ['x']; sys.path.insert(0, {str(HELPER_DIR)!r}); "
              "import forkserver, keeper, spare, approved, forkchild")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
