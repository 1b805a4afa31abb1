"""The supervisor engine: an asyncio library with no UI import."""

from .engine import Engine
from .errors import AlreadyRunning, CommandError, EngineError
from .logs import LogBatch

__all__ = ["AlreadyRunning", "CommandError", "Engine", "EngineError", "LogBatch"]
