"""A bounded keep-alive HTTP/1.1 load: each thread holds one persistent connection and sends requests
back to back on it, as a browser, a proxy's upstream pool or wrk does.

A request counts as failed when it was sent and no complete response came back (the server closed
or reset the connection under it) or the status was not 200. A response with `Connection: close`
is a clean hand-back: the thread opens a new connection for its next request. Only 127.0.0.1.
"""

from __future__ import annotations

import socket
import time

from load import BoundedLoad


class KeepAliveLoad(BoundedLoad):
    def __init__(self, port: int, path: str = "/", connections: int = 16, max_seconds: float = 120,
                 max_requests: int = 2_000_000, pause: float = 0.0):
        super().__init__(port, path, connections, max_seconds)
        self.max_requests = max_requests
        # Seconds each connection waits between an answer and its next request: a connection idle
        # most of the time, as a browser's or a proxy's pool is, and a server not kept busy flat out
        # (a reload must then close idle connections without losing the request that races the close).
        # Load (one request per connection) has no pause: paced, it caught a SIGKILLed drain 1 time in 3.
        self.pause = pause
        self.ok = 0
        self.reconnects = 0           # connections opened again after a clean Connection: close
        self.bodies: list[str] = []   # the last few, to see which release answered

    @property
    def count(self) -> int:
        return self.ok + len(self.failures)

    def _record(self, ok: bool, what: str = "", body: str = "") -> None:
        with self._lock:
            if ok:
                self.ok += 1
                if len(self.bodies) >= 50:
                    del self.bodies[:25]
                self.bodies.append(body)
            else:
                self.failures.append(f"{time.time():.3f} {what}")

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        request = f"GET {self.path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        conn: socket.socket | None = None
        buf = b""
        while not self._stop.is_set() and time.monotonic() < deadline and self.count < self.max_requests:
            if conn is None:
                try:
                    conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                except OSError as e:
                    self._record(False, f"connect: {e!r}")
                    time.sleep(0.05)
                    continue
                buf = b""
            try:
                conn.sendall(request)
                status, headers, body, buf = _read_response(conn, buf)
            except (OSError, EOFError, ValueError) as e:
                self._record(False, f"request lost on a kept-alive connection: {e!r}")
                conn.close()
                conn = None
                continue
            self._record(status == 200, f"status {status}", body)
            if headers.get("connection", "").lower() == "close":
                conn.close()
                conn = None
                with self._lock:
                    self.reconnects += 1
            if self.pause:
                self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


def _read_response(conn: socket.socket, buf: bytes) -> tuple[int, dict[str, str], str, bytes]:
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("connection closed before a response")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, rest = _read_chunked(conn, rest)
    else:
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError("connection closed inside a response body")
            rest += chunk
        body, rest = rest[:length], rest[length:]
    return status, headers, body.decode("utf-8", "replace"), rest


def _read_chunked(conn: socket.socket, rest: bytes) -> tuple[bytes, bytes]:
    body = b""
    while True:
        while b"\r\n" not in rest:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError("connection closed inside a chunked body")
            rest += chunk
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            chunk = conn.recv(65536)
            if not chunk:
                raise EOFError("connection closed inside a chunk")
            rest += chunk
        body, rest = body + rest[:size], rest[size + 2:]
        if size == 0:
            return body, rest
