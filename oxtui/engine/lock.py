"""The oxfile's lock: one engine per oxfile, ever.

An flock on a file in the runtime folder (runtime.py) named from the oxfile's path, held for the
engine's whole life. The file says which pid holds it (`oxtui ls` names an engine that does not
answer). While it holds the lock the engine also holds a shared flock on the folder itself, so that
an age-based /tmp cleaner never sweeps its control socket away. A hand-over passes the lock's fd on.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..format import hint
from ..runtime import hold_dir, lock_path, write_lock


class Locked(Exception):
    """Another engine runs for this oxfile; the message names it and says what to do."""


class OxfileLock:
    def __init__(self, oxfile: Path):
        self.oxfile = oxfile
        self.fd: int | None = None
        self._dir_fd: int | None = None

    def take(self) -> None:
        fd = os.open(lock_path(self.oxfile), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").split("\n", 1)[0].strip() or "?"
            os.close(fd)
            raise Locked(f"{self.oxfile}: an engine is already running for this oxfile (pid {other}); "
                         f"see it with `{hint('status', self.oxfile)}`, stop it with "
                         f"`{hint('down', self.oxfile)}`") from None
        self.adopt(fd)

    def adopt(self, fd: int) -> None:
        """Hold a lock already taken (by the engine this one takes over from): it now names us."""
        self.fd = fd
        write_lock(fd, self.oxfile)
        if self._dir_fd is None:
            self._dir_fd = hold_dir()

    def forget(self) -> None:
        """A take-over that failed: the fd is the old engine's, not ours to close."""
        self.fd = None

    def release(self) -> None:
        for fd in (self.fd, self._dir_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self._dir_fd = None
