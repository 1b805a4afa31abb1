"""Shared helpers: temporary oxfiles, engines in-process or as real `oxtui run` processes, and a
leak check that fails any test leaving a process behind.

Every process a test starts carries OXTUI_TEST_MARK in its environment (set here, inherited by
engines and their workers); after each test nothing with that mark may still be alive.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable            # the venv's python: oxtui and the test apps run with it
APPS = Path(__file__).resolve().parent / "apps"
MARK = f"oxtui-test-{uuid.uuid4().hex[:12]}"
os.environ["OXTUI_TEST_MARK"] = MARK


def pytest_configure(config: pytest.Config) -> None:
    # The suite starts well over a thousand oxtui processes (CLI verbs, engines, TUIs). An installed
    # oxtui has its bytecode compiled at install; this editable checkout gets it on first import,
    # unless PYTHONDONTWRITEBYTECODE is set (it is on CI's machines), and then every one of those
    # processes compiles oxtui from source again: 60-100 ms of CPU each. Compiled once, here, by
    # the controller before any worker starts. py_compile writes whatever that variable says.
    if not hasattr(config, "workerinput"):
        import compileall
        compileall.compile_dir(str(ROOT / "oxtui"), quiet=1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # xdist hands tests out in collection order (its load group first, the largest unit). The tests
    # marked slow mostly wait on real things (a systemd booting, SSH links, a 60 s chaos run), so they
    # go first: the run then ends on short tests spread over every worker, not on one long test
    # while the other workers idle (the last minutes of a run used 60-90 % of the CPU before).
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        time.sleep(interval)
    return value


async def await_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "",
                      sleep: Callable[[float], Any] = asyncio.sleep) -> Any:
    """wait_until for async tests; `sleep` may be a Pilot's pause, so the app keeps processing."""
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        await sleep(interval)
    return value


