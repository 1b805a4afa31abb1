"""The engine in-process against real children, real signals and a real shared socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import conftest
import psutil
import pytest
from conftest import APPS, PY, await_until, free_port, gone, http_get, run_engine, write_oxfile

from oxtui.engine import AlreadyRunning, Engine, EngineError
from oxtui.oxfile.config import load


def group_of(engine: Engine, name: str = "app"):
    return engine.groups[name]


def running(engine: Engine, name: str = "app"):
    return [w for _, w in sorted(group_of(engine, name).workers.items()) if w.state == "running"]


async def started(path: Path) -> Engine:
    engine = Engine(load(path))
    await engine.start()
    return engine


@contextlib.asynccontextmanager
async def engine_at(path: Path):
    """An engine that is shut down however the test body ends."""
    engine = await started(path)
    try:
        yield engine
    finally:
        await engine.shutdown()


def app_oxfile(tmp_path: Path, port: int, instances: int = 3, extra: str = "") -> Path:
    return conftest.app_oxfile(tmp_path, port, instances, extra=f"stop_timeout = 5\n{extra}", ready="timeout = 10")


def test_instances_share_one_port_and_get_their_environment(tmp_path):
    port = free_port()
    path = app_oxfile(tmp_path, port)

    async def body():
        async with engine_at(path) as engine:
            await await_until(lambda: len(running(engine)) == 3, 15, what="3 running")
            pids = {w.pid for w in running(engine)}
            # One socket: every instance's fd 3 is the same open socket (one inode) ...
            assert len({os.stat(f"/proc/{p}/fd/3").st_ino for p in pids}) == 1
            # ... and more than one instance accepts from it. Which one wins an accept is the kernel's
            # choice, so ask concurrently (8 at a time) until two have answered, within a bound.
            seen: set[int] = set()
            deadline = time.monotonic() + 20
            while len(seen) < 2 and time.monotonic() < deadline:
                answers = await asyncio.gather(*(asyncio.to_thread(http_get, port, "/slow?s=0.05") for _ in range(8)))
                seen |= {int(text.split()[1]) for _, text in answers}
            assert seen <= pids and len(seen) >= 2, (seen, pids)
            w = running(engine)[1]
            env = psutil.Process(w.pid).environ()
            assert env["OXTUI_PROCESS"] == "app" and env["OXTUI_INSTANCE"] == "1" and env["NODE_APP_INSTANCE"] == "1"
            assert env["LISTEN_FDS"] == "1" and env["LISTEN_PID"] == str(w.pid) and env["LISTEN_FDNAMES"] == "app"
            assert env["PORT"] == str(port) and env["HOST"] == "127.0.0.1" and env["PYTHONUNBUFFERED"] == "1"
            proc = psutil.Process(w.pid)
            assert proc.cmdline()[:2] == [PY, str(APPS / "app.py")], "the command was not exec'd"
            assert os.getpgid(w.pid) == w.pid and os.getsid(w.pid) == w.pid
            fds = sorted(int(fd) for fd in os.listdir(f"/proc/{w.pid}/fd"))
            assert fds[:4] == [0, 1, 2, 3]
            assert os.readlink(f"/proc/{w.pid}/fd/0") == "/dev/null"

    run_engine(body)


def test_kill_9_replaces_the_slot_and_counts_a_restart(tmp_path):
    port = free_port()
    path = app_oxfile(tmp_path, port, instances=2)

    async def body():
        async with engine_at(path) as engine:
            await await_until(lambda: len(running(engine)) == 2, 15)
            w = group_of(engine).workers[0]
            old = w.pid
            os.kill(old, signal.SIGKILL)
            await await_until(lambda: w.state == "running" and w.pid != old, 10, what="replacement")
            assert w.restarts == 1 and not psutil.pid_exists(old), "old pid not reaped"
            snap = engine.snapshot()["processes"][0]["workers"][0]
            assert snap["restarts"] == 1 and snap["pid"] == w.pid and snap["state"] == "running"
            engine.logs.flush()
            log = (tmp_path / "logs" / "app.log").read_text()
            assert f"pid {old} exited with signal SIGKILL" in log

    run_engine(body)


def test_missing_command_backs_off_then_parks_errored(tmp_path):
    path = write_oxfile(tmp_path, '''
        [processes.app]
        command = "no-such-program-oxtui --flag"
        backoff = 0.05
        backoff_max = 0.2
        max_restarts = 5
        restart_window = 30
    ''')

    async def body():
        async with engine_at(path) as engine:
            w = group_of(engine).workers[0]
            await await_until(lambda: w.state == "errored", 15, what="errored")
            assert w.exit_code == 127 and w.restarts == 4
            assert "crash loop" in w.reason
            engine.logs.flush()
            log = (tmp_path / "logs" / "app.log").read_text()
            assert "no-such-program-oxtui: not found" in log and "restarting in" in log
            # start takes it out of the park, with a fresh policy: it tries max_restarts times again
            await engine.execute({"cmd": "start", "name": "app"})
            await await_until(lambda: w.state != "errored", 5)
            await await_until(lambda: w.state == "errored", 15, what="errored again")
            assert w.restarts == 8, "after start, four more restarts before the crash loop is declared again"
            await engine.execute({"cmd": "start", "name": "app"})
            await await_until(lambda: w.state in ("starting", "backoff"), 5)
        assert w.state == "stopped", "the shutdown stops a worker that is between restarts"

    run_engine(body)


def test_backoff_delays_grow(tmp_path):
    """The engine waits at least the policy's delay before each restart. A busy machine can only make
    a restart later, never earlier, so lower bounds are all that is asserted here; the policy's own
    numbers are tested exactly (with an injected clock) in test_backoff_policy_*."""
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} -c 'import sys; sys.exit(2)'"
        backoff = 0.2
        backoff_max = 5
        max_restarts = 100
    ''')

    async def body():
        engine = await started(path)
        starts: list[float] = []
        exits: list[float] = []
        engine.logs.subscribers.append(
            lambda b: starts.append(b.ts) if b.stream == "event" and b.lines[0].startswith("started pid") else None)
        engine.logs.subscribers.append(
            lambda b: exits.append(b.ts) if b.stream == "event" and " exited " in f" {b.lines[0]} " else None)
        try:
            await await_until(lambda: len(starts) >= 5, 20, what="5 starts")
        finally:
            await engine.shutdown()
        # restart n (n >= 2) waits base * 2**(n-2), less at most a quarter of jitter, after the exit
        for n in (2, 3, 4):
            waited = starts[n] - exits[n - 1]
            assert waited >= 0.2 * 2 ** (n - 2) * 0.75, (n, waited)

    run_engine(body)


def test_sigterm_ignored_means_sigkill_after_stop_timeout(tmp_path):
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'ignore_term.py'}"
        stop_timeout = 1
    ''')

    async def body():
        engine = await started(path)
        w = group_of(engine).workers[0]
        await await_until(lambda: w.state == "running", 10)
        pid = w.pid
        t0 = time.monotonic()
        await engine.shutdown()
        took = time.monotonic() - t0
        assert took >= 1.0, f"SIGKILL before stop_timeout had passed ({took:.2f} s)"     # (no upper bound: load)
        assert w.exit_signal == "SIGKILL" and not psutil.pid_exists(pid)
        assert "ignored SIGTERM for 1s: SIGKILL" in (tmp_path / "logs" / "app.log").read_text()

    run_engine(body)


def test_grandchild_in_the_group_is_gone_after_stop(tmp_path):
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'forker.py'}"
        stop_timeout = 1
    ''')

    async def body():
        engine = await started(path)
        w = group_of(engine).workers[0]
        await await_until(lambda: (tmp_path / "grandchild.pid").exists() and w.state == "running", 10)
        grandchild = int((tmp_path / "grandchild.pid").read_text())
        assert psutil.pid_exists(grandchild)
        await engine.shutdown()
        assert w.exit_code == 0
        await await_until(lambda: not alive(grandchild), 5)

    run_engine(body)


@pytest.mark.parametrize("how", ["stop", "scale"])
def test_stop_or_scale_down_kills_a_grandchild_that_ignores_sigterm(tmp_path, how):
    """While the engine keeps running: only a kill of the whole process group reaches the grandchild
    (the spawner's sweep of orphans happens when the engine goes, so it cannot hide a missing one)."""
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'forker.py'}"
        instances = 1
        stop_timeout = 1
    ''')

    async def body():
        async with engine_at(path) as engine:
            w = group_of(engine).workers[0]
            await await_until(lambda: (tmp_path / "grandchild.pid").exists() and w.state == "running", 10)
            grandchild = int((tmp_path / "grandchild.pid").read_text())
            if how == "stop":
                await engine.execute({"cmd": "stop", "name": "app"})
            else:
                await engine.execute({"cmd": "scale", "name": "app", "n": 0})
            assert not engine.stopping
            await await_until(lambda: not alive(grandchild), 5, what="the grandchild killed with its group")

    run_engine(body)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_crashed_worker_leftovers_are_killed_before_restart(tmp_path):
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'forker.py'}"
        stop_timeout = 1          # its grandchild shrugs off SIGTERM: the final shutdown need not wait 10 s
    ''')

    async def body():
        async with engine_at(path) as engine:
            w = group_of(engine).workers[0]
            await await_until(lambda: (tmp_path / "grandchild.pid").exists() and w.state == "running", 10)
            grandchild = int((tmp_path / "grandchild.pid").read_text())
            (tmp_path / "grandchild.pid").unlink()
            os.kill(w.pid, signal.SIGKILL)
            await await_until(lambda: gone(grandchild), 5)
            await await_until(lambda: w.state == "running" and w.restarts == 1, 10)

    run_engine(body)


