"""oxtui: a process manager with a terminal UI: N instances on one port, restarts, rolling reloads."""

__version__ = "0.1.0"
