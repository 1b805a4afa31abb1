"""A new engine started by the keeper after the engine died (SIGKILL, the OOM killer, a crash of the
TUI it was embedded in): it adopts every worker as `oxtui upgrade`'s new engine does (handover.py),
from two sources instead of a live engine's description:

    the keeper's inventory   what is true now: the pids alive (with their group, slot and role, and
                             the read ends of their pipes, inherited), the pids that ended while no
                             engine listened (with their wait status), the lock, the control socket,
                             each listening socket (all inherited: the same numbers here)
    the journal (journal.py) what a person would miss: counters, exit records, crash-loop windows,
                             schedules, the event history; as of the engine's last loop pass

They are merged by pid: a worker the journal knows and the keeper still runs is adopted as it was;
one the journal knows but that ended meanwhile records its exit and restarts as after any crash; a
pid only the keeper knows (started in the journal's last fraction of a second) takes its slot when
that slot's worker is gone. A reload's surge instance or canary is stopped, and a reload that was
running is run again from the start (its new instances may be half rolled out): the event says so.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..protocol import WorkerState
from . import carry, handover, journal
from .spawn import Child

if TYPE_CHECKING:
    from .api import EngineApi

LIVE = (WorkerState.RUNNING, WorkerState.STARTING)


def journal_state(engine: EngineApi) -> dict[str, Any] | None:
    """What journal.py writes: the hand-over's description without descriptors, log rings or CPU
    seconds; None while a worker is between its exit and its record (look again in a moment)."""
    groups = []
    for g in engine.groups.values():
        infos = []
        for w in g.all_workers():
            info = w.handover_info()
            if info is None:
                return None
            del info["stdout"], info["stderr"]
            history = carry.worker_history(w)
            history["cpu_seconds"] = 0.0
            infos.append({**info, "role": w.role, "history": history})
        reloading = g.reload is not None and g.reload.active and not g.cfg.is_task
        groups.append({"name": g.name, "target": g.target, "release": g.release, "workers": infos,
                       "history": carry.group_history(g), "reloading": reloading})
    return {"format": carry.FORMAT, "version": __version__, "oxfile": str(engine.config.path), "pid": os.getpid(),
            "started_at": engine.started_at, "recovered": engine.recovered, "groups": groups}


def read_inventory(fd: int) -> dict[str, Any]:
    """The keeper's first message on our socket; the socket stays open for the spawner to adopt."""
    chan = socket.socket(fileno=fd)
    try:
        chan.settimeout(10)
        data = chan.recv(1 << 24)
        chan.setblocking(True)
    finally:
        chan.detach()
    if not data:
        raise ValueError("the keeper closed the socket before it said what it holds")
    return json.loads(data)["recover"]


async def recover(engine: EngineApi, fd: int) -> dict[str, Any]:
    """Adopt every worker the keeper holds; returns the `recovered` record for status."""
    inv = read_inventory(fd)
    saved, events = journal.read(engine.config.path)
    if saved is not None and saved.get("oxfile") != str(engine.config.path):
        saved = None
    state, unwanted, rerun = merge(engine, inv, saved, events)
    state["helper"] = {"fd": fd, "pid": inv["keeper_pid"], "approvals": True}
    handover.prepare(engine, state)
    kept = await handover.carry_on(engine, state)
    for pid, pipes in unwanted:
        # a reload's spare instance, or a second process for one slot: ended as a stop would
        engine.spawner.end_unwanted(Child(pid, pipes[0], pipes[1], time.monotonic(), parent=inv["keeper_pid"]))
    ended = sum(1 for w in inv["workers"] if w["status"] is not None)
    record = {"at": round(time.time(), 3), "from_pid": inv["from_pid"], "cause": inv["cause"],
              "died_at": inv["at"], "attempts": inv["attempts"], "kept": kept, "ended_meanwhile": ended}
    engine.recovered = record
    text = (f"recovered: the engine (pid {inv['from_pid']}) died ({inv['cause']}); this engine adopted {kept} "
            "worker(s) with their pids and sockets"
            + (f", {ended} that ended meanwhile are restarted" if ended else "")
            + ("" if saved is not None else "; no journal was found, so counters and events start again")
            + (f" (started {inv['attempts']} times)" if inv["attempts"] > 1 else ""))
    engine.log(text)
    engine.events.publish("recovered", "oxtui", None, os.getpid(), text, from_pid=inv["from_pid"],
                          cause=inv["cause"], kept=kept)
    for name in rerun:
        g = engine.groups[name]
        g.event(None, "a rolling reload was running when the engine died: its new instances may be half rolled "
                      "out, so it runs again from the start")
        engine.reload_in_background([g])
    return record


