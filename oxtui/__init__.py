"""oxtui: a process manager with a terminal UI: N instances on one port, restarts, rolling reloads."""

# 0.2.0: `oxtui upgrade` (hand-over format 2). Which versions can hand over to which: docs/operating.md, "Upgrading oxtui".
__version__ = "0.2.0"
