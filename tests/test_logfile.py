"""A log file on a real file system (engine/logfile.py), what the disk can do to it, in milliseconds:
a full device, a file deleted or moved away (logrotate's `create`) or truncated (`copytruncate`),
rotation by size and by age, gzip of rotated files. Against a real engine: tests/test_logs.py."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from oxtui.engine import logfile
from oxtui.engine.logfile import LogFile


@pytest.fixture(autouse=True)
def look_at_every_line(monkeypatch):
    monkeypatch.setattr(logfile, "RECHECK", 0.0)     # the path is looked at before every write


def line(i: int) -> list[bytes]:
    return [f"2026-12-07 10:00:00.000 app.0 | line {i} end".encode(), b"\n"]


def put(f: LogFile, i: int, ts: float | None = None) -> None:
    """One line, written at once as the engine writes each read (its LogHub flushes what is pending)."""
    f.write(line(i), 1, ts)
    f.flush()


def numbers(*paths: Path) -> list[int]:
    found = []
    for p in paths:
        data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        found += [int(m) for m in re.findall(rb"line (\d+) end\n", data)]
    return found


@pytest.mark.parametrize("what", ["file", "folder"])
def test_what_went_into_a_deleted_file_before_it_was_noticed_is_written_again(tmp_path, monkeypatch, what):
    monkeypatch.setattr(logfile, "RECHECK", 0.05)
    path = tmp_path / "logs" / "app.log"
    f = LogFile(path, 10**9, 5)
    for i in range(40):
        put(f, i)
    time.sleep(0.06)
    put(f, 40)                                        # looked at: all is well
    os.unlink(path)
    if what == "folder":
        path.parent.rmdir()
    for i in range(41, 70):                           # into the deleted file: not noticed yet
        put(f, i)
    time.sleep(0.06)
    for i in range(70, 100):                          # noticed at the first of these
        put(f, i)
    f.close()
    # line 40 went in just after that look, before the rm: it is written again too (the rm took it)
    assert numbers(path) == list(range(40, 100)), "every line written after the rm is in the new file"
    assert f.trouble is None


def test_a_moved_file_keeps_its_lines_and_gets_no_more(tmp_path):
    tmp_path = tmp_path / "d"
    tmp_path.mkdir()
    path = tmp_path / "app.log"
    f = LogFile(path, 10**9, 5)
    for i in range(100):
        put(f, i)
        if i == 49:
            os.rename(path, tmp_path / "app.log.1")      # logrotate's create, without the create
    f.close()
    assert numbers(tmp_path / "app.log.1") == list(range(50)) and numbers(path) == list(range(50, 100))


def test_a_truncated_file_is_written_from_its_start_and_rotates_by_its_new_size(tmp_path):
    tmp_path = tmp_path / "d"
    tmp_path.mkdir()
    path = tmp_path / "app.log"
    size = len(b"".join(line(0)))
    f = LogFile(path, 60 * size, 5)
    for i in range(50):
        put(f, i)
    os.truncate(path, 0)                              # copytruncate's second half
    for i in range(50, 100):
        put(f, i)
    f.close()
    assert numbers(path) == list(range(50, 100)), "no rotation: the file holds 50 lines, not 100"
    assert not path.read_bytes().startswith(b"\0"), "O_APPEND: no hole where the old lines were"


def test_a_full_device_counts_the_lines_and_marks_the_gap_once_it_can_write(tmp_path):
    tmp_path = tmp_path / "d"
    tmp_path.mkdir()
    path = tmp_path / "app.log"
    path.symlink_to("/dev/full")                      # every write: ENOSPC
    said: list[tuple[str, int]] = []
    f = LogFile(path, 10**9, 5, on_trouble=lambda kind, t: said.append((kind, t.lines)))
    for i in range(30):
        put(f, i, 1000.0 + i)
    assert f.trouble is not None and f.trouble.error == "ENOSPC" and f.trouble.lines == 30
    assert f.trouble.status()["lines_not_written"] == 30 and "No space left" in f.trouble.status()["text"]
    path.unlink()                                     # the disk has room again
    for i in range(30, 40):
        put(f, i, 1000.0 + i)
    f.close()
    assert said == [("start", 1), ("end", 30)]
    text = path.read_text()
    assert re.search(r"\[oxtui\] 30 lines not written \(No space left on device\) from \S+ to \S+\n", text), text
    assert numbers(path) == list(range(30, 40))


def test_rotation_by_age_with_gzip_keeps_keep_files(tmp_path):
    tmp_path = tmp_path / "d"
    tmp_path.mkdir()
    path = tmp_path / "app.log"
    f = LogFile(path, 10**9, 2, max_age=10.0, compress=True)
    t0 = time.time()
    for i in range(40):
        put(f, i, t0 + i)                             # a new file every 10 s of capture time
    f.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["app.log", "app.log.1.gz", "app.log.2.gz"], names
    assert numbers(tmp_path / "app.log.2.gz") == list(range(10, 20))
    assert numbers(tmp_path / "app.log.1.gz") == list(range(20, 30))
    assert numbers(path) == list(range(30, 40))


def test_a_read_only_folder_is_the_kernel_s_erofs_counted_until_it_is_writable_again(tmp_path):
    """A read-only bind mount of the folder (the kernel refuses to remount read-only a file system with a
    file open for writing, so the file is opened after: as after a disk's errors=remount-ro)."""
    d = tmp_path / "ro"
    d.mkdir()
    r = subprocess.run(["mount", "--bind", str(d), str(d)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {r.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], check=True)
        said: list[str] = []
        f = LogFile(d / "app.log", 10**9, 5, on_trouble=lambda kind, t: said.append(kind))
        for i in range(25):
            put(f, i, 1000.0 + i)
        assert f.trouble is not None and f.trouble.error == "EROFS" and f.trouble.lines == 25
        subprocess.run(["mount", "-o", "remount,bind,rw", str(d)], check=True)
        for i in range(25, 30):
            put(f, i, 1000.0 + i)
        f.close()
        assert said == ["start", "end"]
        assert b"[oxtui] 25 lines not written (Read-only file system)" in (d / "app.log").read_bytes()
        assert numbers(d / "app.log") == list(range(25, 30))
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True, check=False)


def test_logs_with_no_engine_reads_rotated_and_gzipped_files_too(tmp_path):
    from oxtui.cli.logfiles import read
    from oxtui.oxfile.config import load
    (tmp_path / "oxfile.toml").write_text('[logs]\ndir = "logs"\ncompress = true\nkeep = 3\n'
                                          '[processes.app]\ncommand = "true"\n')
    cfg = load(tmp_path / "oxfile.toml")
    f = LogFile(cfg.logs.dir / "app.log", 10**9, 3, max_age=10.0, compress=True)
    t0 = time.time()
    for i in range(30):
        put(f, i, t0 + i)
    f.close()
    assert sorted(p.name for p in cfg.logs.dir.iterdir()) == ["app.log", "app.log.1.gz", "app.log.2.gz"]
    got = read(cfg, "app", 25)
    assert [int(line[4].split()[1]) for line in got] == list(range(5, 30)), "newest last, across the files"


async def test_a_trouble_ends_by_itself_when_the_disk_is_back_though_no_line_comes(tmp_path):
    """The hub tries a file in trouble again each second, lines or not: status and the event say it
    ended without waiting for the app's next line."""
    from oxtui.engine.logs import LogHub
    from oxtui.oxfile.model import LogsConfig
    (tmp_path / "logs").mkdir()
    path = tmp_path / "logs" / "app.log"
    path.symlink_to("/dev/full")
    hub = LogHub(LogsConfig(dir=tmp_path / "logs"))
    said: list[str] = []
    hub.on_trouble = lambda kind, name, t: said.append(f"{kind} {name} {t.lines}")
    hub.on_pending = hub.flush
    hub.emit_bytes("app", 0, "out", b"one\ntwo")
    assert said == ["start app 2"] and hub.trouble("app") is not None
    path.unlink()
    deadline = time.monotonic() + 5
    while hub.trouble("app") is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert said == ["start app 2", "end app 2"] and hub.trouble("app") is None
    assert "[oxtui] 2 lines not written (No space left on device)" in path.read_text()
    hub.close()


async def test_journal_entries_the_socket_cannot_take_wait_and_go_in_order(tmp_path):
    """A datagram socket whose reader stops reading (as journald behind, its queue of 512 full): entries
    wait in the backlog, then go when the socket is writable again, all of them, in order."""
    import socket as so

    from oxtui.engine.journald import Journald
    from oxtui.protocol import LogBatch
    server = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
    server.bind(str(tmp_path / "journal.sock"))
    sink = Journald("/x/oxfile.toml", str(tmp_path / "journal.sock"))
    got: list[int] = []

    def send(numbers: range) -> None:
        for i in numbers:
            sink(LogBatch(0, time.time(), "web", 0, "out", f"line {i}".encode(), 1, pid=42))
    send(range(1500))
    assert sink.status()["waiting"] > 0 and sink.dropped == 0
    server.setblocking(False)
    with contextlib.suppress(BlockingIOError):     # room in the socket again, before the loop drains the backlog
        while True:                                 # (its queue: net.unix.max_dgram_qlen, 10 to 512 datagrams)
            got.append(int(re.search(rb"MESSAGE=line (\d+)\n", server.recv(65536)).group(1)))
    assert got
    send(range(1500, 3000))        # behind what waits, never ahead of it
    deadline = time.monotonic() + 10
    while len(got) < 3000 and time.monotonic() < deadline:
        try:
            entry = server.recv(65536)
            got.append(int(re.search(rb"MESSAGE=line (\d+)\n", entry).group(1)))
            assert b"OXTUI_PID=42\n" in entry and b"PRIORITY=6\n" in entry and b"OXTUI_STREAM=stdout\n" in entry
        except BlockingIOError:
            await asyncio.sleep(0.001)
    assert got == list(range(3000)) and sink.sent == 3000 and sink.status()["waiting"] == 0
    sink.close()
    server.close()
