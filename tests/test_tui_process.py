"""The real `oxtui OXFILE` in a pseudo-terminal: its engine answers the control socket, and a
hang-up (the SSH connection dropping) stops every worker gracefully and leaves nothing behind."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading

import psutil

from conftest import oxtui_cli, wait_until, write_oxfile


def start_tui(oxfile) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "oxtui", str(oxfile)], stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, "TERM": "xterm-256color"}, start_new_session=True)
    os.close(slave)

    def drain() -> None:   # a pty nobody reads fills up and blocks the app's output
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    return proc, master


def test_hangup_stops_workers_gracefully_and_exits(tmp_path):
    oxfile = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{sys.executable} -c 'import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); print(\\"up\\", flush=True); time.sleep(600)'"
        instances = 2
    ''')
    proc, master = start_tui(oxfile)
    try:
        def pids():
            r = oxtui_cli("status", "--json", "-c", str(oxfile))
            if r.returncode != 0:
                return None
            import json
            ws = json.loads(r.stdout)["processes"][0]["workers"]
            return [w["pid"] for w in ws] if all(w["state"] == "running" for w in ws) else None

        workers = wait_until(pids, 20, 0.2, "the TUI's engine to run 2 workers")
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(30) == 0
        assert not any(psutil.pid_exists(p) for p in workers)
        log = (tmp_path / "logs" / "app.log").read_text()
        assert log.count("stopped (code 0)") == 2, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