def test_scale_up_and_down(tmp_path):
    port = free_port()
    path = app_oxfile(tmp_path, port, instances=1)

    async def body():
        async with engine_at(path) as engine:
            await await_until(lambda: len(running(engine)) == 1, 15)
            first = running(engine)[0].pid
            assert await engine.execute({"cmd": "scale", "name": "app", "n": 2, "relative": True}) == \
                {"name": "app", "before": 1, "instances": 3}
            await await_until(lambda: len(running(engine)) == 3, 15)
            doomed = [w.pid for w in running(engine)[1:]]
            await engine.execute({"cmd": "scale", "name": "app", "n": 1})
            assert sorted(group_of(engine).workers) == [0] and running(engine)[0].pid == first
            assert not any(psutil.pid_exists(p) for p in doomed)
            await engine.execute({"cmd": "scale", "name": "app", "n": 0})
            assert group_of(engine).workers == {} and not psutil.pid_exists(first)

    run_engine(body)


def test_restart_on_exit_false_leaves_it_completed(tmp_path):
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} -c 'print(42)'"
        restart_on_exit = false
    ''')

    async def body():
        async with engine_at(path) as engine:
            w = group_of(engine).workers[0]
            await await_until(lambda: w.state == "completed", 10)
            assert w.exit_code == 0 and w.restarts == 0
            await asyncio.sleep(0.3)      # a restart would have begun by now (the first one is immediate)
            assert w.state == "completed"

    run_engine(body)


def test_max_memory_restarts_the_instance(tmp_path):
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} -c 'import time; b = bytearray(80 * 2**20); b[::4096] = b\\"x\\" * len(b[::4096]); print(1, flush=True); time.sleep(60)'"
        max_memory = "50M"
    ''')

    async def body():
        async with engine_at(path) as engine:
            w = group_of(engine).workers[0]
            await await_until(lambda: w.restarts >= 1, 15, what="memory restart")
            assert "over max_memory" in w.reason

    run_engine(body)


