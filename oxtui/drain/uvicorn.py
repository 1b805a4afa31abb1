"""uvicorn with the drain (see oxtui/drain/__init__.py).

    python -m oxtui.drain.uvicorn --fd 3 main:app [any uvicorn option]   # instead of `uvicorn ...`
    gunicorn -k oxtui.drain.uvicorn.Worker main:app                       # instead of uvicorn_worker's

Plain uvicorn, on SIGTERM, closes every idle keep-alive connection at once: a request a client had
already sent on one is lost (measured in docs/apps.md). Here the first SIGTERM only starts the drain:
the listener closes (the shared socket stays open for the other instances), responses carry
`Connection: close`, and after OXTUI_DRAIN_GRACE seconds (1 s) uvicorn's own graceful shutdown runs.
A second SIGTERM (gunicorn's master sends one after oxtui's) changes nothing; SIGINT still forces.
"""

from __future__ import annotations

import importlib
import signal
import sys
import time
from types import FrameType
from typing import Any

from uvicorn.server import Server

from . import GRACE


class DrainMiddleware:
    """ASGI: while the server drains, every response says `Connection: close`."""

    def __init__(self, app: Any, server: DrainingServer):
        self.app, self.server = app, server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_closing(message: dict) -> None:
            if message["type"] == "http.response.start" and self.server.draining_since is not None:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": headers + [(b"connection", b"close")]}
            await send(message)
        await self.app(scope, receive, send_closing)


class DrainingServer(Server):
    draining_since: float | None = None
    _listening = True

    async def startup(self, sockets: Any = None) -> None:
        if not isinstance(self.config.loaded_app, DrainMiddleware):
            self.config.loaded_app = DrainMiddleware(self.config.loaded_app, self)
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and GRACE > 0:
            if self.draining_since is None:
                self.draining_since = time.monotonic()
            return          # the drain has begun; on_tick ends it
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.draining_since is not None:
            if self._listening:
                self._listening = False
                for server in self.servers:
                    server.close()      # no new connections here; the queue goes to the other instances
            if time.monotonic() - self.draining_since >= GRACE:
                self.should_exit = True
        return await super().on_tick(counter)


try:
    from uvicorn_worker import UvicornWorker
except ImportError:     # the worker class needs the uvicorn-worker package
    UvicornWorker = None

if UvicornWorker is not None:
    from uvicorn_worker import _workers

    class Worker(UvicornWorker):
        """gunicorn worker class: uvicorn_worker.UvicornWorker with the drain."""

        async def _serve(self) -> None:
            server_class = _workers.Server
            _workers.Server = DrainingServer
            try:
                await super()._serve()
            finally:
                _workers.Server = server_class


def main() -> None:
    # uvicorn's own command line with every option, our Server. (`uvicorn.main` is also the name of
    # the command function in uvicorn's __init__, so the module is fetched by its full name.)
    cli: Any = importlib.import_module("uvicorn.main")
    cli.Server = DrainingServer
    sys.argv[0] = "uvicorn"
    cli.main()


if __name__ == "__main__":
    main()
