"""`oxtui save`: write running instance counts back into the oxfile, keeping the file as people wrote it.

tomlkit edits the parsed document in place, so every comment, blank line, key order and quoting
style survives; only the `instances` values change (or one is added where the key was absent).
A file changed on disk since the engine read it is never overwritten: the edit would silently
drop or resurrect someone else's change.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .config import digest


class SaveError(Exception):
    """The oxfile cannot be saved; the message says why and what to do."""


def save_instances(path: Path, expected_digest: str, counts: dict[str, int],
                   cpus: int) -> tuple[dict[str, tuple[int | str, int]], str]:
    """Write `counts` ({process: instances}) into the oxfile at `path`.

    Returns ({process: (what the file said, what it says now)} for the changed ones, new digest).
    A process whose file value is "max" keeps it while the count equals `cpus`.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SaveError(f"{path}: cannot be read ({e.strerror}); nothing saved") from None
    if expected_digest and digest(raw) != expected_digest:
        raise SaveError(f"{path} changed on disk since the engine read it; nothing saved. Load it first "
                        f"(`oxtui apply -c {path}`), or edit the instance counts by hand")
    import tomlkit  # only here: the engine imports this module for digest() alone
    doc = tomlkit.parse(raw.decode("utf-8"))
    procs = doc.get("processes")
    changed: dict[str, tuple[int | str, int]] = {}
    for name, n in counts.items():
        table = procs.get(name) if procs is not None else None
        if table is None:
            raise SaveError(f"{path}: [processes.{name}] is not in the file any more; nothing saved")
        old = table.get("instances", 1)
        old = old.unwrap() if hasattr(old, "unwrap") else old
        if old == n or (old == "max" and n == cpus):
            continue
        table["instances"] = n
        changed[name] = (old, n)
    if not changed:
        return {}, digest(raw)
    text = tomlkit.dumps(doc).encode("utf-8")
    _replace(path, text)
    return changed, digest(text)


def _replace(path: Path, data: bytes) -> None:
    """Write beside the file and rename over it: a crash mid-write never leaves half an oxfile."""
    st = path.stat()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, st.st_mode & 0o7777)
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            pass
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SaveError(f"{path}: cannot be written ({e.strerror}); nothing saved") from None
