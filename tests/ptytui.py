"""`oxtui OXFILE` on a pseudo-terminal that is its controlling terminal, as over SSH: what the tests
of the real TUI process drive (tests/test_tui_process.py, tests/test_keeper.py)."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import threading

# Make the pty the controlling terminal of the new session (as a login shell's is), then become oxtui.
CTTY = ("import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.executable, [sys.executable, '-m', 'oxtui', *sys.argv[1:]])")


class PtyTUI:
    """`oxtui OXFILE` on a pty; a thread reads the screen so the app never blocks on output."""

    def __init__(self, oxfile, env: dict[str, str] | None = None):
        self.oxfile = oxfile
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
        # The pty's size, not COLUMNS/LINES that another test of this worker left in the environment
        # (Textual prefers them to the terminal's own size).
        base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        self.proc = subprocess.Popen([sys.executable, "-c", CTTY, str(oxfile)], stdin=slave, stdout=slave,
                                     stderr=slave, env={**base, "TERM": "xterm-256color", **(env or {})},
                                     start_new_session=True)
        os.close(slave)
        self.output = b""
        self._hangup = threading.Event()
        self._reading = threading.Event()
        self._reading.set()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        # Only this thread touches the master, and never blocks in read: a read in progress would
        # keep the terminal open after close().
        try:
            while not self._hangup.is_set():
                if not self._reading.is_set():      # a terminal that takes nothing (a stalled link)
                    self._hangup.wait(0.05)
                    continue
                if select.select([self.master], [], [], 0.05)[0]:
                    try:
                        data = os.read(self.master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    self.output = (self.output + data)[-200_000:]
        finally:
            os.close(self.master)
            self._closed.set()

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def stall(self) -> None:
        """Stop reading the screen: the kernel's buffer fills and the app's writes block, as over an
        SSH link that stopped moving."""
        self._reading.clear()

    def hang_up(self) -> None:
        """What sshd does when the connection drops."""
        self._hangup.set()
        assert self._closed.wait(5)

    def close(self) -> None:
        """Stop whatever engine serves the oxfile now (this process's, or one it handed over to, or one
        its keeper started), then this process: a test that failed half-way leaves nothing running."""
        subprocess.run([sys.executable, "-m", "oxtui", "down", "-c", str(self.oxfile)], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL, check=False)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._closed.is_set():
            self.hang_up()
