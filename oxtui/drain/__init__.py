"""Lossless shutdown for servers that lose requests on keep-alive connections when they stop.

Some servers close idle keep-alive connections the moment they get SIGTERM. A client may have sent
its next request on such a connection already: it is lost. The drain here is the one the manual (docs/apps.md) asks of
every app: on SIGTERM stop accepting, answer every request that still arrives with
`Connection: close` for a short grace (so clients move to another instance cleanly), then shut
down. The engine never imports this package; instances run it (docs/apps.md, "Python servers").
"""

import os

# Seconds between SIGTERM and the server's own shutdown. A client that sends within it gets an
# answer with Connection: close; one idle for the whole grace is closed at its end.
GRACE = float(os.environ.get("OXTUI_DRAIN_GRACE", "1.0"))
