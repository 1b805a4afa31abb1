"""`oxtui deploy [REF]`, `oxtui rollback [RELEASE]`, `oxtui releases [--json]`.

With an engine running, deploy and rollback are its verbs (engine/deploying.py): the build's lines and
each reload step stream here as they happen. With none, this process makes the release and switches
`current` itself (oxtui/releases.py) and says that the next `up`, `run` or `oxtui` starts it.
Exit codes: 0 live, 1 the build failed or the reload rolled back (nothing of the new release left
running), 2 bad usage or config (no [deploy] table), as every verb.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..format import hint
from ..oxfile.model import Config
from ..releases import DeployError, Releases


def refused(args: argparse.Namespace, config: Config) -> int | None:
    """Exit 2 without a [deploy] table; `releases` answered from the disk. None: go on to the engine."""
    if config.deploy is None:
        print(f"oxtui {args.verb}: {config.path} has no [deploy] table; add one with source = \"<git repository>\" "
              "(docs/deploying.md)", file=sys.stderr)
        return 2
    if args.verb == "releases":
        return releases(Releases(config.deploy), args.json)
    return None


def request(args: argparse.Namespace) -> dict[str, str | None]:
    """The engine's request for `deploy` or `rollback` (here and over SSH: cli/onhosts.py)."""
    if args.verb == "rollback":
        return {"cmd": "rollback", "release": args.release}
    return {"cmd": "deploy", "ref": args.ref}


def without_engine(args: argparse.Namespace, config: Config) -> int:
    """No engine runs: make the release (or pick the rollback's) and switch `current`; nothing to reload."""
    assert config.deploy is not None
    store = Releases(config.deploy)
    def say(line: str) -> None:
        print(line, flush=True)
    try:
        with store.lock():
            if args.verb == "rollback":
                name = args.release or store.previous()
                if name is None:
                    raise DeployError("no release to roll back to: none was live before the current one")
                store.check_target(name)
            else:
                name = store.prepare(args.ref, say).name
            before = store.switch(name)
            say(f"current -> releases/{name}" + (f" (was {before})" if before else ""))
            store.prune(say)
    except DeployError as e:
        print(f"oxtui {args.verb}: {e}", file=sys.stderr)
        return 1
    print(f"{name} is live; no engine is running, so nothing was reloaded: `{hint('up', config.path)}` (or "
          f"`oxtui run`, or `oxtui` for the TUI) starts it")
    return 0


def releases(store: Releases, as_json: bool) -> int:
    found = store.all()
    if as_json:
        print(json.dumps([{"name": r.name, "ref": r.ref, "sha": r.sha, "subject": r.subject, "at": r.at,
                           "build": r.build, "live": r.live, "rolled_back": r.rolled_back} for r in found], indent=2))
        return 0
    if not found:
        print(f"no release yet in {store.dir}: `oxtui deploy` makes the first")
        return 0
    for r in found:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.at)) if r.at else "?"
        mark = "live " if r.live else "     "
        print(f"{mark}{r.name}  {when}  {r.ref:<12} {r.sha[:7]}  build {r.build:<7}"
              + (" rolled back" if r.rolled_back else "") + f"  {r.subject}")
    return 0
