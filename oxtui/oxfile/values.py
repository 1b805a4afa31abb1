"""Parsers for the value kinds an oxfile uses: sizes, signals, addresses, CPU counts (pure functions).

Each raises ValueError with a message saying what is allowed; config.py turns it into a line that
names the file, the table and the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
from typing import Any

SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_size(value: Any) -> int:
    """'512M', '1G', '10MB', or a byte count. Raises ValueError with the allowed forms."""
    if isinstance(value, bool):
        raise ValueError("must be a size like \"512M\", \"1G\" or a number of bytes")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"must be a positive size (got {value})")
        return value
    if isinstance(value, str):
        m = SIZE_RE.match(value)
        if m:
            n = int(float(m.group(1)) * SIZE_UNITS[m.group(2).upper()])
            if n > 0:
                return n
    raise ValueError(f"must be a size like \"512M\", \"1G\" or a number of bytes (got {value!r})")


def parse_signal(value: Any) -> signal.Signals:
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        try:
            return signal.Signals[name]
        except KeyError:
            pass
    raise ValueError(f"must be a signal name like \"SIGTERM\", \"SIGINT\" or \"SIGQUIT\" (got {value!r})")


def parse_address(value: Any) -> tuple[str, int]:
    """'127.0.0.1:3000', '[::1]:3000', '0.0.0.0:80', 'localhost:3000'."""
    hint = 'must be "HOST:PORT", e.g. "127.0.0.1:3000" or "[::1]:3000"'
    if not isinstance(value, str):
        raise ValueError(f"{hint} (got {value!r})")
    text = value.strip()
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", text) or re.match(r"^([^:\[\]]+):(\d+)$", text)
    if not m:
        raise ValueError(f"{hint} (got {value!r})")
    host, port = m.group(1), int(m.group(2))
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535 (got {port})")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{hint}; the host must be an IP address or localhost (got {host!r})") from None
    return ("127.0.0.1" if host == "localhost" else host), port


def program_of(command: str) -> str:
    """The program a command runs: `node` for `NODE_ENV=x node app.js`, `gunicorn` for `exec gunicorn ...`."""
    import shlex
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for w in words:
        if w == "exec" or ("=" in w and not w.startswith(("/", "."))):
            continue
        return w
    return command


INTERVAL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
INTERVAL_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(value: Any) -> float:
    """30, "30s", "10m", "2h", "1d", "500ms" -> seconds (> 0)."""
    hint = 'must be an interval like "30s", "10m", "2h", "1d" or a number of seconds'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := INTERVAL_RE.match(value)):
        seconds = float(m.group(1)) * INTERVAL_UNITS[m.group(2)]
    else:
        raise ValueError(f"{hint} (got {value!r})")
    if seconds < 0.1:
        raise ValueError(f"{hint}, at least 0.1s (got {value!r})")
    return seconds


def parse_surge(value: Any) -> int | str:
    """2 or "50%": how many replacements a reload starts at once (a percentage of the instances)."""
    hint = 'must be a number of instances >= 1 or a percentage like "50%"'
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+)\s*%\s*", value)) and 1 <= int(m.group(1)) <= 100:
        return f"{int(m.group(1))}%"
    raise ValueError(f"{hint} (got {value!r})")


def surge_count(spec: int | str | None, instances: int) -> int:
    """max_surge for this many instances: at least 1, at most all of them. The default (None) is half,
    at least 2: a reload of a 2- or 4-instance app takes one or two rounds, and memory peaks at 1.5x
    from 4 instances (2x for 2 or 3, which are small)."""
    if spec is None:
        n = max(2, -(-instances // 2))
    else:
        n = spec if isinstance(spec, int) else -(-instances * int(spec[:-1]) // 100)
    return max(1, min(n, max(instances, 1)))


def parse_ident(value: Any) -> str | int:
    """A user or group: a name or a numeric id."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?", value):
        return int(value) if value.isdigit() else value
    raise ValueError(f"must be a name like \"www-data\" or a numeric id (got {value!r})")
