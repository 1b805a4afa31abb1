"""The start-order graph of `depends_on` (pure): cycles, start order and stop order.

config.py rejects a cycle naming it; the engine starts processes in `levels()` order as their
conditions hold and stops them in the reverse order (dependents first).
"""

from __future__ import annotations

from collections.abc import Mapping


def find_cycle(deps: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle as a path that ends where it began (["web", "api", "web"]), or None."""
    state: dict[str, int] = {}          # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in deps.get(name, []):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[name] = 2
        return None

    for name in deps:
        if name not in state and (found := visit(name)):
            return found
    return None


def levels(deps: Mapping[str, list[str]]) -> dict[str, int]:
    """Each process's depth: 0 depends on nothing, 1 on level-0 ones only, ... (acyclic input)."""
    out: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in out:
            out[name] = 0       # guards against a cycle check that was skipped
            out[name] = 1 + max((depth(d) for d in deps.get(name, []) if d in deps), default=-1)
        return out[name]

    for name in deps:
        depth(name)
    return out


def start_order(deps: Mapping[str, list[str]]) -> list[str]:
    """Names in start order: by level, then as given (the oxfile's order)."""
    lv = levels(deps)
    names = list(deps)
    return sorted(names, key=lambda n: (lv[n], names.index(n)))


def with_dependencies(deps: Mapping[str, list[str]], names: set[str]) -> set[str]:
    """These names and everything they depend on, directly or not."""
    out: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in out and name in deps:
            out.add(name)
            todo += deps[name]
    return out
