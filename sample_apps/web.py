"""A stdlib-only HTTP server for oxtui: serves the socket handed over as fd 3 (LISTEN_FDS=1),
or binds $PORT when run alone. Drains on SIGTERM: stops accepting, finishes requests in flight,
then exits 0. Routes: / (hello), /health, /cpu?n=200000 (CPU-heavy), /slow?s=2.
"""

import hashlib
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

INSTANCE = os.environ.get("OXTUI_INSTANCE", "-")
STARTED = time.time()


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a drain never has idle keep-alive connections to cut.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path == "/health":
            self.reply(200, "ok\n")
        elif url.path == "/cpu":
            n = min(int(q.get("n", ["200000"])[0]), 5_000_000)
            h = b"oxtui"
            for _ in range(n):
                h = hashlib.sha256(h).digest()
            self.reply(200, f"{h.hex()[:16]} from pid {os.getpid()}\n")
        elif url.path == "/slow":
            time.sleep(min(float(q.get("s", ["2"])[0]), 30))
            self.reply(200, f"slow reply from pid {os.getpid()}\n")
        elif url.path == "/":
            self.reply(200, f"hello from pid {os.getpid()} (instance {INSTANCE}), up {time.time() - STARTED:.0f}s\n")
        else:
            self.reply(404, "not found\n")

    def reply(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args) -> None:
        pass


def listening_socket() -> socket.socket:
    if os.environ.get("LISTEN_FDS") == "1":
        sock = socket.socket(fileno=3)
    else:
        port = int(os.environ.get("PORT", "8080"))
        sock = socket.create_server((os.environ.get("HOST", "127.0.0.1"), port), reuse_port=False)
    # Several instances poll the same socket: a non-blocking accept lets the losers go back to waiting.
    sock.setblocking(False)
    return sock


def main() -> None:
    server = ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listening_socket()
    server.daemon_threads = False       # server_close() waits for requests in flight
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    loop.start()
    host, port = server.socket.getsockname()[:2]
    print(f"web: pid {os.getpid()} instance {INSTANCE} listening on {host}:{port}", flush=True)
    # Wait with a timeout: a signal delivered to another thread only runs its Python handler once
    # the main thread executes bytecode again, which a plain wait() would never do.
    while not stop.wait(0.2):
        pass
    print(f"web: pid {os.getpid()} draining", flush=True)
    server.shutdown()                   # stop accepting; the shared socket stays open in the others
    server.server_close()               # closes only our handle, then joins requests in flight
    loop.join()
    print(f"web: pid {os.getpid()} drained, bye", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
