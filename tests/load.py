"""A bounded load generator for reload tests: threads sending HTTP/1.0 GETs to 127.0.0.1 back to back,
recording every answer and every failure ("<time> port=<local port> since=<connect time> <what>")."""

from __future__ import annotations

import socket
import threading
import time


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
    """One HTTP/1.0 request per connection."""

    def __init__(self, port: int, path: str = "/", threads: int = 4, max_seconds: float = 120):
        super().__init__(port, path, threads, max_seconds)
        self.bodies: list[str] = []

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
