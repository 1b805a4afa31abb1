"""`oxtui upgrade [OXFILE|--all]`: running engines move to the oxtui installed now, apps untouched.

After `pip install -U oxtui`, each engine is asked to hand over (engine/handover.py) to a new engine
process started from the installed code: every worker keeps its pid, its socket and its pipes; the
spawner helper exec's the new helper program in place. Says the old and new versions and pids, and
which workers were kept. An engine that cannot (oxtui 0.1.0 has no hand-over verb, or the new one
fails to start) is left running as it was, and the exit is 1 with the reason.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..client.connection import Client, ControlError, NoEngine
from ..format import FIRST_TO_HAND_OVER, hands_over, hint

NEW_ENGINE_WAIT = 30.0


def _running_pids(snap: dict[str, Any]) -> dict[tuple[str, int], int]:
    return {(p["name"], w["instance"]): w["pid"] for p in snap["processes"] for w in p["workers"]
            if w["pid"] and not w.get("role")}


def _status(oxfile: Path, timeout: float = 10) -> dict[str, Any]:
    with Client(oxfile, timeout=timeout) as c:
        return c.call({"cmd": "status"})


SOON, SOON_TRIES = "try again in a moment", 10


def worth_retrying(e: ControlError) -> bool:
    """Nothing changed, and a moment later it goes (a crash-looping worker exited between the engine's
    last check and its hand-over): the reply says "retry". Engines from before that field end the text
    with "try again in a moment", and they cannot be changed: the one place text is read."""
    return e.retry or str(e).endswith(SOON)


def upgrade_one(oxfile: Path) -> bool:
    try:
        before = _status(oxfile)
    except NoEngine as e:
        print(f"oxtui upgrade: {e}", file=sys.stderr)
        return False
    old_version = before.get("engine", {}).get("version", "0.1.0")
    if not hands_over(old_version):     # decided by the version its status gives, never by an error's text
        print(f"oxtui upgrade: {oxfile}: its engine runs oxtui {old_version}, which cannot hand over "
              f"({FIRST_TO_HAND_OVER} is the first that can); restart it once to the new version: `{hint('down', oxfile)} && "
              f"{hint('up', oxfile)}` (that restarts its apps)", file=sys.stderr)
        return False
    for attempt in range(SOON_TRIES):
        try:
            with Client(oxfile, timeout=None) as c:
                result = c.call({"cmd": "upgrade"}, lambda text: print(f"{oxfile}: {text}", flush=True))
            break
        except ControlError as e:
            if worth_retrying(e) and attempt + 1 < SOON_TRIES:
                time.sleep(0.2)
                continue
            print(f"oxtui upgrade: {oxfile}: {e}", file=sys.stderr)
            return False
        except (OSError, ValueError) as e:
            print(f"oxtui upgrade: {oxfile}: lost the engine's control socket ({e})", file=sys.stderr)
            return False
    deadline = time.monotonic() + NEW_ENGINE_WAIT
    after = None
    while time.monotonic() < deadline:
        try:
            after = _status(oxfile)
            if after["engine_pid"] == result["new_pid"]:
                break
        except (NoEngine, ControlError, OSError, ValueError):
            pass
        time.sleep(0.1)
    if after is None or after["engine_pid"] != result["new_pid"]:
        print(f"oxtui upgrade: {oxfile}: handed over to pid {result['new_pid']}, which does not answer yet; "
              f"see `{hint('status', oxfile)}`", file=sys.stderr)
        return False
    old, new = _running_pids(before), _running_pids(after)
    kept = [k for k, pid in old.items() if new.get(k) == pid]
    restarted = len(old) - len(kept)
    print(f"{oxfile}: oxtui {result['old_version']} (pid {result['old_pid']}) -> {after['engine']['version']} "
          f"(pid {result['new_pid']}); {len(kept)} worker(s) kept with the same pids"
          + (f", {restarted} not (they had exited meanwhile)" if restarted else ", none restarted"))
    return True


def upgrade(oxfiles: list[Path]) -> int:
    if not oxfiles:
        print(f"oxtui upgrade: no engine is running (this is oxtui {__version__})")
        return 0
    results = [upgrade_one(oxfile) for oxfile in oxfiles]
    return 0 if all(results) else 1


def every_engine() -> list[Path]:
    from ..client.discover import engines
    return [Path(e["oxfile"]) for e in engines() if e["answering"] and e["oxfile"]]


def upgrade_fleet(args) -> int:
    """`oxtui upgrade --fleet` / `-H`: each host in turn runs its own `oxtui upgrade --all` (host by host,
    so a release that cannot hand over stops at the first host, and the others keep theirs)."""
    import shlex
    import subprocess

    from ..fleet.link import SSH_OPTIONS, explain
    from .onhosts import hosts_of
    hosts = hosts_of(args)
    if hosts is None:
        return 2
    code = 0
    for i, h in enumerate(hosts):
        target = shlex.quote(args.oxfile) if getattr(args, "oxfile", None) else "--all"
        argv = ["ssh", *SSH_OPTIONS, *h.ssh_options, h.ssh, "--", f"{shlex.quote(h.oxtui)} upgrade {target}"]
        print(f"{h.name}: oxtui upgrade {target}", flush=True)
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        sys.stdout.write("".join(f"{h.name}: {line}\n" for line in out.splitlines()))
        if proc.returncode == 255:
            print(f"oxtui upgrade: {h.name}: unreachable: {explain(h, err, proc.returncode)}", file=sys.stderr)
            code = 1
        elif proc.returncode != 0:
            sys.stderr.write("".join(f"oxtui upgrade: {h.name}: {line.removeprefix('oxtui upgrade: ')}\n"
                                     for line in err.splitlines() if line.strip()))
            rest = [x.name for x in hosts[i + 1:]]
            if rest:
                print(f"oxtui upgrade: stopped at {h.name}; not tried: {', '.join(rest)}", file=sys.stderr)
            return 1
    return code
