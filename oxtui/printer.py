"""Prints merged, prefixed log lines for `oxtui run` and `oxtui logs`.

`oxtui run` prints from a thread of its own through a bounded queue: a slow terminal (or a paused
pager) drops lines on screen and says so, but never stalls the engine; the files keep every line.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from typing import TextIO

from .engine.logs import STREAM_MARK, LogBatch, format_ts

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

    def lines(self, source: str, stream: str, ts: float, lines: tuple[str, ...] | list[str]) -> str:
        prefix = self.prefix(source, stream, ts)
        end = "\x1b[0m\n" if self.colour and stream == "event" else "\n"
        return "".join(prefix + line + end for line in lines)


class Printer:
    """Subscribes to the engine's log batches and prints them from a writer thread."""

    def __init__(self, out: TextIO = sys.stdout, max_batches: int = 20_000):
        self.out = out
        self.fmt = Formatter(use_colour(out))
        self._q: queue.Queue[LogBatch | None] = queue.Queue(max_batches)
        self._dropped = 0
        self._thread = threading.Thread(target=self._write, name="oxtui printer", daemon=True)
        self._thread.start()

    def on_batch(self, batch: LogBatch) -> None:
        try:
            self._q.put_nowait(batch)
        except queue.Full:
            self._dropped += len(batch.lines)

    def close(self, timeout: float = 2.0) -> None:
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _write(self) -> None:
        while True:
            batch = self._q.get()
            if batch is None:
                break
            text = self.fmt.lines(batch.source, batch.stream, batch.ts, batch.lines)
            if self._dropped:
                n, self._dropped = self._dropped, 0
                text = f"[oxtui] {n} lines not shown (the terminal was too slow; they are in the log files)\n" + text
            try:
                self.out.write(text)
                if self._q.empty():
                    self.out.flush()
            except (BrokenPipeError, OSError):
                time.sleep(0.1)   # stdout is gone (pipe closed): keep supervising, the files have it all
