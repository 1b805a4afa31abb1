"""The helper process: every worker's parent. It forks and execs the instances (forkserver.py, forkchild.py,
spare.py), answers for a frozen engine's crash restarts (approved.py), and keeps the workers and starts a
new engine when the engine dies (keeper.py). The engine talks to it through engine/spawn.py.

It runs as a script, `python -I -S oxtui/helper/forkserver.py FD`: no site, no package, so it may import
the standard library and these modules, nothing else (an import-linter contract in pyproject.toml, and
tests/test_architecture.py for the standard library). A third-party import would fail only there, in
the process whose death ends every app. This file imports nothing, for the same reason.
"""
