"""`oxtui logs` with no engine running: the lines are read back from the log files the engine wrote
(`[logs] dir`, NAME.log and its rotated NAME.log.1 or NAME.log.1.gz ...), so the output of a crash that
ended with `oxtui down`, or before a reboot, is still one command away. The files hold the same lines
as the engine's ring, each as "YYYY-MM-DD HH:MM:SS.mmm SOURCE MARK TEXT" (engine/logs.py writes them).
With `[logs] files = false` they are read from the journal instead (`journalctl OXTUI_OXFILE=...`)."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from ..oxfile.config import Config
from ..protocol import STREAM_MARK

STREAM_OF = {mark: stream for stream, mark in STREAM_MARK.items()}
LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) (\S+) ([|!~]) ?(.*)")
BLOCK = 64 * 1024

Line = tuple[int, float, str, str, str]      # as the engine answers: seq, time, source, stream, text


class NoSuchProcess(Exception):
    pass


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """A file's lines, last first, read a block at a time from its end (a 10 MB file costs no more
    than the lines asked for); a gzipped one whole."""
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as z:
                yield from reversed([line for line in z.read().split(b"\n") if line])
        except (OSError, EOFError):
            pass
        return
    try:
        f = open(path, "rb")    # noqa: SIM115 (closed by the with below; a missing file is no lines)
    except OSError:
        return
    with f:
        end = f.seek(0, os.SEEK_END)
        tail = b""
        while end > 0:
            start = max(0, end - BLOCK)
            f.seek(start)
            block = f.read(end - start) + tail
            end = start
            parts = block.split(b"\n")
            tail = parts[0]                     # may be the end of a line that starts in the block before
            for part in reversed(parts[1:]):
                if part:
                    yield part
        if tail:
            yield tail


def _parse(raw: bytes) -> Line | None:
    m = LINE.fullmatch(raw.decode("utf-8", "replace"))
    if m is None:
        return None
    try:
        # the middle of the millisecond written: printed again (which truncates), it reads as it was written
        ts = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + (int(m.group(2)) + 0.5) / 1000
    except (ValueError, OverflowError):
        return None
    return (0, ts, m.group(3), STREAM_OF[m.group(4)], m.group(5))


def read(config: Config, name: str | None, n: int, streams: list[str] | None = None,
         since: float | None = None) -> list[Line]:
    """Up to n lines, newest last, of NAME (a process, an instance such as web.0, or all)."""
    instance = None
    names = [p.name for p in config.processes]
    if name not in (None, "all") and name not in names:
        m = re.fullmatch(r"(.+)\.(\d+)", name)
        if m is None or m.group(1) not in names:
            raise NoSuchProcess(f"no process named {name!r} in {config.path} (processes: {', '.join(names)}, or all)")
        name, instance = m.group(1), m.group(2)
    if not config.logs.files:
        return _from_journal(config, name, instance, n, streams, since)
    files = names + ["oxtui"] if name in (None, "all") else [name]
    found: list[Line] = []
    for process in files:
        mine: list[Line] = []
        paths = [config.logs.dir / f"{process}.log"] + [config.logs.dir / f"{process}.log.{i}{gz}"
                                                        for i in range(1, config.logs.keep + 1) for gz in ("", ".gz")]
        for line in (line for path in paths for line in map(_parse, _lines_backwards(path)) if line):
            if len(mine) >= n or (since is not None and line[1] < since):
                break
            if (streams and line[3] not in streams) or (instance is not None and line[2] != f"{process}.{instance}"):
                continue
            mine.append(line)
        found.extend(reversed(mine))
    found.sort(key=lambda line: line[1])     # stable: a file's own order is kept for equal times
    return found[len(found) - n:] if n else []


def _from_journal(config: Config, name: str | None, instance: str | None, n: int, streams: list[str] | None,
                  since: float | None) -> list[Line]:
    """The workers' lines the engine sent to the journal (engine/journald.py), newest last."""
    match = [f"OXTUI_OXFILE={config.path}"] + ([f"OXTUI_PROCESS={name}"] if name not in (None, "all") else []) \
        + ([f"OXTUI_INSTANCE={instance}"] if instance is not None else []) \
        + ([f"OXTUI_STREAM={'stderr' if streams == ['err'] else 'stdout'}"] if streams and len(streams) == 1 else [])
    cmd = ["journalctl", "--no-pager", "-o", "json", "-n", str(n), *match] \
        + (["--since", f"@{int(since)}"] if since is not None else [])
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NoSuchProcess(f"[logs] files = false: the lines are in the journal, and journalctl failed ({e})") \
            from None
    out: list[Line] = []
    for row in r.stdout.splitlines():
        try:
            entry = json.loads(row)
            message = entry["MESSAGE"]
            text = bytes(message).decode("utf-8", "replace") if isinstance(message, list) else message
            out.append((0, int(entry["__REALTIME_TIMESTAMP"]) / 1e6,
                        f"{entry['OXTUI_PROCESS']}.{entry['OXTUI_INSTANCE']}",
                        "err" if entry.get("OXTUI_STREAM") == "stderr" else "out", text))
        except (ValueError, KeyError, TypeError):
            continue
    return out[len(out) - n:] if n else []
