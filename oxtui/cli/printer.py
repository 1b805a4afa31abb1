"""Prints merged, prefixed log lines for `oxtui run` and `oxtui logs`.

`oxtui run` prints from a thread of its own through a bounded queue: a slow terminal (or a paused
pager) drops lines on screen and says so, but never stalls the engine; the files keep every line.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

from ..batchqueue import BatchQueue
from ..protocol import STREAM_MARK, LogBatch, format_ts

COLOURS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)


def use_colour(stream: TextIO) -> bool:
    return "NO_COLOR" not in os.environ and stream.isatty()


class Formatter:
    def __init__(self, colour: bool, width: int = 10, timestamps: bool = False):
        self.colour, self.width, self.timestamps = colour, width, timestamps
        self._codes: dict[str, int] = {}

    def prefix(self, source: str, stream: str, ts: float) -> str:
        process = source.split(".", 1)[0]
        self.width = max(self.width, len(source))
        mark = STREAM_MARK[stream]
        text = f"{source:<{self.width}} {mark} "
        if self.timestamps:
            text = f"{format_ts(ts)} {text}"
        if not self.colour:
            return text
        code = self._codes.setdefault(process, COLOURS[len(self._codes) % len(COLOURS)])
        if stream == "err":
            return f"\x1b[{code}m{text[:-2]}\x1b[31m{mark}\x1b[0m "
        if stream == "event":
            return f"\x1b[{code}m{text[:-2]}\x1b[2m{mark} "
        return f"\x1b[{code}m{text}\x1b[0m"

    def raw(self, source: str, stream: str, ts: float, data: bytes) -> bytes:
        """The same as lines(), on the raw bytes of a batch: no decoding on the way to the terminal."""
        prefix = self.prefix(source, stream, ts).encode()
        end = b"\x1b[0m\n" if self.colour and stream == "event" else b"\n"
        return prefix + data.replace(b"\n", end + prefix) + end

    def lines(self, source: str, stream: str, ts: float, lines: tuple[str, ...] | list[str]) -> str:
        prefix = self.prefix(source, stream, ts)
        end = "\x1b[0m\n" if self.colour and stream == "event" else "\n"
        # One join per batch, not a Python step per line: a child printing flat out stays cheap.
        return prefix + (end + prefix).join(lines) + end


class Printer:
    """Subscribes to the engine's log batches and prints them from a writer thread.

    The engine side only appends to a deque; it wakes the thread only when the thread sleeps on an
    empty queue. Once awake, the thread collects for a few milliseconds and writes everything at
    once, so a flood costs one write per tick and an idle engine costs nothing.
    """

    INTERVAL = 0.02

    def __init__(self, out: TextIO = sys.stdout, max_bytes: int = 4 * 1024 * 1024):
        self.out = out
        self.fmt = Formatter(use_colour(out))
        self.queue = BatchQueue(max_bytes)
        self._sleeping = False
        self._wake = threading.Event()
        self._closing = False
        self._muted = False
        self._thread = threading.Thread(target=self._write, name="oxtui printer", daemon=True)
        self._thread.start()

    def on_batch(self, batch: LogBatch) -> None:
        if self._muted:
            return
        self.queue.add(batch)
        if self._sleeping:
            self._sleeping = False
            self._wake.set()

    def mute(self) -> None:
        """Nothing more to write (the terminal is gone): batches are dropped from now on."""
        self._muted = True

    def close(self, timeout: float = 2.0) -> None:
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)

    def _write(self) -> None:
        while True:
            if not self.queue and not self._closing:
                self._sleeping = True
                if not self.queue:       # re-check: a batch may have come before the flag was seen
                    self._wake.wait()
                self._wake.clear()
                self._sleeping = False
            time.sleep(self.INTERVAL)
            batches, n = self.queue.take()
            chunks = [self.fmt.raw(b.source, b.stream, b.ts, b.data) for b in batches]
            if n:
                chunks.insert(0, f"[oxtui] {n} lines not shown (the terminal was too slow; "
                                 "they are in the log files)\n".encode())
            if chunks:
                self._emit(b"".join(chunks))
            if self._closing and not self.queue:
                return

    def _emit(self, data: bytes) -> None:
        try:
            out = getattr(self.out, "buffer", None)
            if out is None:
                self.out.write(data.decode("utf-8", "replace"))
                self.out.flush()
            else:
                out.write(data)
                out.flush()
        except (BrokenPipeError, OSError, ValueError):
            time.sleep(0.1)   # stdout is gone (pipe closed): keep supervising, the files have it all
