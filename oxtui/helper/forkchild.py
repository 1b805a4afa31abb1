"""The spawner helper's children: the set-up between fork and exec (forkserver.py's other half).

Loaded by the helper from its own folder (it runs as a script, without the oxtui package), so it
imports only the standard library too.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
NOT_FOUND_EXIT = 127
CANNOT_START_EXIT = 126
ORPHANED_EXIT = 125
# Signals this helper (or Python) sets to SIG_IGN; everything else is already default after exec.
RESET_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)
# The helper ignores these (they are the engine's business); a forked child must not, from its
# first instruction: the engine may stop an instance before it has exec'd.
STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


def fork() -> int:
    """fork() with the stop signals blocked across it: the child sets them back to default before it
    unblocks them, so one sent in between is held, then acted on, never ignored."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    if pid == 0:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pid

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int | bytes) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def become_instance(req: dict, fds: list[int], helper_pid: int) -> None:
    """In the forked child: never returns."""
    try:
        os.setsid()
        # Lift the received fds out of 0-3 first, so the dup2s below never overwrite one another.
        fds = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        keep = 3
        if req.get("listen"):
            os.dup2(fds[2], 3)
            keep = 4
        os.closerange(keep, 1 << 20)
        if "uid" in req:
            # Groups first, uid last: once the uid is not root, the others cannot change any more.
            try:
                os.setgroups(req["groups"])
                os.setgid(req["gid"])
                os.setuid(req["uid"])
            except OSError as e:
                os.write(2, f"oxtui: cannot run as uid {req['uid']} gid {req['gid']}: {e.strerror}\n".encode())
                os._exit(CANNOT_START_EXIT)
        # After the uid change: the kernel clears the parent-death signal when credentials change.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != helper_pid:        # the helper died between fork and prctl
            os._exit(ORPHANED_EXIT)
        # Handlers vanish at exec by themselves; ignored signals would be inherited.
        for sig in RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        env = req["env"]
        if req.get("listen"):
            env["LISTEN_PID"] = str(os.getpid())
        try:
            os.chdir(req["cwd"])
        except OSError as e:
            os.write(2, f"oxtui: cannot enter {req['cwd']}: {e.strerror}\n".encode())
            os._exit(CANNOT_START_EXIT)
        argv = req["argv"]
        try:
            # The engine resolved the program on PATH already; execvpe is the fallback.
            if req.get("path"):
                os.execve(req["path"], argv, env)
            os.execvpe(argv[0], argv, env)
        except FileNotFoundError:
            os.write(2, f"oxtui: {argv[0]}: not found\n".encode())
            os._exit(NOT_FOUND_EXIT)
        except OSError as e:
            os.write(2, f"oxtui: {argv[0]}: {e.strerror}\n".encode())
            os._exit(CANNOT_START_EXIT)
    except BaseException:
        os._exit(CANNOT_START_EXIT)
