"""Where an engine's control socket lives: one per oxfile, found from its absolute path.

$XDG_RUNTIME_DIR/oxtui/ (or a per-user folder in the temp dir), mode 0700; the socket is 0600.
Shared by the engine (which serves it) and the CLI (which connects to it).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path


class RuntimeDirError(Exception):
    pass


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base) and os.access(base, os.W_OK):
        d = Path(base) / "oxtui"
    else:
        d = Path(tempfile.gettempdir()) / f"oxtui-{os.getuid()}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise RuntimeDirError(f"{d}: cannot create the control folder ({e.strerror})") from None
    st = d.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise RuntimeDirError(f"{d}: exists but is not a folder owned by you; remove it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(d, 0o700)
    return d


def key_for(oxfile: Path) -> str:
    return hashlib.sha256(str(oxfile.resolve()).encode()).hexdigest()[:16]


def socket_path(oxfile: Path) -> Path:
    return runtime_dir() / f"{key_for(oxfile)}.sock"


def lock_path(oxfile: Path) -> Path:
    return runtime_dir() / f"{key_for(oxfile)}.lock"
