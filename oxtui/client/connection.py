"""Talks to a running engine over its control socket (used by the CLI verbs)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from shlex import quote
from typing import Any, Self

from ..protocol import Snapshot
from ..runtime import socket_paths


class NoEngine(Exception):
    """No engine runs for that oxfile (exit code 3)."""


class ControlError(Exception):
    """The engine refused or failed the command (exit code 1; 2 when `usage`: the request was wrong)."""

    def __init__(self, text: str, usage: bool = False, keeper_pid: int | None = None, retry: bool = False):
        super().__init__(text)
        self.usage = usage
        self.keeper_pid = keeper_pid    # the keeper answered: no engine runs, and it holds the workers
        self.retry = retry              # nothing changed; the same request a moment later should go


class Client:
    def __init__(self, oxfile: Path | None, timeout: float | None = 30.0, path: Path | None = None):
        assert path is not None or oxfile is not None
        paths = [path] if path is not None else socket_paths(oxfile)    # type: ignore[arg-type]
        self.oxfile = oxfile
        for self.path in paths:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(str(self.path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
        else:
            if oxfile is not None and not oxfile.exists():
                raise NoEngine(f"no engine is running for {oxfile}, and there is no such file; check the path "
                               "(`oxtui ls` lists the running engines)") from None
            raise NoEngine(f"no engine is running for {oxfile or self.path}; start one with `oxtui up {quote(str(oxfile))}` "
                           f"(background), `oxtui run {quote(str(oxfile))}` (foreground) or `oxtui {quote(str(oxfile))}` (TUI)") from None
        self._buf = self.sock.makefile("rb")

    def close(self) -> None:
        self._buf.close()
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, req: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(req).encode() + b"\n")

    def replies(self) -> Iterator[dict[str, Any]]:
        for line in self._buf:
            yield json.loads(line)

    def call(self, req: dict[str, Any], on_progress: Callable[[str], None] | None = None) -> Any:
        self.send(req)
        for msg in self.replies():
            if "progress" in msg:
                if on_progress is not None:
                    on_progress(msg["progress"])
                continue
            if msg.get("ok"):
                return msg.get("result")
            raise ControlError(msg.get("error", "unknown error"), bool(msg.get("usage")), msg.get("keeper_pid"),
                               bool(msg.get("retry")))
        raise ControlError("the engine closed the connection (it may be shutting down)")


def status_of(oxfile: Path, timeout: float = 5) -> Snapshot | None:
    """The running engine's snapshot for this oxfile, or None when none answers."""
    try:
        with Client(oxfile, timeout=timeout) as c:
            return c.call({"cmd": "status"})
    except (NoEngine, ControlError, OSError, ValueError):
        return None
