"""A closed stdout ends a printing verb quietly, as with any Unix tool (`oxtui logs | head -2`).

Writes to stdout raise StdoutClosed instead of BrokenPipeError, so a reader that went away is
never mistaken for a lost control socket (also an OSError) and never prints a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class StdoutClosed(Exception):
    pass


class _Guarded:
    def __init__(self, inner: TextIO):
        self._inner = inner

    def write(self, text: str) -> int:
        try:
            return self._inner.write(text)
        except BrokenPipeError:
            raise StdoutClosed() from None

    def flush(self) -> None:
        try:
            self._inner.flush()
        except BrokenPipeError:
            raise StdoutClosed() from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def guard() -> None:
    if not isinstance(sys.stdout, _Guarded) and sys.stdout is not None:
        sys.stdout = _Guarded(sys.stdout)


def closed() -> int:
    """After StdoutClosed: point stdout at /dev/null so the interpreter's last flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
    return 0
