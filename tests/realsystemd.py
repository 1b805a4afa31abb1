"""A real systemd for the tests: the machine's own systemd as PID 1 of a throwaway container
(tests/systemd/machine.sh, in the repository: Linux namespaces, an overlay root over /, its own cgroup2, a private
network with only 127.0.0.1). The project and the test's folder are bound in at their own paths, so
the oxtui under test and the oxfiles are the same inside as outside; what the container writes
elsewhere (/etc, /home, /var) stays in its overlay and goes with it.

Where it cannot run (not root, no cgroup2, no unshare, the tool missing) `unavailable()` says why,
and the tests are skipped with that reason printed in pytest's summary, never silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = Path(os.environ.get("OXTUI_REAL_SYSTEMD") or ROOT / "tests" / "systemd" / "machine.sh")
PY = os.path.abspath(sys.executable)     # the venv's python: the same path inside (the project is bound in)


def unavailable() -> str | None:
    """Why a real systemd cannot run here, or None."""
    if not TOOL.is_file():
        return f"no real-systemd harness at {TOOL} (set OXTUI_REAL_SYSTEMD to its path)"
    if os.geteuid() != 0:
        return "a container with its own PID 1 and cgroup needs root"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "util-linux's unshare and nsenter are missing"
    cg = Path("/sys/fs/cgroup")
    if not any(os.path.exists(p / "cgroup.controllers") for p in (cg, cg / "unified")):
        return "no cgroup2 hierarchy is mounted (systemd in a container needs one)"
    return None


class Machine:
    """One throwaway systemd machine. `run()` runs a command inside (systemctl, journalctl, curl...)."""

    def __init__(self, name: str, state: Path, binds: list[Path]):
        self.env = {**os.environ, "RSD_NAME": name, "RSD_STATE": str(state),
                    "RSD_BINDS": " ".join(str(b) for b in binds), "RSD_STOP_TIMEOUT": "60"}

    def _tool(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["/bin/bash", str(TOOL), *args], capture_output=True, text=True, env=self.env,
                           timeout=timeout, cwd=ROOT, check=False)
        if r.returncode != 0:
            raise AssertionError(f"machine.sh {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r

    def start(self) -> None:
        self._tool("start")

    def reboot(self, hard: bool = False) -> None:
        """A clean reboot (units stopped as at shutdown), or with hard=True a power cut."""
        self._tool("reboot", *(["--hard"] if hard else []))

    def destroy(self) -> None:
        subprocess.run(["/bin/bash", str(TOOL), "reset"], capture_output=True, env=self.env, timeout=120, cwd=ROOT, check=False)

    def run(self, *cmd: str, timeout: float = 120, check: bool = False,
            user: str | None = None) -> subprocess.CompletedProcess[str]:
        """The command inside the machine (as root, or as `user` with their user manager's bus)."""
        if user is not None:
            uid = self.run("id", "-u", user, check=True).stdout.strip()
            cmd = ("runuser", "-u", user, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{uid}", f"HOME=/home/{user}",
                   f"PATH={os.environ['PATH']}", *cmd)
        r = subprocess.run(["/bin/bash", str(TOOL), "run", "--", *cmd], capture_output=True, text=True,
                           env=self.env, timeout=timeout, cwd=ROOT, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def popen(self, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["/bin/bash", str(TOOL), "run", "--", *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env, cwd=ROOT)

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, **kw)

    def show(self, unit: str, *props: str, user: str | None = None) -> dict[str, str]:
        """`systemctl show -p ...` as a dict."""
        ctl = ["systemctl", "--user"] if user else ["systemctl"]
        r = self.run(*ctl, "show", unit, *(f"-p{p}" for p in props), user=user, check=True)
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def status(self, unit: str, user: str | None = None) -> str:
        ctl = ["systemctl", "--user"] if user else ["systemctl"]
        return self.run(*ctl, "status", unit, "--no-pager", "-n", "0", user=user).stdout

    def journal(self, unit: str, user: str | None = None) -> str:
        how = ["--user-unit", unit] if user else ["-u", unit]
        return self.run("journalctl", *how, "--no-pager", "-o", "cat").stdout

    def wait(self, pred, timeout: float = 30, what: str = "") -> object:
        deadline = time.monotonic() + timeout
        while not (value := pred()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
            time.sleep(0.2)
        return value