async def until(pilot: Any, pred: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """await_until in a Pilot test: the app keeps processing while it waits."""
    return await await_until(pred, timeout, 0.05, what, sleep=pilot.pause)


async def screen_ready(pilot: Any) -> None:
    """Until the screen's start-up is done: the footer laid out with its keys. The footer composes its
    keys again when the focus first lands (the grid's), and a test that counts layouts or reads the
    footer must start after that, however slowly a loaded machine gets there."""
    def footer_keys() -> list[Any]:
        return [k for k in pilot.app.screen.query("FooterKey") if k.region.width]
    await until(pilot, footer_keys, what="the footer's keys laid out")
    await pilot.pause()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gone(pid: int) -> bool:
    """The process has ended: no such pid, or a zombie not yet reaped (it may vanish between two looks)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def marked_pids() -> list[int]:
    """Live processes (not zombies) that carry this test session's mark, other than ourselves."""
    found = []
    needle = f"OXTUI_TEST_MARK={MARK}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != b"Z":
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_leaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    monkeypatch.setenv("OXTUI_RUNTIME_DIR", str(run_dir))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield
    leaked: list[int] = []
    try:
        wait_until(lambda: not marked_pids(), timeout=5, what="no leftover processes")
    except AssertionError:
        leaked = marked_pids()
        for pid in leaked:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not leaked, f"test left processes behind: {leaked}"


def write_oxfile(folder: Path, body: str, name: str = "oxfile.toml") -> Path:
    path = folder / name
    text = textwrap.dedent(body)
    if "[logs]" not in text:
        text += '\n[logs]\ndir = "logs"\n'
    path.write_text(text)
    return path


def app_oxfile(folder: Path, port: int, instances: int = 2, release: str = "ok r1", extra: str = "",
               ready: str = "") -> Path:
    """tests/apps/app.py on 127.0.0.1:port, ready when it prints "ready"; release.txt says how it behaves.
    `extra` goes into [processes.app], `ready` into its [ready] table."""
    (folder / "release.txt").write_text(release)
    return write_oxfile(folder, f'''
        [processes.app]
        command = "{sys.executable} {APPS / 'app.py'}"
        instances = {instances}
        listen = "127.0.0.1:{port}"
        {extra}
        [processes.app.ready]
        log = "^ready"
        {ready}
    ''')


def run_engine(coro_fn: Callable[..., Any], *args: Any, timeout: float = 60) -> Any:
    """Run an async test body with a deadline, so a hung engine fails instead of stalling CI."""
    async def bounded() -> Any:
        return await asyncio.wait_for(coro_fn(*args), timeout)
    return asyncio.run(bounded())


class EngineProcess:
    """A real `oxtui run OXFILE` child, with its stdout in a file."""

    def __init__(self, oxfile: Path, env: dict[str, str] | None = None):
        self.oxfile = oxfile
        self.out_path = oxfile.parent / "engine.out"
        self._out = open(self.out_path, "wb")    # noqa: SIM115 (the engine's output, open until stop())
        env = {**(os.environ if env is None else env), "NO_COLOR": "1"}
        # A session of its own, as a service has: no controlling terminal, whatever runs pytest (with one,
        # a SIGHUP means the terminal hung up instead of "reload").
        self.proc = subprocess.Popen([sys.executable, "-m", "oxtui", "run", str(oxfile)], stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=oxfile.parent,
                                     start_new_session=True)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return oxtui_cli(*args, "-c", str(self.oxfile), timeout=timeout, cwd=self.oxfile.parent)

    def status(self) -> dict[str, Any]:
        """The snapshot, straight from the control socket: polling through `oxtui status --json` costs a
        Python start per sample, too slow to watch a reload (tests of the CLI itself use cli())."""
        from oxtui.client.connection import Client
        with Client(self.oxfile.resolve(), timeout=10) as c:
            return c.call({"cmd": "status"})

    def workers(self, name: str) -> list[dict[str, Any]]:
        snap = self.status()
        return next(p for p in snap["processes"] if p["name"] == name)["workers"]

    def wait_running(self, name: str, n: int, timeout: float = 15) -> list[dict[str, Any]]:
        def ok() -> list[dict[str, Any]] | None:
            ws = [w for w in self.workers(name) if w["state"] == "running" and w["role"] is None]
            return ws if len(ws) == n else None
        return wait_until(ok, timeout, interval=0.1, what=f"{n} running {name} workers")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("engine did not stop within 30 s of SIGTERM")
        self._out.close()
        return self.proc.returncode


@pytest.fixture
def engine_process():
    started: list[EngineProcess] = []

    def start(oxfile: Path) -> EngineProcess:
        ep = EngineProcess(oxfile)
        started.append(ep)
        last: list[subprocess.CompletedProcess[str]] = []

        def answers() -> bool:
            last[:] = [ep.cli("status")]
            return last[0].returncode == 0 or ep.proc.poll() is not None
        try:
            wait_until(answers, 15, 0.1, what="the engine's control socket")
        except AssertionError as e:
            # Say why: the engine's own output and what `oxtui status` said, not only "timed out".
            raise AssertionError(f"{e}\nengine output:\n{ep.output()}\n`oxtui status` said: "
                                 f"{last[0].stderr if last else '-'}") from None
        assert ep.proc.poll() is None, f"engine exited early (code {ep.proc.returncode}):\n{ep.output()}"
        return ep

    yield start
    for ep in started:
        ep.stop()


# A test that drives a flat-out load generator (test_reload.py's, the Python servers', the Node
# sample's) keeps a core or more busy, and so does what it loads. In one xdist group (`--dist
# loadgroup`) they run one at a time, each beside tests that mostly wait on real processes instead of
# beside another one: less time in all, and no test starved of CPU. A test under `Load.steady` (a few
# percent of a core) needs no place in it. Not the chaos test either: it lasts 60 s whatever the load,
# and as one more link of this chain it would make the whole run a minute longer.
under_load = pytest.mark.xdist_group("load")


def default_sigint() -> None:
    """preexec_fn for a child that a test interrupts as Ctrl-C would. A runner started in the
    background of a non-interactive shell ignores SIGINT and its children inherit that (Python then
    never raises KeyboardInterrupt), so without this such a run sees a hang where a user sees an exit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def oxtui_cli(*args: str, timeout: float = 60, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oxtui", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "NO_COLOR": "1", **(env or {})},
                          stdin=subprocess.DEVNULL, check=False)


def procs(ep: EngineProcess) -> dict[str, Any]:
    """The running processes of an engine, by name."""
    return {p["name"]: p for p in ep.status()["processes"]}


def http_get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()
