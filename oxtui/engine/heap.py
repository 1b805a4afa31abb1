"""Hand freed heap memory back to the kernel now and then (glibc's malloc_trim).

Why: capture reads a busy pipe 1 MiB at a time and makes a prefixed copy of each chunk; a TUI
being fed makes more. glibc raises its mmap threshold after the first such block is freed, so the
next ones come from the heap, and the free pages between blocks that stay live are kept resident.
Measured with `bench/soak.py --trace`: the engine's traced Python memory stayed at 12 MB while its
RSS rose by 56 MB in 4 minutes of churn. `malloc_trim(0)` returns every whole free page of every
arena (MADV_DONTNEED), without moving anything. It costs a few milliseconds on a busy heap, so
it runs at most every TRIM_EVERY seconds, on the metrics sampler's thread, never on the loop.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

TRIM_EVERY = 30.0

_malloc_trim: Any
try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim     # glibc; musl has none and needs none
except (OSError, AttributeError):
    _malloc_trim = None


class Trimmer:
    def __init__(self, every: float = TRIM_EVERY) -> None:
        self.every = every
        self._last = time.monotonic()

    def maybe_trim(self) -> bool:
        """Trim if the last trim is at least `every` seconds old; True when it did."""
        now = time.monotonic()
        if _malloc_trim is None or now - self._last < self.every:
            return False
        self._last = now
        _malloc_trim(0)
        return True
