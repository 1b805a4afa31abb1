"""`${VAR}` in an oxfile's values: the environment oxtui runs in, read when the file is loaded.

    ${VAR}            its value; an error naming the key when it is not set (but see command)
    ${VAR:-default}   its value, or the default when it is unset or empty
    $${VAR}           a literal ${VAR}

In `command` a variable that is not set is left as written, for the instance's shell to expand from
the variables it gets (env, env_file): `node app.js --port ${PORT}` keeps working. `$VAR` without
braces is never touched: it is always the shell's. Under systemd the environment is the unit's (its
PATH only), so secrets belong in env_file there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PATTERN = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _where(path: tuple[str, ...]) -> str:
    """[processes.api] env, as an error names a key."""
    if len(path) >= 3 and path[0] == "processes":
        table, rest = ".".join(path[:2]), path[2:]
        while len(rest) > 1 and rest[0] in ("ready", "health", "schedule", "reload", "notify"):
            table, rest = f"{table}.{rest[0]}", rest[1:]
        return f"[{table}] {rest[0]}"
    return f"[{path[0]}] {path[1]}" if len(path) >= 2 else path[0]


def interpolate(data: Any, environ: Mapping[str, str], file: str, errors: list[str],
                path: tuple[str, ...] = ()) -> Any:
    """A copy of the parsed TOML with ${...} replaced; each problem appended to errors (one line)."""
    if isinstance(data, dict):
        return {k: interpolate(v, environ, file, errors, (*path, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, environ, file, errors, path) for v in data]
    if not isinstance(data, str) or "${" not in data:
        return data
    is_command = len(path) == 3 and path[0] == "processes" and path[2] == "command"

    def one(m: re.Match[str]) -> str:
        escaped, name, default = m.groups()
        if escaped:
            return m.group(0)[1:]
        value = environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:
            return value
        if is_command:
            return m.group(0)          # the instance's shell expands it
        errors.append(f"{file}: {_where(path)}: ${{{name}}} is not set in the environment oxtui runs in; set it, "
                      f"or write ${{{name}:-default}}")
        return ""
    return PATTERN.sub(one, data)