def test_address_in_use_is_a_clear_startup_error(tmp_path):
    import socket
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    path = app_oxfile(tmp_path, port)

    async def body():
        engine = Engine(load(path))
        with pytest.raises(EngineError, match=rf"\[processes\.app\] listen: 127\.0\.0\.1:{port} is already in use"):
            await engine.start()

    try:
        run_engine(body)
    finally:
        holder.close()


def test_second_engine_for_the_same_oxfile_is_refused(tmp_path):
    path = write_oxfile(tmp_path, '[processes.app]\ncommand = "sleep 30"\n')

    async def body():
        async with engine_at(path):
            with pytest.raises(AlreadyRunning, match="an engine is already running for this oxfile"):
                await Engine(load(path)).start()

    run_engine(body)


def test_every_line_of_a_100k_line_child_reaches_the_file(tmp_path):
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'lines.py'} 100000"
        [logs]
        dir = "logs"
        max_size = "100M"
    ''')

    async def body():
        async with engine_at(path) as engine:
            await await_until(lambda: any("done" in b.lines for b in engine.logs.logs["app"].ring), 30, what="done")

    run_engine(body)
    numbers = [line.split(" | line ", 1)[1][:7] for line in (tmp_path / "logs" / "app.log").read_text().splitlines()
               if " | line " in line]
    assert numbers == [f"{i:07d}" for i in range(100000)]


def test_rotation_keeps_the_configured_number_of_files(tmp_path):
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} {APPS / 'lines.py'} 30000"
        [logs]
        dir = "logs"
        max_size = 500000
        keep = 3
    ''')

    async def body():
        async with engine_at(path) as engine:
            await await_until(lambda: any("done" in b.lines for b in engine.logs.logs["app"].ring), 30)

    run_engine(body)
    files = sorted(p.name for p in (tmp_path / "logs").iterdir() if p.name.startswith("app.log"))
    assert files == ["app.log", "app.log.1", "app.log.2", "app.log.3"]
    assert all(p.stat().st_size <= 500000 for p in (tmp_path / "logs").iterdir())


