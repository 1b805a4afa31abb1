"""The front door and the manual: README short and true, the references made from the code and current,
the man page too, and the site built with --strict (a broken link or a page missing from it fails)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oxtui.cli.reference import OUTPUTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", list(OUTPUTS), ids=lambda p: p.name)
def test_the_generated_references_are_current(path):
    made = OUTPUTS[path]()
    assert path.read_text().rstrip("\n") == made.rstrip("\n"), \
        f"{path.relative_to(ROOT)} is stale: run `python -m oxtui.cli.reference`"


def test_every_verb_and_oxfile_key_is_in_the_references():
    from oxtui.cli.parser import VERBS
    from oxtui.oxfile import fields
    cli = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert all(f"## oxtui {verb}\n" in cli for verb in VERBS)
    keys = (ROOT / "docs" / "reference" / "oxfile.md").read_text()
    for table in (fields.PROCESS, fields.LOGS, fields.DEPLOY, fields.READY, fields.HEALTH):
        assert all(f"| `{key}` |" in keys for key in table)


def test_readme_is_a_front_door_and_its_links_lead_somewhere():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    first = re.findall(r"```sh\n(.*?)\n```", text, re.DOTALL)[:2]
    assert first == ["python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/oxtui sample_apps/oxfile.toml",
                     "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q"]
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"README links to {link}, which is not there"


def test_the_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=os.path.dirname(sys.executable))
    assert mkdocs, "mkdocs-material is in the test extra"
    r = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "reference" / "oxfile" / "index.html").exists()
