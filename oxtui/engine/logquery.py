"""Which log lines a reader wants (`oxtui logs`, `-f`, `--flush`): processes or one instance, streams,
a time from which on. Made from a request and checked, then applied to log batches."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import LogBatch
from .errors import UsageError

if TYPE_CHECKING:
    from .group import ProcessGroup


class Named(Protocol):
    """What a query needs of an engine: its processes by name (the control server's host is one)."""

    @property
    def groups(self) -> Mapping[str, ProcessGroup]: ...
    def targets(self, name: Any) -> list[ProcessGroup]: ...


STREAMS = ("out", "err", "event")


@dataclass(frozen=True)
class LogQuery:
    names: frozenset[str] | None          # None: every process and the engine's own lines
    instance: int | None = None           # one instance (web.0) of the one process named
    streams: frozenset[str] | None = None
    since: float | None = None            # epoch seconds

    @classmethod
    def of(cls, engine: Named, req: dict[str, Any]) -> LogQuery:
        name, instance = req.get("name"), None
        if isinstance(name, str) and name not in engine.groups and (m := re.fullmatch(r"(.+)\.(\d+)", name)) \
                and m.group(1) in engine.groups:
            name, instance = m.group(1), int(m.group(2))   # web.0: an instance (a process may be named "api.v2")
        names = None if name in (None, "all") else frozenset(g.name for g in engine.targets(name))
        streams = req.get("streams")
        if streams is not None and (not isinstance(streams, list) or not set(streams) <= set(STREAMS)):
            raise UsageError(f"logs: streams are {', '.join(STREAMS)} (got {streams!r})")
        since = req.get("since")
        if since is not None and not isinstance(since, (int, float)):
            raise UsageError("logs: since must be a time in seconds")
        return cls(names, instance, frozenset(streams) if streams else None, since)

    def wants(self, batch: LogBatch) -> bool:
        if self.names is not None and batch.process not in self.names:
            return False
        if self.instance is not None and batch.instance not in (self.instance, None):
            return False          # the process's own event lines (reload steps) stay with its instances
        if self.streams is not None and batch.stream not in self.streams:
            return False
        return self.since is None or batch.ts >= self.since
