"""Where an engine's control socket and lock live: one pair per oxfile, named from its absolute path.

The folder must be the same for every way an engine of one user can be started or looked for: a
systemd unit (no login session, no $XDG_RUNTIME_DIR), a `User=` system unit, an SSH login shell
(with $XDG_RUNTIME_DIR), a cron job. So it depends on the uid alone, never on the environment:

    root       /run/oxtui/                  (tmpfs, root's own)
    any other  /tmp/oxtui-UID/              (mode 0700, must be owned by that user)

OXTUI_RUNTIME_DIR overrides both (tests; a system with an unusual /tmp). Age-based /tmp cleaners
(systemd-tmpfiles) skip a folder that holds a BSD lock, so a running engine keeps a shared lock on
the folder (see `hold_dir`): its socket is never swept away under it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
from pathlib import Path


class RuntimeDirError(Exception):
    pass


def base_dir(uid: int | None = None) -> Path:
    override = os.environ.get("OXTUI_RUNTIME_DIR")
    if override:
        return Path(override)
    uid = os.getuid() if uid is None else uid
    if uid == 0 and os.path.isdir("/run") and os.access("/run", os.W_OK):
        return Path("/run/oxtui")
    # imported here: every CLI verb reads this module, and tempfile was a tenth of a verb's start
    import tempfile
    return Path(tempfile.gettempdir()) / f"oxtui-{uid}"


def runtime_dir() -> Path:
    d = base_dir()
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeDirError(f"{d}: cannot create the control folder ({e.strerror}); "
                              "set OXTUI_RUNTIME_DIR to a folder you own") from None
    st = d.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise RuntimeDirError(f"{d}: exists but is not a folder owned by you; remove it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(d, 0o700)
    return d


def hold_dir() -> int:
    """A shared flock on the runtime folder for as long as the returned fd stays open."""
    fd = os.open(runtime_dir(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def key_for(oxfile: Path) -> str:
    return hashlib.sha256(str(oxfile.resolve()).encode()).hexdigest()[:16]


def socket_path(oxfile: Path) -> Path:
    return runtime_dir() / f"{key_for(oxfile)}.sock"


def socket_paths(oxfile: Path) -> list[Path]:
    """Where the engine of this oxfile can be reached: this user's folder; for root, when none is there,
    every other user's folder that holds a socket for it (`oxtui ls` lists those engines, and root's
    verbs must reach them: an engine of `oxtui up` run by web1, or of a `User=` unit)."""
    mine = socket_path(oxfile)
    if os.getuid() != 0 or mine.exists() or os.environ.get("OXTUI_RUNTIME_DIR"):
        return [mine]
    return [mine] + [sock for d in all_dirs() if d != mine.parent and (sock := d / mine.name).exists()]


def lock_path(oxfile: Path) -> Path:
    return runtime_dir() / f"{key_for(oxfile)}.lock"


def journal_path(oxfile: Path, kind: str) -> Path:
    """The engine's history on disk (engine/journal.py): kind "state" or "events"."""
    return runtime_dir() / f"{key_for(oxfile)}.{kind}"


def all_dirs() -> list[Path]:
    """Every runtime folder this user may look into: its own, and for root every user's."""
    mine = base_dir()
    if os.getuid() != 0 or os.environ.get("OXTUI_RUNTIME_DIR"):
        return [mine] if mine.is_dir() else []
    found = [mine] if mine.is_dir() else []
    try:
        import tempfile
        for entry in sorted(Path(tempfile.gettempdir()).glob("oxtui-*")):
            if entry.is_dir() and not entry.is_symlink() and entry not in found:
                found.append(entry)
    except OSError:
        pass
    return found


def lock_is_held(lock: Path) -> bool:
    """True while an engine holds this lock file (the flock is what counts, not the pid inside)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def write_lock(fd: int, oxfile: Path) -> None:
    """The lock file names its engine (pid, then oxfile) so `oxtui ls` can describe one that does not answer."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{oxfile}\n".encode(), 0)


def read_lock(lock: Path) -> tuple[str, str | None]:
    """(pid, oxfile) as the lock file says; ("?", None) when unreadable."""
    try:
        text = lock.read_text(errors="replace")
    except OSError:
        return "?", None
    lines = text.splitlines()
    return (lines[0].strip() or "?") if lines else "?", (lines[1] if len(lines) > 1 else None)


ENGINE_OUT = "oxtui-engine.out"     # a background engine's own stdout and stderr, in the log folder


def open_private(path: Path):
    """Append to a file only its owner can read (0600 like every log file), fixing an older file's mode."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")
