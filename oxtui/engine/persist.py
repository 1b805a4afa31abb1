"""The `save` command: running instance counts into the oxfile, and the engine's view of the file
updated to match, so `apply` and a hand-over then see no difference."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..oxfile.config import usable_cpus
from ..oxfile.save import SaveError, save_instances
from .errors import CommandError

if TYPE_CHECKING:
    from .api import EngineApi
    from .group import ProcessGroup


def save(engine: EngineApi, groups: list[ProcessGroup]) -> dict[str, Any]:
    path = engine.config.path
    try:
        changed, new_digest = save_instances(path, engine.config.digest, {g.name: g.target for g in groups},
                                             usable_cpus())
    except SaveError as e:
        raise CommandError(str(e)) from None
    for g in groups:
        if g.name in changed:
            g.cfg = dataclasses.replace(g.cfg, instances=g.target, instances_spec=g.target)
    engine.use_config(dataclasses.replace(
        engine.config, digest=new_digest,
        processes=tuple(engine.groups[p.name].cfg if p.name in engine.groups else p for p in engine.config.processes)))
    for name, (old, new) in changed.items():
        engine.logs.emit(name, None, "event", [f"saved instances = {new} to {path} (was {old})"])
    return {"oxfile": str(path), "changed": {n: {"was": old, "now": new} for n, (old, new) in changed.items()},
            "unchanged": [g.name for g in groups if g.name not in changed]}
