"""Exceptions the engine raises to its callers."""


class CommandError(Exception):
    """A command that cannot be carried out; the message says why and what to do."""
