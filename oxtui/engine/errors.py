"""Exceptions the engine raises to its callers."""


class CommandError(Exception):
    """A command that cannot be carried out; the message says why and what to do."""


class UsageError(CommandError):
    """A command asked wrongly (an unknown process name, a bad number): the CLI exits 2, as for any usage error."""


class EngineError(Exception):
    """The engine cannot start; the message says why and what to do."""


class AlreadyRunning(EngineError):
    """Another engine holds this oxfile's lock (a UI then attaches to it instead)."""