def test_partial_lines_binary_and_huge_lines_are_captured(tmp_path):
    (tmp_path / "odd.py").write_text(
        "import sys, time\n"
        "o = sys.stdout.buffer\n"
        "o.write(b'no newline yet'); o.flush(); time.sleep(0.2)\n"
        "o.write(b' -- now\\n\\xff\\xfe bad utf8\\n' + b'y' * 1048576 + b'\\nafter\\n'); o.flush()\n"
        "o.write(b'tail without newline'); o.flush()\n")
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} odd.py"
        restart_on_exit = false
    ''')

    async def body():
        async with engine_at(path) as engine:
            w = group_of(engine).workers[0]
            await await_until(lambda: w.state == "completed", 10)
            lines = [l for b in engine.logs.logs["app"].ring if b.stream == "out" for l in b.lines]
        assert lines[0] == "no newline yet -- now"
        assert lines[1] == "\ufffd\ufffd bad utf8"
        assert "".join(lines[2:-2]) == "y" * 1048576 and max(map(len, lines)) <= 16 * 1024
        assert lines[-2:] == ["after", "tail without newline"]

    run_engine(body)


def test_a_daemonising_grandchild_is_ended_with_the_engine(tmp_path):
    (tmp_path / "daemon.py").write_text(
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        open('daemon.pid', 'w').write(str(os.getpid()))\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "print('parent carries on', flush=True)\n"
        "time.sleep(600)\n")
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} daemon.py"
        stop_timeout = 1
    ''')

    async def body():
        async with engine_at(path) as engine:
            # (under load the grandchild can write its file before the engine has heard the worker's pid)
            await await_until(lambda: (tmp_path / "daemon.pid").exists() and (tmp_path / "daemon.pid").read_text()
                              and group_of(engine).workers[0].pid, 10)
            daemon = int((tmp_path / "daemon.pid").read_text())
            assert os.getsid(daemon) != os.getsid(group_of(engine).workers[0].pid), "it left the group"
        await await_until(lambda: gone(daemon), 5)

    run_engine(body)


