"""Start one instance: /bin/sh -c with exec, own session, stdout/stderr pipes, the socket as fd 3.

Uses posix_spawn (vfork-fast, safe with threads) instead of subprocess.Popen because Popen cannot
place an inherited socket at a chosen fd number, and dash's `exec 3<&N` only takes N < 10.
util-linux `setpriv --pdeathsig` in front makes the instance die if the engine dies; the script
then checks that its parent is still the engine, closing the race between fork and prctl.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import time
from dataclasses import dataclass

SETPRIV = shutil.which("setpriv")
# Exit status the prelude uses when the engine died before the child could arm PDEATHSIG.
ORPHANED_EXIT = 125
PIPE_SIZE = 256 * 1024

_CONTROL_TOKENS = {";", "&", "&&", "|", "||", "(", ")", ";;", "|&"}
_FIRST_WORD_NO_EXEC = {"if", "for", "while", "until", "case", "{", "cd", "exec", "export", "set", "source", "."}
_ASSIGN_RE = re.compile(r"""^((?:[A-Za-z_]\w*=(?:'[^']*'|"[^"]*"|[^\s'"]*)\s+)*)(.*)$""", re.S)


def exec_form(command: str) -> str:
    """Prefix a simple command with `exec` so the PID we track is the program's own.

    Compound commands (pipelines, lists, `cd x && ...`) stay as they are: the shell remains the
    instance's main process and the process group still reaches everything it starts.
    """
    try:
        lex = shlex.shlex(command, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        tokens = list(lex)
    except ValueError:
        return command
    if not tokens or "\n" in command or any(t in _CONTROL_TOKENS for t in tokens):
        return command
    m = _ASSIGN_RE.match(command.strip())
    assigns, rest = m.group(1), m.group(2)
    first = rest.split(None, 1)[0] if rest.strip() else ""
    if not first or first in _FIRST_WORD_NO_EXEC:
        return command
    # `A=1 exec prog` exports A to prog in dash and bash alike.
    return f"{assigns}exec {rest}"


def build_script(command: str, cwd: str, engine_pid: int, with_socket: bool) -> str:
    lines = [f'[ "$PPID" = "{engine_pid}" ] || exit {ORPHANED_EXIT}', f"cd -- {shlex.quote(cwd)} || exit 126"]
    if with_socket:
        # The PID the program will have after exec is the shell's own.
        lines.append("LISTEN_PID=$$; export LISTEN_PID")
    lines.append(exec_form(command))
    return "\n".join(lines)


def _high_fd(fd: int) -> int:
    """Move fd to >= 10 (close-on-exec) so a dup2 onto 0-3 in the child never hits itself."""
    if fd >= 10:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def _grow_pipe(fd: int) -> None:
    """A 256 KiB pipe (4x the default) lets a chatty child run ahead of the engine instead of blocking every 64 KiB."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass   # above /proc/sys/fs/pipe-max-size for this user: keep the default


_RESET_SIGNALS = tuple(
    s for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2)
)


@dataclass
class Child:
    pid: int
    stdout: int   # read ends, non-blocking
    stderr: int
    started: float

    def close_pipes(self) -> None:
        for fd in (self.stdout, self.stderr):
            try:
                os.close(fd)
            except OSError:
                pass


def spawn(command: str, cwd: str, env: dict[str, str], listen_fd: int | None = None) -> Child:
    """Start the instance. Raises OSError when even the shell cannot be started."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w, err_r, err_w = (_high_fd(fd) for fd in (out_r, out_w, err_r, err_w))
    _grow_pipe(out_w)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    if listen_fd is not None:
        actions.append((os.POSIX_SPAWN_DUP2, listen_fd, 3))
    script = build_script(command, cwd, os.getpid(), listen_fd is not None)
    argv = ["/bin/sh", "-c", script]
    if SETPRIV:
        argv = [SETPRIV, "--pdeathsig", "SIGKILL", "--"] + argv
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True,
                             setsigdef=_RESET_SIGNALS, setsigmask=())
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    os.set_blocking(out_r, False)
    os.set_blocking(err_r, False)
    return Child(pid=pid, stdout=out_r, stderr=err_r, started=time.monotonic())


def instance_env(base: dict[str, str], name: str, slot: int, extra: tuple[tuple[str, str], ...],
                 listen: tuple[str, int] | None) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("LISTEN_")}
    env.update(extra)
    env["OXTUI_PROCESS"] = name
    env["OXTUI_INSTANCE"] = str(slot)
    env["NODE_APP_INSTANCE"] = str(slot)
    env["PYTHONUNBUFFERED"] = "1"
    if listen is not None:
        env["LISTEN_FDS"] = "1"
        env["LISTEN_FDNAMES"] = name
        env["HOST"], env["PORT"] = listen[0], str(listen[1])
    return env


def describe_status(status: int) -> tuple[int | None, str | None]:
    """waitpid status -> (exit code, signal name)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return None, signal.Signals(sig).name
        except ValueError:
            return None, f"SIG{sig}"
    return os.waitstatus_to_exitcode(status), None
