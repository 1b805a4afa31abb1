"""Moving to and from oxtui: `oxtui import pm2|procfile` writes an oxfile, `oxtui export kubernetes|systemd`
writes what an app needs when it outgrows one machine. What does not carry over is said, never dropped."""


class PortError(Exception):
    """A file that cannot be imported or exported; the message is one line naming it and the fix."""
