"""`oxtui deploy` and `oxtui rollback` in a running engine: a new release made beside the live one
(oxtui/releases.py: fetch, unpack, shared links, build) while every instance keeps serving, then
`current` switched and a rolling reload of every process whose cwd is under it (old instances keep
the folder they started in; new ones start in the new release). A reload that rolls back switches
`current` back and reloads what had already moved, so no instance of the failed release is left.

The build runs in a thread (it may take minutes): the engine keeps answering, and each line it
prints goes to the caller, to the engine's log, to `oxtui events` and to the TUI's reload panel
(status `engine.deploy`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..oxfile.config import under_current
from ..releases import DeployError, Releases
from .errors import CommandError, UsageError

if TYPE_CHECKING:
    from ..oxfile.model import Config
    from .api import EngineApi

Progress = Callable[[str], None] | None


class DeployState:
    """What the TUI shows of a deploy in progress or just ended (status `engine.deploy`)."""

    def __init__(self, kind: str, target: str | None):
        self.kind, self.target = kind, target     # "deploy" and the ref, or "rollback" and the release
        self.state = "running"                    # running, done, failed
        self.release: str | None = None
        self.step = "fetching" if kind == "deploy" else "switching"
        self.tail: deque[str] = deque(maxlen=8)   # the build's last lines
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.reason: str | None = None

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "state": self.state, "release": self.release,
                "step": self.step, "tail": list(self.tail), "started_at": self.started_at,
                "finished_at": self.finished_at, "reason": self.reason}


async def deploy(engine: EngineApi, req: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """{"cmd": "deploy", "ref": REF or None} or {"cmd": "rollback", "release": NAME or None}."""
    cfg = engine.config.deploy
    rollback = req["cmd"] == "rollback"
    if cfg is None:
        raise UsageError(f"{engine.config.path} has no [deploy] table; add one with source = \"<git repository>\" "
                         "(docs/deploying.md)")
    busy = engine.deploying
    if busy is not None and busy.state == "running":
        raise CommandError(f"a {busy.kind} is running already ({busy.step}); wait for it, then try again")
    reloading = [g.name for g in engine.groups.values() if g.reload is not None and g.reload.active]
    if reloading:
        raise CommandError(f"a rolling reload of {', '.join(reloading)} is in progress; deploy when it is done")
    state = engine.deploying = DeployState(req["cmd"], req.get("release") if rollback else req.get("ref"))
    loop = asyncio.get_running_loop()

    def say(line: str) -> None:
        if line.startswith("build: "):
            state.step = "building"
            state.tail.append(line[7:])
        if progress is not None:
            progress(line)
        engine.log(f"{state.kind}: {line}")
        engine.publish(state.kind, "oxtui", line, state="running", release=state.release)
        engine.changed()

    def say_from_thread(line: str) -> None:
        loop.call_soon_threadsafe(say, line)
    store = Releases(cfg)
    try:
        with store.lock():
            if rollback:
                name = req.get("release") or store.previous()
                if name is None:
                    raise DeployError("no release to roll back to: none was live before the current one")
                store.check_target(name)
            else:
                name = (await asyncio.to_thread(store.prepare, req.get("ref"), say_from_thread)).name
            state.release = name
            result = await _go_live(engine, store, name, say, progress)
            store.prune(say)
    except DeployError as e:
        state.state, state.reason, state.finished_at = "failed", str(e), time.time()
        engine.publish(state.kind, "oxtui", f"{state.kind} failed: {e}", state="failed", release=state.release)
        engine.changed()
        raise CommandError(str(e)) from None
    state.state, state.step, state.finished_at = "done", "done", time.time()
    engine.publish(state.kind, "oxtui", f"{name} is live", state="done", release=name)
    engine.changed()
    return result


async def _go_live(engine: EngineApi, store: Releases, name: str, say: Any, progress: Progress) -> dict[str, Any]:
    """Switch `current` to NAME and reload what runs from it; on a rollback of the reload, switch back."""
    assert engine.config.deploy is not None
    root = engine.config.deploy.root
    groups = [g for g in engine.in_start_order() if under_current(g.cfg.cwd, root)]
    state = engine.deploying
    assert state is not None
    state.step = "switching"
    before = store.switch(name)
    say(f"current -> releases/{name}" + (f" (was {before})" if before else ""))
    if not groups:
        say("no process runs from current: nothing to reload")
        return {"release": name, "before": before, "processes": []}
    state.step = "reloading"
    result = await engine.reload(groups, progress)
    if result["ok"]:
        return {"release": name, "before": before, "processes": result["processes"]}
    bad = next(r for r in result["processes"] if not r["ok"])
    moved = [engine.groups[r["name"]] for r in result["processes"] if r["ok"] and r["name"] != bad["name"]]
    store.rolled_back(name)
    if before is not None:
        store.switch(before)
        say(f"current -> releases/{before} again: {bad['name']} rolled back")
        if moved:       # what had moved to the failed release goes back too: none of it is left
            await engine.reload(moved, progress)
    raise DeployError(f"{bad['name']}: rolled back: {bad['reason']}; current is back on {before or 'nothing'}")


def undeployed(config: Config) -> str | None:
    """Why the engine cannot start yet: a process runs from `current` and no deploy has made it."""
    if config.deploy is None or config.deploy.current.exists():
        return None
    names = [p.name for p in config.processes if under_current(p.cwd, config.deploy.root)]
    if not names:
        return None
    return (f"{config.path}: {', '.join(names)} run(s) from {config.deploy.current}, which no deploy has made yet: "
            f"`oxtui deploy -c {config.path}` makes the first release (nothing was started)")
