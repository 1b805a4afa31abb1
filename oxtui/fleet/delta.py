"""Only what changes crosses an SSH link: a snapshot goes once, then the differences from the last one.

A snapshot's lists of processes and workers are keyed first (a process by its name, a worker by its
instance and role), so a change in one worker is that worker's changed fields, not the whole list.
The difference is a merge patch (as RFC 7386, but a removed key is listed under "#del": None is a
value snapshots use); lists other than those two (exit records, checks) go whole when they change,
which is rare.

    diff(old, new) -> patch        patch(old, patch) -> new        (both on keyed snapshots)

Pure functions: the bridge makes the patches, the fleet client applies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ORDER = "#order"      # keyed form: the keys in the list's order
# what changes every second without anything happening: such a patch may wait; any other change is news
METRICS = frozenset({"cpu_percent", "rss_bytes", "uptime_s", "cpu_seconds", "counters", "viewers"})
DELETED = "#del"      # in a patch: the keys removed


def _worker_key(w: dict[str, Any]) -> str:
    return f"{w['instance']}:{w.get('role') or ''}"


def keyed(snap: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot with its processes and their workers as dicts (plus their order)."""
    procs: dict[str, Any] = {ORDER: [p["name"] for p in snap["processes"]]}
    for p in snap["processes"]:
        workers: dict[str, Any] = {ORDER: [_worker_key(w) for w in p["workers"]]}
        workers.update({_worker_key(w): w for w in p["workers"]})
        procs[p["name"]] = {**p, "workers": workers}
    return {**snap, "processes": procs}


def unkeyed(kd: dict[str, Any]) -> dict[str, Any]:
    procs = []
    for name in kd["processes"][ORDER]:
        p = kd["processes"][name]
        workers = p["workers"]
        procs.append({**p, "workers": [workers[k] for k in workers[ORDER]]})
    return {**kd, "processes": procs}


def diff(old: Any, new: Any) -> Any:
    """The patch that turns old into new: for dicts the changed keys only (removed ones listed under
    DELETED, since None is a value snapshots use), recursively; anything else is new itself."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out: dict[str, Any] = {}
    for k, v in new.items():
        if k not in old:
            out[k] = v
        elif old[k] != v:
            out[k] = diff(old[k], v)
    gone = [k for k in old if k not in new]
    if gone:
        out[DELETED] = gone
    return out


def patch(old: Any, changes: Any) -> Any:
    if not isinstance(changes, dict) or not isinstance(old, dict):
        return changes
    out = dict(old)
    for k in changes.get(DELETED, ()):
        out.pop(k, None)
    for k, v in changes.items():
        if k != DELETED:
            out[k] = patch(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def only_metrics(change: Any) -> bool:
    """True when a patch changes nothing but figures that move every second (CPU, memory, uptime)."""
    if not isinstance(change, dict):
        return False
    return all(k in METRICS or (k != DELETED and only_metrics(v)) for k, v in change.items())
