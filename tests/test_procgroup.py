"""kill_group and signal_process against real processes: an instance's number, once free, may be any
other process's or thread's, and a signal meant for the instance must not reach it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import PY, gone, wait_until

from oxtui.engine.procgroup import kill_group, signal_process

# prints the id of a second thread, then sleeps: a process whose thread id is not its pid
THREADED = ("import threading, time\n"
            "threading.Thread(target=lambda: (print(threading.get_native_id(), flush=True), time.sleep(60))).start()\n"
            "time.sleep(60)\n")


def _start(code: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True, **kw)


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()


def test_a_number_that_is_now_another_process_s_thread_is_left_alone():
    """The instance is gone and its number is now a thread of some app serving a request: kill(2) of
    that id would end the whole app (it did: one `status none` in a loaded full run)."""
    other = _start(THREADED, start_new_session=True)
    try:
        tid = int(other.stdout.readline())
        assert tid != other.pid
        for parent in (None, other.pid, os.getpid()):
            kill_group(tid, signal.SIGKILL, parent)
        time.sleep(0.3)
        assert other.poll() is None, "a thread's id is no instance: its process must live on"
    finally:
        _end(other)


def test_a_process_that_the_helper_did_not_fork_is_left_alone():
    """No group by that number, and the process by that number is not a child of the instance's helper."""
    stranger = _start("import time; time.sleep(60)")     # our child, in our group: not its own
    try:
        kill_group(stranger.pid, signal.SIGKILL, parent=stranger.pid + 1_000_000)
        time.sleep(0.3)
        assert stranger.poll() is None
    finally:
        _end(stranger)


def test_a_child_not_yet_in_its_own_group_gets_the_signal_itself():
    """Just after the fork, before setsid: no group yet, so the process itself is signalled."""
    child = _start("import time; time.sleep(60)")        # its parent is this test, as the helper is an instance's
    try:
        kill_group(child.pid, signal.SIGTERM, parent=os.getpid())
        assert child.wait(10) == -signal.SIGTERM
    finally:
        _end(child)


def test_a_group_gets_the_signal_whole():
    leader = _start("import subprocess, sys, time\n"
                    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
                    "print(p.pid, flush=True)\ntime.sleep(60)\n", start_new_session=True)
    try:
        grandchild = int(leader.stdout.readline())
        kill_group(leader.pid, signal.SIGTERM)
        assert leader.wait(10) == -signal.SIGTERM
        wait_until(lambda: gone(grandchild), 10, 0.05, "the rest of the group to end")
    finally:
        _end(leader)


def test_k_signals_the_instance_only_while_its_number_is_still_the_helper_s_child():
    """`k` / `oxtui kill` signal the main process alone: never a number that became another process's
    or a thread's between the instance's exit and the engine hearing of it."""
    child = _start("import time; time.sleep(60)")           # its parent is this test, as the helper is an instance's
    other = _start(THREADED, start_new_session=True)
    try:
        tid = int(other.stdout.readline())
        assert not signal_process(child.pid, signal.SIGTERM, parent=child.pid + 1_000_000), "another's child"
        assert not signal_process(tid, signal.SIGKILL, parent=other.pid), "a thread's id"
        assert not signal_process(tid, signal.SIGKILL, parent=os.getpid())
        assert not signal_process(child.pid, signal.SIGTERM, parent=None), "no known parent: never by number"
        time.sleep(0.3)
        assert child.poll() is None and other.poll() is None
        assert signal_process(child.pid, signal.SIGTERM, parent=os.getpid())
        assert child.wait(10) == -signal.SIGTERM
        assert not signal_process(child.pid, signal.SIGTERM, parent=os.getpid()), "reaped: no process by that number"
    finally:
        _end(child)
        _end(other)
