"""The command line: parsing, the verbs that run an engine (run, up, down, startup) and what each
verb prints. The top layer: it may use every other, nothing imports it."""

import sys

if sys.argv[1:2] == ["run"]:        # the engine's own process (`oxtui run`, and what up, startup and a
    from ..openssl import block  # hand-over start): no OpenSSL unless the oxfile needs it (openssl.py)
    block()

from .main import main

__all__ = ["main"]
