"""Writing values into systemd unit files (`oxtui startup`, `oxtui export systemd`).

systemd splits Exec= lines on spaces, expands `$VAR` in them and `%` specifiers everywhere; an
Environment= assignment is split on spaces too but never expands `$`. Each helper quotes for one
of those places, so a path with a space, a `%` in a password or a `$` in a value arrives as written.
"""

from __future__ import annotations

import re

_NEEDS_QUOTES = re.compile(r'[\s"\'\\;]')


def _quoted(text: str) -> str:
    if _NEEDS_QUOTES.search(text) or not text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def exec_word(arg: str) -> str:
    """One word of an Exec= line: `%` and `$` doubled, quoted when it has spaces or quotes."""
    return _quoted(arg.replace("%", "%%").replace("$", "$$"))


def environment(key: str, value: str) -> str:
    """An Environment= line for one variable: `%` doubled (a specifier otherwise), `$` left alone."""
    return "Environment=" + _quoted(f"{key}={value}".replace("%", "%%"))


def plain(text: str) -> str:
    """A value systemd takes as the rest of the line (Description=, WorkingDirectory=): `%` doubled."""
    return text.replace("%", "%%")
