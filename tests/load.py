"""A bounded load generator for reload tests: threads sending HTTP/1.0 GETs to 127.0.0.1 back to back,
recording every answer and every failure ("<time> port=<local port> since=<connect time> <what>")."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

STEADY_PATH = "/slow?s=0.02"


class BoundedLoad:
    """Threads that send requests to 127.0.0.1 until stopped or out of time; subclasses send them."""

    def __init__(self, port: int, path: str, threads: int, max_seconds: float):
        self.port, self.path, self.max_seconds = port, path, max_seconds
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    @property
    def count(self) -> int:
        raise NotImplementedError

    def wait_for(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        start = self.count
        while self.count < start + n:
            if time.monotonic() > deadline:
                raise AssertionError(f"load made only {self.count - start} requests in {timeout}s "
                                     f"(failures so far: {self.failures[-3:]})")
            time.sleep(0.01)

    def _run(self) -> None:
        raise NotImplementedError


class Load(BoundedLoad):
    """One HTTP/1.0 request per connection. As made, flat out: four threads, about 2,000 requests a
    second, and with what it loads a core and a half. That is for the tests of a reload's own steps
    (test_reload.py), whose races are narrow; `Load.steady` is for the rest."""

    def __init__(self, port: int, path: str = "/", threads: int = 4, max_seconds: float = 120):
        super().__init__(port, path, threads, max_seconds)
        self.bodies: list[str] = []

    @classmethod
    def steady(cls, port: int, max_seconds: float = 120) -> Load:
        """Traffic all the time rather than the most traffic: eight clients whose requests each stay
        20 ms in tests/apps/app.py (its /slow). A request is then in flight on the instances at nearly
        every moment (a drain that SIGKILLs its instance loses some in each run), at about 350 requests
        a second and a few percent of a core, so a test of what happens to the engine, the UI or a
        deploy keeps the machine for the others."""
        return cls(port, STEADY_PATH, threads=8, max_seconds=max_seconds)

    @property
    def count(self) -> int:
        return len(self.bodies) + len(self.failures)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            port = "-"
            since = time.time()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    port = s.getsockname()[1]
                    s.sendall(f"GET {self.path} HTTP/1.0\r\nHost: t\r\n\r\n".encode())
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                status = head.split(b" ", 2)[1] if head else b"none"
                with self._lock:
                    if status == b"200":
                        self.bodies.append(body.decode())
                    else:
                        self.failures.append(f"{time.time():.3f} port={port} since={since:.3f} status {status!r}")
            except OSError as e:
                with self._lock:
                    self.failures.append(f"{time.time():.3f} port={port} since={since:.3f} {e!r}")


def parse_failure(failure: str) -> tuple[float, str, float]:
    """(when it failed, the client port, when it connected) of a failure line."""
    words = failure.split()
    return float(words[0]), words[1].removeprefix("port="), float(words[2].removeprefix("since="))


def accept_owners(accept_log: Path) -> dict[str, list[tuple[float, int]]]:
    """client port -> [(time, pid)] of every accept tests/apps/app.py logged (ACCEPT_LOG)."""
    owners: dict[str, list[tuple[float, int]]] = {}
    if accept_log.exists():
        for line in accept_log.read_text().splitlines():
            at, client_port, pid = line.split()
            owners.setdefault(client_port, []).append((float(at), int(pid)))
    return owners


def owner(failure: str, owners: dict[str, list[tuple[float, int]]]) -> int | None:
    """The instance that accepted this very connection (a client port is reused by later ones)."""
    at, client_port, since = parse_failure(failure)
    seen = [pid for t, pid in owners.get(client_port, []) if since - 0.05 <= t <= at + 0.05]
    return seen[-1] if seen else None


def explain(failures: list[str], folder: Path) -> str:
    """The story of failed requests, for an assertion's message: which instance accepted each one,
    and what the engine logged about that instance (its start, its end, its last lines)."""
    if not failures:
        return ""
    owners = accept_owners(folder / "accepts.log")
    out = [f"{len(failures)} failed request(s):"]
    pids = set()
    for f in failures[:5]:
        pid = owner(f, owners)
        out.append(f"  {f} (accepted by {'pid ' + str(pid) if pid else 'no instance on record'})")
        if pid:
            pids.add(pid)
    logs = sorted((folder / "logs").glob("*.log")) if (folder / "logs").is_dir() else []
    lines = [line for log in logs for line in log.read_text(errors="replace").splitlines()]
    out += [line for line in lines if " ~ " in line or any(f"pid {pid}" in line for pid in pids)][-60:]
    return "\n".join(out)
