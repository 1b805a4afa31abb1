"""`oxtui up` and `oxtui down`: the engine in the background, in a session of its own.

`up` starts `oxtui run --background` with no terminal (stdin from /dev/null, its own output to
oxtui-engine.out in the log folder), then watches it through the control socket until every
process is up, or says why not. `down` asks it to stop every worker gracefully and waits until
the engine process is gone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..client.connection import Client, ControlError, NoEngine, status_of
from ..format import BINDS_THE_PORT, count_text, explaining_line, fd3_hint, hint
from ..oxfile.config import Config
from ..protocol import Snapshot, WorkerSnapshot, WorkerState, last_exit_text, slot_workers
from ..runtime import ENGINE_OUT, open_private

STARTUP_GRACE = 15.0      # on top of the longest ready.timeout
DOWN_EXIT_WAIT = 15.0


def up(config: Config, only: set[str] | None = None) -> int:
    running = status_of(config.path)
    if running is not None:
        print(f"oxtui: an engine already runs for {config.path} (pid {running['engine_pid']}); "
              f"`{hint('apply', config.path)}` loads oxfile changes into it")
        return 0
    try:
        config.logs.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        out_path = config.logs.dir / ENGINE_OUT
        out = open_private(out_path)
    except OSError as e:
        print(f"oxtui up: {config.path}: [logs] dir: cannot write {config.logs.dir} ({e.strerror}); "
              "set [logs] dir to a writable folder", file=sys.stderr)
        return 1
    start_offset = out.tell()
    with out:
        # -P: the oxfile's folder is the engine's cwd, and a folder there named oxtui must not shadow us.
        only_args = ["--only", ",".join(sorted(only))] if only else []
        proc = subprocess.Popen([sys.executable, "-P", "-m", "oxtui", "run", "--background", *only_args,
                                 str(config.path)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=config.path.parent, start_new_session=True)
    longest = max((p.ready.timeout for p in config.processes if p.ready is not None), default=1.0)
    deadline = time.monotonic() + longest + STARTUP_GRACE
    snap: Snapshot | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"oxtui up: the engine exited (code {proc.returncode}): {_tail(out_path, start_offset)}",
                  file=sys.stderr)
            return 1
        snap = status_of(config.path)
        if snap is not None and snap["engine_pid"] == proc.pid:
            failed = failures(snap)
            if failed:
                for line in failed:
                    print(f"oxtui up: {line}", file=sys.stderr)
                print(f"oxtui up: the engine (pid {proc.pid}) keeps running the rest; "
                      f"`{hint('logs', config.path)}` shows why, `{hint('down', config.path)}` stops it", file=sys.stderr)
                return 1
            if _all_up(snap):
                print(f"oxtui: engine pid {proc.pid} running {config.path} in the background: "
                      + ", ".join(_counts(snap)) + f"; logs in {config.logs.dir}")
                return 0
        time.sleep(0.1)
    print(f"oxtui up: not every process was up after {longest + STARTUP_GRACE:.0f} s"
          + (f" ({', '.join(_counts(snap))})" if snap else "")
          + f"; the engine (pid {proc.pid}) keeps running; `{hint('logs', config.path)}` shows why, "
          f"`{hint('down', config.path)}` stops it",
          file=sys.stderr)
    return 1


def down(oxfile: Path) -> int:
    try:
        with Client(oxfile, timeout=None) as c:
            try:
                pid = c.call({"cmd": "status"})["engine_pid"]
            except ControlError as e:
                if e.keeper_pid is None:
                    raise
                pid = e.keeper_pid          # no engine could start: the keeper stops everything itself
            c.call({"cmd": "shutdown"})
            for _ in c.replies():   # the engine closes its socket once every worker has stopped
                pass
    except NoEngine as e:
        print(f"oxtui: {e}", file=sys.stderr)
        return 3
    except (ControlError, OSError, ValueError) as e:
        print(f"oxtui down: lost the engine's control socket ({e})", file=sys.stderr)
        return 1
    deadline = time.monotonic() + DOWN_EXIT_WAIT
    while _alive(pid):
        if time.monotonic() > deadline:
            print(f"oxtui down: every worker stopped, but the engine (pid {pid}) has not exited", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"oxtui: stopped the engine (pid {pid}) and every worker of {oxfile}")
    return 0


def _workers(snap: Snapshot) -> Iterator[tuple[str, WorkerSnapshot]]:
    for p in snap["processes"]:
        for w in slot_workers(p):
            yield p["name"], w


def _settled(w: WorkerSnapshot) -> bool:
    """Up, as far as `up` waits: running, a task that completed, or a scheduled task before its first
    tick (a process waiting for its depends_on is not: it will start, and `up` waits for it)."""
    if w["state"] in (WorkerState.RUNNING, WorkerState.COMPLETED):
        return True
    reason = w.get("reason") or ""
    if w["state"] == WorkerState.STOPPED and reason.startswith(("disabled", "not started")):
        return True         # disabled = true, or left out by --only: it waits for `oxtui start`
    return w["state"] == WorkerState.WAITING and reason.startswith("scheduled")


def failures(snap: Snapshot) -> list[str]:
    """Instances that could not start, one line per distinct reason with the instances it hit and the
    last line the first of them printed ("api.0-99 (100 instances) exited with code 1: OSError: [Errno
    98] Address already in use"): a release that cannot boot should fail `up` (and `startup`) at once."""
    hits: dict[tuple[str, str, str], list[int]] = {}
    listens = {p["name"]: p.get("listen") for p in snap["processes"]}
    for name, w in _workers(snap):
        blocked = w["state"] == WorkerState.WAITING and (w.get("reason") or "").startswith("blocked")
        if blocked or w["state"] in (WorkerState.BACKOFF, WorkerState.ERRORED, WorkerState.FAILED) or \
                (w["state"] not in (WorkerState.RUNNING, WorkerState.COMPLETED) and w["restarts"] > 0):
            last = last_exit_text(w)
            why = w.get("reason") or (f"exited with {last}" if last else w["state"])
            record: dict[str, Any] = dict(w.get("last_exit") or {})
            said = record.get("note") or explaining_line(record.get("tail") or [])   # its reason, or its error
            said = "" if said in why else said
            if listens.get(name) and (BINDS_THE_PORT.search(said) or record.get("code") == 0):
                said = f"{said}: {fd3_hint(listens[name])}" if said else fd3_hint(listens[name])
            hits.setdefault((name, why, said), []).append(w["instance"])
    out = []
    for (name, why, said), slots in hits.items():
        who = f"{name}.{_ranges(slots)}" + (f" ({len(slots)} instances)" if len(slots) > 1 else "")
        out.append(f"{who} {why} while starting" + (f": {said}" if said else ""))
    return out


def _ranges(slots: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    parts: list[str] = []
    start = prev = slots[0]
    for n in slots[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(parts)


def _all_up(snap: Snapshot) -> bool:
    return all(_settled(w) for _, w in _workers(snap))


def _counts(snap: Snapshot) -> list[str]:
    return [f"{p['name']} {count_text(p)}" for p in snap["processes"]]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _tail(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "(no output)"
    return text.splitlines()[-1] if text else "(no output)"
