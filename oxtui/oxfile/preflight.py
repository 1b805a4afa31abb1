"""What `oxtui check` knows of this machine beyond the file itself, so that `run` does not fail later:

    errors    a server told to bind its own port while `listen` gives it fd 3 (the second bind fails),
              a [logs] dir that cannot be written, a `user` that cannot enter its cwd
    warnings  a program not found (a deploy may bring it), a script that is not executable (chmod +x),
              gunicorn binding fd 3 a second time, a `listen` address another program holds now, an
              env PORT that `listen` replaces

Only `oxtui check` asks (it binds test sockets and walks folders); loading an oxfile never does.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import stat
from pathlib import Path

from .model import Config, LogsConfig, ProcessConfig
from .values import program_of

GUNICORN_FD_BIND = re.compile(r"\bgunicorn\b.*(--bind[= ]|-b ?)(unix:)?fd://")
# A server told to bind a TCP port of its own: uvicorn/hypercorn/anything `--port N`, gunicorn `--bind host:port`.
OWN_PORT = re.compile(r"(?:^|\s)(--port[= ]\S+|(?:--bind[= ]|-b ?)(?!(?:unix:)?fd://)\S*:\S+)")

SHELL_WORDS = {"cd", "echo", "exec", "export", "set", "test", "[", "true", "false", ":", ".", "source", "trap",
               "ulimit", "umask", "wait", "while", "for", "if", "until", "case", "{", "(", "!", "eval", "printf",
               "read", "sleep"}


def _program_problem(proc: ProcessConfig) -> str | None:
    """Why the program a command runs would not start, as far as this machine can tell now: not where
    the instance will look (its cwd, and the PATH it gets), or a file that is not executable."""
    program = program_of(proc.command)
    if not program or program in SHELL_WORDS or "$" in program:
        return None
    if "/" in program:
        path = proc.cwd / program
        if path.is_file() and not os.access(path, os.X_OK):
            return (f"{program!r} exists in {str(proc.cwd)!r} but is not executable; it will exit 126 "
                    f"(chmod +x {program}, or run it through its interpreter)")
        if not os.access(path, os.X_OK):
            return f"{program!r} is not an executable file in {str(proc.cwd)!r}; it will exit 127 unless it exists by then"
        return None
    search = dict(proc.env).get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(program, path=search):
        return None
    return (f"{program!r} is not found on the PATH the instances get; it will exit 127 unless it exists by then "
            "(install it, or give its full path)")


def _can_enter(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first folder on the way to `path` that this user may not search, or None."""
    if uid == 0:
        return None
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except OSError:
            return None          # check reports a missing cwd on its own
        mode = st.st_mode
        ok = (mode & stat.S_IXUSR if st.st_uid == uid else
              mode & stat.S_IXGRP if st.st_gid in gids else mode & stat.S_IXOTH)
        if not ok:
            return folder
    return None


def _writable_logs(logs: LogsConfig) -> str | None:
    folder = logs.dir
    while not folder.exists():
        folder = folder.parent
    if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return None
    return str(folder)


def _taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


def check(config: Config, running: bool = False) -> tuple[list[str], list[str]]:
    """(errors, warnings) about this machine. `running`: an engine runs for this oxfile now (its own
    listen addresses are taken, by itself)."""
    errors: list[str] = []
    warnings: list[str] = []
    file, processes, logs = str(config.path), config.processes, config.logs
    where = _writable_logs(logs)
    if where is not None:
        errors.append(f"{file}: [logs] dir: {logs.dir} cannot be created or written here ({where} is not writable "
                      "by this user); set [logs] dir to a writable folder")
    for proc in processes:
        at = f"{file}: [processes.{proc.name}]"
        problem = _program_problem(proc)
        if problem:
            warnings.append(f"{at} command: {problem}")
        if proc.listen and GUNICORN_FD_BIND.search(proc.command):
            warnings.append(f"{at} command: gunicorn adopts fd 3 by itself (oxtui sets LISTEN_FDS=1); `--bind fd://3` "
                            "adds it a second time and crash-loops with EBADF: remove the --bind")
        elif proc.listen and (own := OWN_PORT.search(proc.command)):
            errors.append(f"{at} command: `{own.group(1).strip()}` makes it bind a port of its own, while listen "
                          f"= {proc.listen_str!r} hands every instance the shared socket as fd 3: the binds collide "
                          "(EADDRINUSE); take fd 3 instead (uvicorn: --fd 3; gunicorn: no --bind), or remove listen")
        if proc.listen and dict(proc.env).get("PORT") not in (None, str(proc.listen[1])):
            warnings.append(f"{at} env: PORT = {dict(proc.env)['PORT']!r} is replaced by listen's port "
                            f"{proc.listen[1]} in every instance; remove it from env or make them agree")
        if proc.listen and not running and proc.listen[1] and _taken(*proc.listen):
            warnings.append(f"{at} listen: {proc.listen_str} is in use by another program now; `oxtui run` "
                            "fails until it is free")
        if proc.run_as is not None:
            blocked = _can_enter(proc.cwd, proc.run_as.uid, set(proc.run_as.groups))
            if blocked is not None:
                errors.append(f"{at} user: {proc.run_as.user} cannot enter its cwd {proc.cwd} (no search "
                              f"permission on {blocked}); move the app, or give that user access (chmod o+x "
                              f"{blocked}, or its group)")
    return errors, warnings
