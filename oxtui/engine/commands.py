"""Every verb the engine takes, one small handler each, in one table.

The control socket, the CLI (through the socket), an embedded TUI's keys and an attached TUI's keys
all arrive at `Engine.execute`, which looks the verb up here: a script and a key press do exactly
the same thing. A handler checks its request, calls the engine's public methods, and returns the
JSON result; adding a verb is adding a function and a row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..oxfile.config import parse_signal, usable_cpus
from ..oxfile.limits import check_counts
from .errors import UsageError
from .logquery import LogQuery

if TYPE_CHECKING:
    from .api import EngineApi

Progress = Callable[[str], None] | None
Handler = Callable[["EngineApi", dict[str, Any], Progress], Awaitable[Any]]


def _whole(req: dict[str, Any], key: str, message: str) -> int:
    value = req.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(message)
    return value


async def status(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    engine.looked_at()
    await engine.fresh_metrics()     # an unwatched engine samples rarely: never print old figures
    return engine.snapshot()


async def scale(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    group = engine.targets(req.get("name"))[0]
    if req.get("n") == "max":
        n = usable_cpus()          # as instances = "max" means: this machine's usable CPUs
    else:
        n = _whole(req, "n", 'scale needs a whole number of instances, e.g. 4, +1, -1, or "max"')
        if req.get("relative"):
            n = group.target + n
    # refused as `oxtui check` refuses the same count in the file (exit 2, the same words): a count the
    # kernel's pid space or the user's process limit cannot hold would fork until the machine chokes
    errors: list[str] = []
    check_counts(errors, [], str(engine.config.path),
                 [(g.name, n if g is group else g.target) for g in engine.groups.values()])
    if errors and n > group.target:
        raise UsageError(errors[0])
    before, after = await group.scale(n)
    return {"name": group.name, "before": before, "instances": after}


async def reload(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    return await engine.reload(engine.targets(req.get("name")), progress)


async def restart(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
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


async def stop(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    groups = engine.targets(req.get("name"))
    for level in engine.stop_levels(groups):
        await asyncio.gather(*(g.stop(release=True) for g in level))
    return {"processes": [g.name for g in groups]}


async def start(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    groups = engine.targets(req.get("name"))
    for g in engine.in_start_order(groups):
        g.start()
    return {"processes": [g.name for g in groups]}


async def kill(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    group = engine.targets(req.get("name"))[0]
    try:
        sig = parse_signal(req.get("signal", "SIGTERM"))
    except ValueError as e:
        raise UsageError(f"--signal {e}") from None
    slot = _whole(req, "instance", "kill needs an instance number, e.g. `oxtui kill api 0`")
    return {"pid": group.kill(slot, sig), "signal": sig.name}


async def logs(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    query = LogQuery.of(engine, req)
    n = req.get("n", 100)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise UsageError("logs -n needs a number of lines >= 0")
    names = None if query.names is None else list(query.names)
    lines = [(b.seq, b.ts, b.source, b.stream, line) for b in engine.logs.recent(names) if query.wants(b)
             for line in b.lines]
    return {"lines": lines[len(lines) - n:] if n else [], "seq": engine.logs.seq}


async def flush(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    """Empty the log files (rotated ones removed) and the recent lines of the processes named."""
    names = [g.name for g in engine.targets(req.get("name"))] + (["oxtui"] if req.get("name") in (None, "all") else [])
    freed = engine.logs.flush_logs(names)
    return {"processes": names, "bytes": freed}


async def events(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    name = req.get("name")
    if name not in (None, "all"):
        engine.targets(name)           # an unknown name is an error, not an empty list
    n = req.get("n", 50)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise UsageError("events -n needs a number of events >= 0")
    recent = engine.events.recent(name)
    # up to n, newest last (a slice from len - n went negative, and wrapped, when n > len)
    return {"events": recent[max(0, len(recent) - n):] if n else [], "seq": engine.events.seq}


async def apply(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    return await engine.apply(progress)


async def save(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    from .persist import save as save_counts
    return save_counts(engine, engine.targets(req.get("name")))


async def shutdown(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    asyncio.get_running_loop().create_task(engine.shutdown())
    return {"stopping": True}


async def deploy(engine: EngineApi, req: dict[str, Any], progress: Progress) -> Any:
    from .deploying import deploy
    return await deploy(engine, req, progress)


COMMANDS: dict[str, Handler] = {
    "status": status, "scale": scale, "reload": reload, "restart": restart, "stop": stop, "start": start,
    "kill": kill, "logs": logs, "flush": flush, "events": events, "apply": apply, "save": save,
    "shutdown": shutdown, "deploy": deploy, "rollback": deploy,
}
