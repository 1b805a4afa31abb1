"""Every verb the engine takes, one small handler each, in one table.

The control socket, the CLI (through the socket), an embedded TUI's keys and an attached TUI's keys
all arrive at `Engine.execute`, which looks the verb up here: a script and a key press do exactly
the same thing. A handler checks its request, calls the engine's public methods, and returns the
JSON result; adding a verb is adding a function and a row.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..config import parse_signal
from .errors import CommandError

if TYPE_CHECKING:
    from .engine import Engine

Progress = Callable[[str], None] | None
Handler = Callable[["Engine", dict[str, Any], Progress], Awaitable[Any]]


def _whole(req: dict[str, Any], key: str, message: str) -> int:
    value = req.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandError(message)
    return value


async def status(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    engine.looked_at()
    return engine.snapshot()


async def scale(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    group = engine.targets(req.get("name"))[0]
    n = _whole(req, "n", "scale needs a whole number of instances, e.g. 4, +1 or -1")
    if req.get("relative"):
        n = group.target + n
    before, after = await group.scale(n)
    return {"name": group.name, "before": before, "instances": after}


async def reload(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    return await engine.reload(engine.targets(req.get("name")), progress)


async def restart(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    groups = engine.targets(req.get("name"))
    if len(groups) == 1:
        await groups[0].restart()
    else:           # all: stopped dependents first, started dependencies first
        for g in groups:
            g.refuse_during_reload("restart")
        for level in engine.stop_levels(groups):
            await asyncio.gather(*(g.stop() for g in level))
        for g in engine.in_start_order(groups):
            for w in g.workers.values():
                w.restarts += 1
            g.start()
    return {"processes": [g.name for g in groups]}


async def stop(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    groups = engine.targets(req.get("name"))
    for level in engine.stop_levels(groups):
        await asyncio.gather(*(g.stop(release=True) for g in level))
    return {"processes": [g.name for g in groups]}


async def start(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    groups = engine.targets(req.get("name"))
    for g in engine.in_start_order(groups):
        g.start()
    return {"processes": [g.name for g in groups]}


async def kill(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    group = engine.targets(req.get("name"))[0]
    try:
        sig = parse_signal(req.get("signal", "SIGTERM"))
    except ValueError as e:
        raise CommandError(f"--signal {e}") from None
    slot = _whole(req, "instance", "kill needs an instance number, e.g. `oxtui kill api 0`")
    return {"pid": group.kill(slot, sig), "signal": sig.name}


async def logs(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    name = req.get("name")
    names = [g.name for g in engine.targets(name)] + (["oxtui"] if name in (None, "all") else [])
    n = req.get("n", 100)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise CommandError("logs -n needs a number of lines >= 0")
    lines = [(b.seq, b.ts, b.source, b.stream, line) for b in engine.logs.recent(names) for line in b.lines]
    return {"lines": lines[len(lines) - n:] if n else [], "seq": engine.logs.seq}


async def events(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    name = req.get("name")
    if name not in (None, "all"):
        engine.targets(name)           # an unknown name is an error, not an empty list
    n = req.get("n", 50)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise CommandError("events -n needs a number of events >= 0")
    recent = engine.events.recent(name)
    return {"events": recent[len(recent) - n:] if n else [], "seq": engine.events.seq}


async def apply(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    return await engine.apply(progress)


async def save(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    from .persist import save as save_counts
    return save_counts(engine, engine.targets(req.get("name")))


async def shutdown(engine: Engine, req: dict[str, Any], progress: Progress) -> Any:
    asyncio.get_running_loop().create_task(engine.shutdown())
    return {"stopping": True}


COMMANDS: dict[str, Handler] = {
    "status": status, "scale": scale, "reload": reload, "restart": restart, "stop": stop, "start": start,
    "kill": kill, "logs": logs, "events": events, "apply": apply, "save": save, "shutdown": shutdown,
}
