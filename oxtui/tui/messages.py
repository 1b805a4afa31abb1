"""The messages the app gets from the engine's side (a command's reply, a hand-over's, the engine gone):
posted from the client's thread, handled on the UI's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.message import Message

from ..protocol import Reply


class CommandDone(Message):
    def __init__(self, label: str, reply: Reply, describe: Callable[[Any], tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.label = label
        self.reply = reply
        self.describe = describe


class HandedOver(Message):
    """The answer to q, b: the engine moved to a background process, or why it could not."""

    def __init__(self, reply: Reply) -> None:
        super().__init__()
        self.reply = reply


class EngineStopped(Message):
    pass


class EngineWoke(Message):
    """The client has something to take: "snapshot", "logs" or "finished" (EngineClient.set_wake)."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
