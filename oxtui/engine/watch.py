"""`watch = [...]`: a file change triggers a rolling reload of that process (never a plain restart).

watchfiles (Rust notify underneath) does the watching and the debouncing; this module turns the
oxfile's paths and globs into watch roots and a filter.
"""

from __future__ import annotations

import asyncio
import fnmatch
import glob
import os
from collections.abc import Callable
from pathlib import Path

DEFAULT_IGNORE = (".git", "node_modules", "__pycache__", "*.pyc", "*.swp", "*.swx", "*~", ".#*", ".oxtui",
                  ".venv", "*.log", "*.log.[0-9]*")


class WatchSpec:
    def __init__(self, base: Path, entries: tuple[str, ...], ignore: tuple[str, ...], extra_ignore: tuple[Path, ...]):
        self.plain: list[Path] = []        # files or folders: any change under them counts
        self.patterns: list[str] = []      # absolute globs: only matching paths count
        self.roots: list[Path] = []        # what watchfiles watches
        for entry in entries:
            full = os.path.normpath(str(base / entry))
            if glob.has_magic(full):
                self.patterns.append(full)
                self.roots.append(_glob_root(full))
            else:
                self.plain.append(Path(full))
                self.roots.append(Path(full))
        self.ignore = DEFAULT_IGNORE + tuple(ignore)
        self.ignore_dirs = tuple(str(p) for p in extra_ignore)
        self.base = base

    def wanted(self, path: str) -> bool:
        if any(path == d or path.startswith(d + os.sep) for d in self.ignore_dirs):
            return False
        rel = os.path.relpath(path, self.base)
        for pattern in self.ignore:
            if fnmatch.fnmatch(rel, pattern) or any(fnmatch.fnmatch(part, pattern) for part in Path(rel).parts):
                return False
        return (any(path == str(r) or path.startswith(str(r) + os.sep) for r in self.plain)
                or any(fnmatch.fnmatch(path, p) for p in self.patterns))


def _glob_root(pattern: str) -> Path:
    """The deepest folder of a glob that has no wildcard in it."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path("/")


async def watch_loop(spec: WatchSpec, debounce: float, on_change: Callable[[list[str]], None],
                     on_error: Callable[[str], None]) -> None:
    from ..openssl import allow
    allow()        # watchfiles runs on anyio, whose asyncio backend imports ssl (openssl.py)
    from watchfiles import awatch

    roots = [str(r) for r in dict.fromkeys(spec.roots) if r.exists()]
    missing = [str(r) for r in spec.roots if not r.exists()]
    if missing:
        on_error(f"watch: {', '.join(missing)} does not exist; not watched")
    if not roots:
        return
    try:
        async for changes in awatch(*roots, watch_filter=lambda _c, p: spec.wanted(p),
                                    debounce=max(50, int(debounce * 1000)), step=50, recursive=True,
                                    ignore_permission_denied=True):
            paths = sorted({p for _, p in changes})
            if paths:
                on_change(paths)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # an inotify limit or a vanished folder must not end supervision
        on_error(f"watch stopped: {e}")