def test_a_dead_spawner_helper_is_replaced_and_its_instances_restart(tmp_path):
    path = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 60"
        instances = 2
    ''')

    async def body():
        async with engine_at(path) as engine:
            await await_until(lambda: len(running(engine)) == 2, 10)
            old = {w.pid for w in running(engine)}
            helper = engine.spawner._proc.pid
            os.kill(helper, signal.SIGKILL)
            await await_until(lambda: len(running(engine)) == 2 and not ({w.pid for w in running(engine)} & old), 15,
                              what="both instances replaced through a new helper")
            assert engine.spawner._proc.pid != helper
            assert all(w.restarts == 1 for w in running(engine))
            assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in old)

    run_engine(body)


def sleeper_oxfile(tmp_path: Path) -> Path:
    """One `sleep` instance whose first restart is immediate."""
    return write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 60"
        backoff = 0
    ''')


def _spare_of(helper: int) -> int | None:
    kids = [c for c in psutil.Process(helper).children() if c.name() == "oxtui-spare"]
    assert len(kids) <= 1, "one spare at most"
    return kids[0].pid if kids else None


def test_a_restart_is_handed_to_the_waiting_spare_and_a_dead_spare_is_not_needed(tmp_path):
    path = sleeper_oxfile(tmp_path)

    async def body():
        async with engine_at(path) as engine:
            await await_until(lambda: len(running(engine)) == 1, 10)
            helper = engine.spawner._proc.pid
            spare = await await_until(lambda: _spare_of(helper), 5, what="a spare forked while idle")
            assert spare not in {w.pid for w in running(engine)}
            # waiting, it holds its stdio and its own socket, not the helper's socket to the engine
            assert psutil.Process(spare).num_fds() == 4
            w = running(engine)[0]
            old = w.pid
            os.kill(old, signal.SIGKILL)
            await await_until(lambda: w.state == "running" and w.pid not in (None, old), 10, what="replacement")
            assert w.pid == spare, "the waiting spare became the replacement"
            p = psutil.Process(spare)
            assert p.cmdline() == ["sleep", "60"] and os.getsid(spare) == spare
            assert sorted(f.fd for f in p.open_files()) == [] and p.num_fds() == 3, "only 0, 1, 2 are left open"
            new_spare = await await_until(lambda: _spare_of(helper), 5, what="a new spare")
            assert new_spare != spare
            # A spare that died unused, its death not yet seen by the helper when a request comes
            # (the helper is stopped meanwhile): that request is forked instead, nothing is lost.
            # A spawn waits for the helper's answer on the loop, so a thread wakes the helper once
            # the request is on its way.
            asked = threading.Event()
            spawn = engine.spawner.spawn

            def spawn_and_tell(*args, **kw):
                asked.set()
                return spawn(*args, **kw)

            def wake() -> None:
                asked.wait(10)
                time.sleep(0.1)
                os.kill(helper, signal.SIGCONT)

            waker = threading.Thread(target=wake)
            os.kill(helper, signal.SIGSTOP)
            try:
                await await_until(lambda: psutil.Process(helper).status() == psutil.STATUS_STOPPED, 5)
                os.kill(new_spare, signal.SIGKILL)
                engine.spawner.spawn = spawn_and_tell
                waker.start()
                await group_of(engine).scale(2)
                await await_until(lambda: len(running(engine)) == 2, 10, what="the second instance")
            finally:
                asked.set()
                waker.join()
                engine.spawner.spawn = spawn
            second = group_of(engine).workers[1].pid
            assert second != new_spare and psutil.Process(second).cmdline() == ["sleep", "60"]
            assert group_of(engine).workers[1].restarts == 0, "started at the first attempt"
            assert not psutil.pid_exists(new_spare), "the dead spare was reaped"

    run_engine(body)


