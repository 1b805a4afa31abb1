"""Test HTTP app. Reads ./release.txt at boot, like a deploy would change the code on disk:
  "ok <tag>"     serve normally (/ answers "<tag> <pid>")
  "crash"        exit 3 at boot
  "noready"      never accept and never print the ready line
  "fail500"      serve, but /health answers 500
  "crashlater [S]" become ready, then exit 4 after S seconds (0.2)
  "slowok <tag>" serve normally, but only after booting for 1.5 s
  "slowstop <tag>" serve normally, but keep serving 2 s after SIGTERM before draining
Drains on SIGTERM: stop accepting, finish requests in flight, exit 0.
"""

import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

try:
    with open("release.txt") as f:
        RELEASE = f.read().split()
except FileNotFoundError:
    RELEASE = ["ok", "r1"]
MODE = RELEASE[0]
TAG = RELEASE[1] if len(RELEASE) > 1 else MODE


# One line "<time> <client port> <pid>" per accepted connection, to $ACCEPT_LOG or ./accepts.log, so
# a test can tell which instance a failed request was on (tests/load.py's explain(); the chaos test
# excuses only failures on killed instances).
try:
    ACCEPT_FD = os.open(os.environ.get("ACCEPT_LOG", "accepts.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
except OSError:
    ACCEPT_FD = None


class Server(ThreadingHTTPServer):
    def process_request(self, request, client_address):
        if ACCEPT_FD is not None:
            os.write(ACCEPT_FD, f"{time.time():.3f} {client_address[1]} {os.getpid()}\n".encode())
        super().process_request(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/health":
            code = 500 if MODE == "fail500" else 200
            return self.reply(code, "bad\n" if code == 500 else "ok\n")
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
        self.reply(200, f"{TAG} {os.getpid()}\n")

    def reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if MODE == "crash":
        print("boom: release is broken", file=sys.stderr, flush=True)
        sys.exit(3)
    if MODE == "noready":
        while not stop.wait(0.2):
            pass
        return
    if MODE == "slowok":
        time.sleep(1.5)     # a release that takes a while to boot: a reload must wait for it
    sock = socket.socket(fileno=3) if os.environ.get("LISTEN_FDS") == "1" else socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
    sock.setblocking(False)
    server = Server(("", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = False
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    if os.environ.get("READY_MARK_DIR"):     # when it became ready, on the machine's monotonic clock
        with open(os.path.join(os.environ["READY_MARK_DIR"], f"ready-{os.getpid()}"), "w") as f:
            f.write(repr(time.monotonic()))
    print(f"ready {TAG} pid {os.getpid()} listen_pid {os.environ.get('LISTEN_PID')}", flush=True)
    if MODE == "crashlater":
        time.sleep(float(TAG) if TAG.replace(".", "").isdigit() else 0.2)
        os._exit(4)
    # Wait with a timeout: a signal delivered to another thread only runs its Python handler once
    # the main thread executes bytecode again, which a plain wait() would never do.
    while not stop.wait(0.2):
        pass
    if MODE == "slowstop":
        time.sleep(2)
    server.shutdown()
    server.server_close()
    t.join()
    sys.exit(0)


if __name__ == "__main__":
    main()
