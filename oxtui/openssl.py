"""Keep OpenSSL out of an engine that does not use it.

An engine is a long-lived process per oxfile; asyncio imports `ssl` and hashlib imports `_hashlib`
whether or not anything uses them, and both map libcrypto and libssl and initialise them: 4.5 MB of
RSS (1.5 MB of it private) for an engine that never opens a TLS connection. The engine's process
(`oxtui run`) marks them as missing before anything is imported: asyncio then runs without TLS
support and hashlib falls back to its builtin sha256 (the same digests). What needs them calls
`allow()` first: a webhook (https), the Prometheus exporter (prometheus_client imports ssl), `watch`
(watchfiles runs on anyio, whose asyncio backend imports ssl).
"""

from __future__ import annotations

import sys

MODULES = ("ssl", "_ssl", "_hashlib")


def block() -> None:
    """Before the engine's imports: `import ssl` fails as if Python had been built without it."""
    for name in MODULES:
        sys.modules.setdefault(name, None)   # type: ignore[arg-type]


def allow() -> None:
    """Before importing what needs TLS: the next `import ssl` loads it for real."""
    for name in MODULES:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