def merge(engine: EngineApi, inv: dict[str, Any], saved: dict[str, Any] | None,
          events: list[dict[str, Any]]) -> tuple[dict[str, Any], list[tuple[int, list[int]]], list[str]]:
    """The hand-over description (handover.prepare/carry_on's) for what the keeper holds and the
    journal says; with the instances to stop and the processes whose reload runs again."""
    held = inv["held"]
    keeper = {w["pid"]: w for w in inv["workers"]}
    alive = {pid for pid, w in keeper.items() if w["status"] is None}
    by_name = {g["name"]: g for g in (saved or {}).get("groups", [])}
    claimed: set[int] = set()
    unwanted: list[tuple[int, list[int]]] = []
    groups, rerun = [], []
    for cfg in engine.config.processes:
        old = by_name.get(cfg.name, {})
        slots: dict[int, dict[str, Any]] = {}
        candidates: list[tuple[int, dict[str, Any]]] = []     # (pid, info) that may take a slot
        for saved_info in old.get("workers", []):
            info = dict(saved_info)
            pid, role = info.get("pid"), info.pop("role", None)
            if pid is not None and pid in keeper:
                claimed.add(pid)
                info["stdout"], info["stderr"] = keeper[pid]["pipes"]
                if info["state"] not in LIVE:       # stopping when the engine died: it runs on
                    info["state"] = WorkerState.RUNNING
            else:
                info["stdout"] = info["stderr"] = None
                if info["state"] in (*LIVE, WorkerState.STOPPING, WorkerState.BACKOFF):
                    # it ended (the journal may not have seen it yet) and is started again, here or by
                    # the dead engine just before it died (a candidate below): one restart more
                    info.update(state=WorkerState.BACKOFF, pid=None, restarts=info.get("restarts", 0) + 1)
            if role is None:
                slots[info["slot"]] = info
            elif pid is not None and pid in alive and role == "canary":
                unwanted.append((pid, [info["stdout"], info["stderr"]]))
            elif pid is not None and pid in alive:
                candidates.append((pid, info))      # a reload's surge instance
        for pid, w in keeper.items():               # started in the journal's last fraction of a second
            tag = w["tag"] or {}
            if pid in claimed or tag.get("group") != cfg.name:
                continue
            claimed.add(pid)
            if tag.get("role") == "canary":
                unwanted.append((pid, w["pipes"]))
                continue
            candidates.append((pid, {"slot": tag.get("slot", 0), "state": WorkerState.STARTING, "pid": pid,
                                     "started": time.monotonic(), "stdout": w["pipes"][0], "stderr": w["pipes"][1],
                                     "restarts": 0, "reason": None, "exit_code": None, "exit_signal": None}))
        for pid, info in candidates:
            mine = slots.get(info["slot"])
            if mine is None or mine.get("pid") not in alive:
                if mine is not None:                # the slot's worker is gone: this one is the slot now
                    info["restarts"] = mine.get("restarts", 0)
                    if "history" in mine:
                        info["history"] = mine["history"]
                slots[info["slot"]] = info
            else:
                unwanted.append((pid, [info["stdout"], info["stderr"]]))
        if old.get("reloading"):
            rerun.append(cfg.name)
        groups.append({"name": cfg.name, "sock": held.get(f"listen:{cfg.name}"),
                       "target": old.get("target", cfg.instances), "release": old.get("release", 1),
                       "workers": [slots[s] for s in sorted(slots)],
                       **({"history": old["history"]} if "history" in old else {})})
    # what the keeper runs for a process no longer in the oxfile: not ours to keep
    for pid, w in keeper.items():
        if pid not in claimed and w["status"] is None:
            unwanted.append((pid, w["pipes"]))
    history = {"events": {"seq": max((e.get("seq", 0) for e in events), default=0), "history": events},
               "logs": {"seq": 0, "rings": {}}}
    state = {"lock": held.get("lock"), "control": held.get("control"),
             "started_at": (saved or {}).get("started_at", time.time()), "groups": groups, "history": history,
             "ended": {str(pid): w["status"] for pid, w in keeper.items() if w["status"] is not None}}
    return state, unwanted, rerun
