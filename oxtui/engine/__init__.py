"""The supervisor engine: an asyncio library with no UI import."""

from .engine import Engine, EngineError
from .errors import CommandError
from .logs import LogBatch

__all__ = ["CommandError", "Engine", "EngineError", "LogBatch"]
