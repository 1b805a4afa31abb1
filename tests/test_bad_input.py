"""Bad input never breaks anything: random oxfiles, hostile output from a child, strangers on the
control socket."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import time
from pathlib import Path

import psutil
from conftest import PY, oxtui_cli, write_oxfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oxtui.cli.main import main
from oxtui.oxfile.config import PROCESS_KEYS, READY_KEYS, ConfigError, from_dict

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.lists(st.text(max_size=5), max_size=3))
keys = st.one_of(st.sampled_from(sorted(PROCESS_KEYS)), st.text(min_size=1, max_size=12))
process_tables = st.dictionaries(keys, st.one_of(scalars, st.dictionaries(
    st.one_of(st.sampled_from(sorted(READY_KEYS)), st.text(min_size=1, max_size=8)), scalars, max_size=4)),
    max_size=8)
documents = st.dictionaries(st.one_of(st.just("processes"), st.just("logs"), st.text(min_size=1, max_size=8)),
                            st.one_of(scalars, st.dictionaries(st.text(min_size=1, max_size=10), process_tables,
                                                               max_size=3)), max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_any_document_validates_or_fails_with_lines_that_name_the_file(doc):
    oxfile = Path("/nonexistent/oxfile.toml")
    try:
        from_dict(doc, oxfile)
    except ConfigError as e:
        assert e.errors
        for line in e.errors:
            assert line.startswith(f"{oxfile}: "), line
            assert "\n" not in line
            # every error says where: a table, a top-level key, or the file as a whole
            assert "[" in line or "top-level" in line or "processes" in line, line


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_check_never_prints_a_traceback(tmp_path, data):
    """`oxtui check` on any bytes: exit 0 or 2 with lines, never an exception. Run in this process
    (the CLI's own main(), its output captured): an exception escaping it is what would print a
    traceback, and 100 files take a second instead of 25 taking half a minute as subprocesses.
    test_check_in_a_process_of_its_own runs the real command once."""
    path = tmp_path / "oxfile.toml"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["check", str(path)])
        except SystemExit as e:
            code = e.code
    assert code in (0, 2), (code, err.getvalue())
    assert "Traceback" not in err.getvalue() + out.getvalue()


def test_check_in_a_process_of_its_own(tmp_path):
    path = tmp_path / "oxfile.toml"
    path.write_bytes(b"[processes.web]\ncommand = 3\n\xff\xfe")
    r = oxtui_cli("check", str(path), timeout=30)
    assert r.returncode == 2 and r.stderr.startswith(f"{path}: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_a_stranger_cannot_reach_the_control_socket(tmp_path, engine_process, monkeypatch):
    import pytest

    from oxtui.runtime import socket_path
    python = "/usr/bin/python3"    # the venv's interpreter may sit where another user cannot read
    if os.getuid() != 0 or not os.access(python, os.X_OK):
        pytest.skip("needs root and a system python3 to act as another user")
    # A runtime folder that others may traverse, so only oxtui's own permissions stand in the way.
    shared = Path(f"/tmp/oxtui-perm-test-{os.getpid()}")
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    monkeypatch.setenv("OXTUI_RUNTIME_DIR", str(shared))
    try:
        ep = engine_process(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\n'))
        path = socket_path(ep.oxfile)
        probe = ("import socket, sys\n"
                 "s = socket.socket(socket.AF_UNIX)\n"
                 "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    print('denied')\n"
                 "else:\n    print('CONNECTED')\n")

        def as_nobody() -> str:
            r = subprocess.run([python, "-c", probe, str(path)], capture_output=True, text=True, timeout=30,
                               user=65534, group=65534, env={"PATH": "/usr/bin:/bin"}, check=False)
            return r.stdout.strip() + r.stderr
        assert as_nobody() == "denied"
        # the probe can tell: with open permissions the same user gets in
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o666)
        assert as_nobody() == "CONNECTED"
        os.chmod(path.parent, 0o700)
        os.chmod(path, 0o600)
        assert ep.cli("status").returncode == 0
        ep.stop()
    finally:
        import shutil
        shutil.rmtree(shared, ignore_errors=True)


def test_truncated_requests_are_answered_and_harmless(tmp_path, engine_process):
    import json

    from oxtui.runtime import socket_path
    ep = engine_process(write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 60"\n'))
    for junk in (b'{"cmd": "sta', b"\x00\x01\x02", b'{"cmd": "scale", "name": "app", "n": "x"}\n'):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(socket_path(ep.oxfile)))
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            reply = s.makefile("rb").readline()
            assert json.loads(reply)["ok"] is False
    assert ep.cli("status").returncode == 0


def test_a_child_writing_100_mb_without_newline_keeps_engine_memory_bounded(tmp_path, engine_process):
    (tmp_path / "spew.py").write_text(
        "import os, sys, time\n"
        "chunk = b'\\xff\\xfe' + b'x' * (1 << 20)\n"
        "for _ in range(100):\n"
        "    os.write(1, chunk)\n"
        "os.write(2, b'spew done\\n')\n"
        "time.sleep(600)\n")
    ep = engine_process(write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} spew.py"
        [logs]
        dir = "logs"
        max_size = "20M"
        keep = 2
    '''))
    engine = psutil.Process(ep.proc.pid)
    peak = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        peak = max(peak, engine.memory_info().rss)
        if "spew done" in ep.cli("logs", "app", "-n", "3").stdout:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the child never finished writing")
    assert peak < 150 * 2**20, f"engine RSS reached {peak / 2**20:.0f} MB for 100 MB of output"
    assert ep.cli("status").returncode == 0
    sizes = [p.stat().st_size for p in (tmp_path / "logs").iterdir()]
    assert max(sizes) <= 20 * 2**20 + 64 * 1024


@given(st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")), max_size=40),
       st.booleans(), st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=20))
@settings(max_examples=300, deadline=None)
def test_line_splitter_gives_back_exactly_the_lines_however_the_chunks_fall(lines, end_newline, cuts):
    from oxtui.engine.logs import LineSplitter
    data = b"\n".join(lines) + (b"\n" if end_newline and lines else b"")
    sp, blobs, pos, k = LineSplitter(), [], 0, 0
    while pos < len(data):
        size = cuts[k % len(cuts)]
        k += 1
        blob = sp.feed(data[pos:pos + size])
        pos += size
        if blob is not None:
            blobs.append(bytes(blob))
    tail = sp.flush()
    got = b"\n".join(blobs)
    if tail:
        got = got + b"\n" + tail if blobs else tail
    want = data[:-1] if data.endswith(b"\n") else data
    assert got == want
