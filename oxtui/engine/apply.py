"""`oxtui apply`: bring a running engine in line with its oxfile as it is now on disk.

New processes start, removed ones stop, changed ones get a rolling reload (so a config change is
as safe as a deploy), a changed instance count is a scale, and unchanged processes are not touched.
Everything that can fail before a change (the file, binding new addresses, a reload in progress)
is checked first: a refused apply changes nothing.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..oxfile.config import ConfigError, ProcessConfig, load
from .errors import CommandError
from .group import ProcessGroup
from .sockets import ListenError, bind_listener

if TYPE_CHECKING:
    from .api import EngineApi


def same_but_instances(old: ProcessConfig, new: ProcessConfig) -> bool:
    return dataclasses.replace(old, instances=new.instances, instances_spec=new.instances_spec) == new


# What the engine does around the instances, not what they run: a change needs no reload.
ENGINE_SIDE = ("watch", "ignore", "watch_debounce", "depends_on", "schedule", "reload")


def same_but_engine_side(old: ProcessConfig, new: ProcessConfig) -> bool:
    return dataclasses.replace(old, **{k: getattr(new, k) for k in ENGINE_SIDE}) == new


async def apply(engine: EngineApi, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    path = engine.config.path
    try:
        new = load(path)
    except ConfigError as e:
        raise CommandError(f"{path}: refused, nothing changed:\n  " + "\n  ".join(e.errors)) from None
    wanted = {p.name: p for p in new.processes}
    groups = engine.groups
    removed = [n for n in groups if n not in wanted]
    added = [p for p in new.processes if p.name not in groups]
    changed = [p for p in new.processes if p.name in groups and groups[p.name].cfg != p]
    for name in removed + [p.name for p in changed]:
        g = groups[name]
        if g.reload is not None and g.reload.active:
            raise CommandError(f"{name}: a rolling reload is in progress; apply when it is done (nothing changed)")
    moved = {p.name for p in changed if p.listen != groups[p.name].cfg.listen}
    socks = _bind_all(path, added + [p for p in changed if p.name in moved])

    def say(text: str) -> None:
        engine.logs.emit("oxtui", None, "event", [f"apply: {text}"])
        engine.events.publish("apply", "oxtui", text=f"apply: {text}")
        if progress is not None:
            progress(text)

    result: dict[str, Any] = {"added": [], "removed": [], "reloaded": [], "restarted": [], "scaled": [],
                              "rewatched": [],
                              "unchanged": [p.name for p in new.processes if p.name in groups and p not in changed],
                              "failed": [], "notes": []}
    if new.logs != engine.config.logs:
        result["notes"].append("[logs] changed: it takes effect when the engine restarts (oxtui down, oxtui up)")
    for name in removed:
        say(f"{name}: removed from the oxfile; stopping it")
        await engine.remove_group(name)
        result["removed"].append(name)
    from ..oxfile.graph import levels
    lv = levels({p.name: [d for d, _ in p.depends_on] for p in new.processes})
    for cfg in sorted(added, key=lambda p: lv[p.name]):
        say(f"{cfg.name}: new; starting {cfg.instances} instance(s)")
        _start_group(engine, cfg, socks.get(cfg.name))
        result["added"].append(cfg.name)
    for cfg in sorted(changed, key=lambda p: lv[p.name]):
        g = groups[cfg.name]
        if cfg.name in moved:
            say(f"{cfg.name}: listen changed to {cfg.listen_str or 'none'}; restarting it on the new address")
            await g.close()
            _start_group(engine, cfg, socks.get(cfg.name))
            result["restarted"].append(cfg.name)
        elif same_but_engine_side(g.cfg, cfg):
            g.cfg = cfg
            g.start_watch()
            g.start_schedule()
            say(f"{cfg.name}: watch, schedule, depends_on or reload settings changed; in effect now")
            result["rewatched"].append(cfg.name)
        elif same_but_instances(g.cfg, cfg):
            g.cfg = cfg
            before, after = await g.scale(cfg.instances)
            say(f"{cfg.name}: instances {before} -> {after}")
            result["scaled"].append(cfg.name)
        else:
            await _reload_with(g, cfg, say, result)
    # What runs now is the config: a process whose reload failed keeps its old settings.
    engine.use_config(dataclasses.replace(new, processes=tuple(g.cfg for g in groups.values()),
                                          logs=engine.config.logs))
    result["ok"] = not result["failed"]
    return result


async def _reload_with(g: ProcessGroup, cfg: ProcessConfig, say: Callable[[str], None], result: dict) -> None:
    old = g.cfg
    g.cfg = cfg     # replacements are made from the group's config; the old workers keep theirs
    say(f"{cfg.name}: changed; rolling reload")
    ok = await g.begin_reload(lambda text: say(f"{cfg.name}: {text}"))
    if not ok and cfg.is_task:
        # a task keeps what the file says, failed or not: nothing serves from its old settings, and the
        # next run (start, reload, a tick) must run the command as it is now
        reason = g.reload.reason if g.reload is not None else "failed"
        result["failed"].append({"name": cfg.name, "reason": reason})
        say(f"{cfg.name}: its run failed with the new settings: {reason}")
        return
    if not ok:
        g.cfg = old
        reason = g.reload.reason if g.reload is not None else "failed"
        result["failed"].append({"name": cfg.name, "reason": reason})
        say(f"{cfg.name}: reload failed, old settings kept: {reason}")
        return
    result["reloaded"].append(cfg.name)
    if old.watch != cfg.watch or old.ignore != cfg.ignore or old.watch_debounce != cfg.watch_debounce:
        g.start_watch()
    if cfg.instances != old.instances:
        await g.scale(cfg.instances)


def _bind_all(path: Any, cfgs: list[ProcessConfig]) -> dict[str, socket.socket]:
    socks: dict[str, socket.socket] = {}
    for cfg in cfgs:
        if cfg.listen is None:
            continue
        try:
            socks[cfg.name] = bind_listener(*cfg.listen)
        except ListenError as e:
            for s in socks.values():
                s.close()
            raise CommandError(f"{path}: [processes.{cfg.name}] listen: {e}; refused, nothing changed") from None
    return socks


def _start_group(engine: EngineApi, cfg: ProcessConfig, sock: socket.socket | None) -> None:
    g = engine.add_group(cfg, sock)
    g.boot()
    g.start_watch()
    g.start_schedule()
