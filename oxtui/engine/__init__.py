"""The supervisor engine: an asyncio library with no UI import."""

from .engine import AlreadyRunning, Engine, EngineError
from .errors import CommandError
from .logs import LogBatch

__all__ = ["AlreadyRunning", "CommandError", "Engine", "EngineError", "LogBatch"]
