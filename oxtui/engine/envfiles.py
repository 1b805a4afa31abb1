"""`env_file`: variables from .env files (python-dotenv's syntax), read at every start and reload, so
editing one and reloading is how a secret rotates. Their values are secrets: only their names ever
leave the engine (status, the TUI's details screen)."""

from __future__ import annotations

from pathlib import Path


def read_env_files(paths: tuple[Path, ...]) -> tuple[tuple[str, str], ...]:
    """Later files win; a file gone since `check` is skipped (the instance still starts, and
    `oxtui check` names the missing file)."""
    if not paths:
        return ()
    from dotenv import dotenv_values
    out: dict[str, str] = {}
    for path in paths:
        try:
            out.update({k: v for k, v in dotenv_values(path).items() if v is not None})
        except OSError:
            continue
    return tuple(out.items())


class EnvNames:
    """The names a process's instances get from `env` and its env files. Snapshots run at 10 Hz: the
    files are parsed again only when one of them changed (or the config did)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._names: list[str] = []

    def of(self, env: tuple[tuple[str, str], ...], files: tuple[Path, ...]) -> list[str]:
        key: tuple = (env, files)
        for path in files:
            try:
                st = path.stat()
                key += ((st.st_mtime_ns, st.st_size),)
            except OSError:
                key += (None,)
        if key != self._key:
            self._key = key
            self._names = sorted({k for k, _ in env} | {k for k, _ in read_env_files(files)})
        return list(self._names)
