"""An instance's command line: the argv it is exec'd with, its environment, and what the spawner helper
is sent.

A command is exec'd directly when it is a plain word list (the PID shown is the program's own and no
shell start is paid); anything with shell syntax runs as `/bin/sh -c 'exec ...'`.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..oxfile.config import RunAs

# A command made of these characters only (quotes and escapes are shlex's job) needs no shell.
_PLAIN_RE = re.compile(r"""[A-Za-z0-9_./:,@%+=\-\s'"]+""")

_CONTROL_TOKENS = {";", "&", "&&", "|", "||", "(", ")", ";;", "|&"}
_FIRST_WORD_NO_EXEC = {"if", "for", "while", "until", "case", "{", "cd", "exec", "export", "set", "source", "."}
_ASSIGN_RE = re.compile(r"""^((?:[A-Za-z_]\w*=(?:'[^']*'|"[^"]*"|[^\s'"]*)\s+)*)(.*)$""", re.DOTALL)


@functools.lru_cache(maxsize=256)
def _which(program: str, cwd: str, path: str) -> str | None:
    """Where exec will find `program` (None: let the child search and report "not found")."""
    if "/" in program:
        return os.path.join(cwd, program)
    return shutil.which(program, path=path)


def command_argv(command: str) -> list[str]:
    """argv for the instance: the words themselves for a plain command, else the shell."""
    return list(_argv(command))


@functools.lru_cache(maxsize=256)
def _argv(command: str) -> tuple[str, ...]:
    # every instance of a process has the same command: worked out once, not at every start
    if _PLAIN_RE.fullmatch(command):
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
        if words and "=" not in words[0]:
            return tuple(words)
    return ("/bin/sh", "-c", exec_form(command))


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
    assert m is not None        # the pattern matches any text: both groups may be empty
    assigns, rest = m.group(1), m.group(2)
    first = rest.split(None, 1)[0] if rest.strip() else ""
    if not first or first in _FIRST_WORD_NO_EXEC:
        return command
    # `A=1 exec prog` exports A to prog in dash and bash alike.
    return f"{assigns}exec {rest}"


def request(command: str, cwd: str, env: dict[str, str], listen_fd: int | None, run_as: RunAs | None) -> dict:
    """What the helper needs to start a process (the fds travel beside it)."""
    argv = command_argv(command)
    req: dict[str, Any] = {"argv": argv, "path": _which(argv[0], cwd, env.get("PATH", os.defpath)), "cwd": cwd, "env": env,
           "listen": listen_fd is not None}
    if run_as is not None:
        req.update(uid=run_as.uid, gid=run_as.gid, groups=list(run_as.groups))
    return req


# The engine's own service variables: an instance that saw NOTIFY_SOCKET would speak for the engine
# (gunicorn sends its own READY=1), JOURNAL_STREAM describes the engine's stdout, not the instance's pipe.
ENGINE_ONLY = ("LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def instance_env(base: dict[str, str], name: str, slot: int, extra: tuple[tuple[str, str], ...],
                 listen: tuple[str, int] | None, user: tuple[str, str] | None = None,
                 canary: bool = False) -> dict[str, str]:
    """An instance's environment; `user` (name, home) when it runs as another user."""
    env = {k: v for k, v in base.items() if not k.startswith(ENGINE_ONLY)}
    env.update(extra)
    env["OXTUI_PROCESS"] = name
    env["OXTUI_INSTANCE"] = str(slot)
    env["NODE_APP_INSTANCE"] = str(slot)
    env["PYTHONUNBUFFERED"] = "1"
    if listen is not None:
        env["LISTEN_FDS"] = "1"
        env["LISTEN_FDNAMES"] = name
        env["HOST"], env["PORT"] = listen[0], str(listen[1])
    if user is not None:
        env.update(HOME=user[1], USER=user[0], LOGNAME=user[0])
    if canary:
        env["OXTUI_CANARY"] = "1"
    return env