def test_a_scale_down_while_instances_are_being_spawned_leaves_none_running(tmp_path):
    """Spawns are pipelined (several requests in flight to the helper): a worker stopped while its
    request is in flight must still have its process ended, not left running unwatched."""
    path = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 60"
        instances = 0
        stop_timeout = 30
    ''')

    async def body():
        async with engine_at(path) as engine:
            group = group_of(engine)
            for n in (40, 0, 25, 0):
                await group.scale(n)
                await asyncio.sleep(0.01 if n else 0)
            await asyncio.sleep(0.5)
            engine.logs.flush()
            # stopped by SIGTERM: one that reached an instance before its exec was not ignored
            assert "ignored SIGTERM" not in (tmp_path / "logs" / "app.log").read_text()
            helper = psutil.Process(engine.spawner._proc.pid)
            left = [c for c in helper.children() if c.status() != psutil.STATUS_ZOMBIE and c.name() != "oxtui-spare"]
            assert not left, f"instances left running after the scale to 0: {[c.cmdline() for c in left]}"
            await group.scale(3)
            await await_until(lambda: len(running(engine)) == 3, 10, what="it still starts instances")

    run_engine(body)


async def test_a_spawn_cancelled_in_flight_ends_what_the_helper_started(tmp_path):
    from oxtui.engine.spawn import Spawner

    spawner = Spawner()
    try:
        # the first spawn starts the helper; its instance is ended the normal way
        first = await spawner.spawn("sleep 60", str(tmp_path), dict(os.environ))
        os.kill(first.pid, signal.SIGKILL)
        await spawner.exited(first.pid)
        task = asyncio.ensure_future(spawner.spawn("sleep 61", str(tmp_path), dict(os.environ)))
        await asyncio.sleep(0)              # sent; now waiting for the helper's answer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        helper = psutil.Process(spawner._proc.pid)
        await asyncio.sleep(1.0)            # time to exec, had it been left running
        running = [c.cmdline() for c in helper.children() if c.status() != psutil.STATUS_ZOMBIE]
        assert ["sleep", "61"] not in running, "the abandoned instance was ended"
        assert not spawner._early, "its exit was taken by a throwaway waiter, not kept"
    finally:
        spawner.close()


def test_a_helper_that_stops_answering_is_replaced_and_the_loop_never_waits_on_it(tmp_path):
    path = sleeper_oxfile(tmp_path)

    async def body():
        async with engine_at(path) as engine:
            await await_until(lambda: len(running(engine)) == 1, 10)
            helper = engine.spawner._proc.pid
            os.kill(helper, signal.SIGSTOP)
            ticks = 0

            async def tick():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            ticker = asyncio.ensure_future(tick())
            try:
                await group_of(engine).scale(2)
                await await_until(lambda: engine.spawner._proc is None or engine.spawner._proc.pid != helper, 10,
                                  what="the stopped helper given up")
                assert ticks >= 10, f"the loop kept running while the helper did not answer ({ticks} ticks)"
            finally:
                ticker.cancel()
            await await_until(lambda: len(running(engine)) == 2 and engine.spawner._proc.pid != helper, 15,
                              what="both instances through a new helper")
            engine.logs.flush()
            assert "no answer within 5s" in (tmp_path / "logs" / "app.log").read_text()
            assert gone(helper)

    run_engine(body)


def test_a_worker_without_a_process_is_never_running_and_its_last_words_are_recorded(tmp_path):
    """A daemon it left behind keeps its pipe open, so the drain of its output waits (up to 0.5 s):
    meanwhile it shows what comes next, never `running` with no pid. And what it wrote right before it
    died is in the exit record: the pipe is drained before the record is made."""
    last = "LAST WORDS"
    path = write_oxfile(tmp_path, f'''
        [processes.app]
        command = "{PY} -c 'import os, subprocess, sys, time\\nsubprocess.Popen([\\"setsid\\", \\"sleep\\", \\"30\\"])\\ntime.sleep(1.2)\\nfor i in range(20000): print(\\"filler\\", i)\\nprint(\\"{last}\\", flush=True)\\nos._exit(3)'"
        backoff = 30
    ''')

    async def body():
        async with engine_at(path) as engine:
            w = group_of(engine).workers[0]
            seen: list[tuple[str, int | None]] = []
            deadline = asyncio.get_running_loop().time() + 15
            while w.last_exit is None and asyncio.get_running_loop().time() < deadline:
                snap = engine.snapshot()["processes"][0]["workers"][0]
                seen.append((snap["state"], snap["pid"]))
                await asyncio.sleep(0.002)
            assert w.last_exit is not None, "it exited"
            assert ("running", None) not in seen, "running with no pid"
            assert ("backoff", None) in seen, "while its output drained it waited to restart"
            assert w.last_exit["tail"][-1] == last, w.last_exit["tail"][-3:]
            assert w.last_exit["code"] == 3

    run_engine(body)


def test_a_stop_ends_even_when_the_exit_report_never_comes(tmp_path, monkeypatch):
    """The keeper reports an instance's end to the engine it knows; a report sent to an engine that died
    before reading it is lost, and the engine that took over must not wait for it for ever at a stop:
    once the pid is no longer the keeper's child it counts as killed (worker.LOST_EXIT_CHECK)."""
    from oxtui.engine import worker as worker_mod
    monkeypatch.setattr(worker_mod, "LOST_EXIT_CHECK", 0.2)
    path = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 600"
        stop_timeout = 0.3
    ''')

    async def body():
        async with engine_at(path) as engine:
            w = await await_until(lambda: (w := group_of(engine).workers[0]).pid and w, 10)
            pid = w.pid
            spawner = engine.spawner
            real = spawner._handle          # the keeper's report of this pid's end goes nowhere
            monkeypatch.setattr(spawner, "_handle", lambda msg, fds: None if msg.get("exit") == pid else real(msg, fds))
            began = time.monotonic()
            await asyncio.wait_for(group_of(engine).stop(), 10)
            assert time.monotonic() - began < 5
            assert gone(pid) and w.exit_signal == "SIGKILL"
            assert "its end was never reported: taken as killed" in (tmp_path / "logs" / "app.log").read_text()

    run_engine(body)


