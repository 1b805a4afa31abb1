"""What a hand-over carries besides descriptors (engine/carry.py), round-tripped through JSON as it
travels, and the format check that refuses a newer engine's description before anything changes
(engine/handover.adopt). Pure: no engine runs; test_upgrade.py moves real engines."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from oxtui.engine import carry
from oxtui.engine.events import EventHub
from oxtui.engine.logs import LogHub
from oxtui.oxfile.model import LogsConfig


def trip(data: dict) -> dict:
    return json.loads(json.dumps(data))          # as it crosses the hand-over's channel


def test_the_event_history_its_sequence_and_the_log_rings_arrive(tmp_path: Path):
    old = SimpleNamespace(events=EventHub(), logs=LogHub(LogsConfig(dir=tmp_path / "old", files=False)))
    for i in range(3):
        old.events.publish("crash", "web", i, 100 + i, f"pid {100 + i} exited")
    old.logs.emit("web", 0, "out", ["hello", "world"])
    new = SimpleNamespace(events=EventHub(), logs=LogHub(LogsConfig(dir=tmp_path / "new", files=False)))
    carry.restore_engine(new, trip(carry.engine_history(old)))
    assert [e["text"] for e in new.events.history] == ["pid 100 exited", "pid 101 exited", "pid 102 exited"]
    assert new.events.publish("start", "web")["seq"] == 4, "the sequence goes on: a follower misses nothing"
    assert [line for b in new.logs.logs["web"].ring for line in b.lines] == ["hello", "world"]
    assert new.logs.seq == old.logs.seq


def test_a_process_s_exits_counters_last_reload_and_schedule_arrive():
    schedule = SimpleNamespace(anchor=1000.0, last_run={"at": 1030.0, "result": "done", "reason": None})
    old = SimpleNamespace(exits=[{"pid": 7, "cause": "crash"}], exit_causes=Counter(crash=2, oom=1),
                          reload_results=Counter(done=3), last_reload_seconds=4.5, reload=None, schedule=schedule)
    new = SimpleNamespace(exits=[], reload=None, carried_schedule=None)
    carry.restore_group(new, trip(carry.group_history(old)))
    assert new.exits == old.exits and new.exit_causes == old.exit_causes and new.reload_results == old.reload_results
    assert new.last_reload_seconds == 4.5
    assert new.carried_schedule == {"anchor": 1000.0, "last_run": {"at": 1030.0, "result": "done", "reason": None}}


async def test_a_newer_format_is_refused_before_anything_changes():
    from oxtui.engine import handover
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(json.dumps({"format": carry.FORMAT + 1, "version": "9.0.0", "groups": []}).encode() + b"\n")
        engine = SimpleNamespace(config=SimpleNamespace(path=Path("/nowhere/oxfile.toml"), processes=[]))
        with pytest.raises(ValueError, match=f"hands over in format {carry.FORMAT + 1}.*install an oxtui at least"):
            await asyncio.wait_for(handover.adopt(engine, ours.detach()), 10)
        theirs.settimeout(10)
        assert theirs.recv(4096).decode().startswith("error: the running engine (oxtui 9.0.0) hands over in format")