def test_an_instance_of_several_processes_has_its_tree_sampled_and_it_goes_with_its_process(tmp_path):
    path = write_oxfile(tmp_path, '''
        [processes.app]
        command = "sleep 60 & sleep 61 & wait"
        restart = "never"
    ''')

    async def body():
        engine = await started(path)
        try:
            w = group_of(engine).workers[0]
            await await_until(lambda: w.state == "running", 10)

            async def sampled_tree() -> bool:
                engine.sampling.looked_at()         # as a status request does: fresh figures
                await engine.sampling.fresh()
                return len(w.tree) == 3
            deadline = time.monotonic() + 10
            while not await sampled_tree():
                assert time.monotonic() < deadline, f"the shell and its two sleeps, sampled: {w.tree}"
                await asyncio.sleep(0.1)
            assert sorted(m.command for m in w.tree if m.ppid == w.pid) == ["sleep 60", "sleep 61"]
            assert engine.snapshot()["processes"][0]["workers"][0]["tree"][0]["pid"] == w.pid
            os.killpg(w.pid, signal.SIGKILL)
            await await_until(lambda: w.pid is None, 10)
            assert w.tree == () and engine.snapshot()["processes"][0]["workers"][0]["tree"] == [], \
                "a process that is gone has no tree to show"
        finally:
            await engine.shutdown()

    run_engine(body)
