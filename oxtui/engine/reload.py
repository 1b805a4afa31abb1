"""Rolling reload: surge, never fewer ready instances than wanted, stop at the first failure.

    canary (when ready.http) -> for each batch of max_surge slots, together:
                                start replacement -> ready? -> stable (min_ready)? -> drain old
                                                         |            |
                                                         +-- no ------+--> failed: kill the new one,
                                                                          the old keeps serving
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..oxfile.values import surge_count
from ..protocol import ReloadKind, ReloadSlot, ReloadSnapshot, ReloadState, ReloadWhy
from . import checks
from .sockets import bind_listener

if TYPE_CHECKING:
    from ..oxfile.config import ProcessConfig
    from .worker import Worker


class ReloadHost(Protocol):
    """What a reload (or a task's run) may use of its process group."""

    name: str
    cfg: ProcessConfig
    target: int
    sock: socket.socket | None
    workers: dict[int, Worker]
    extra: list[Worker]            # the surge instances and the canary, while they exist

    def new_worker(self, slot: int, role: str | None = None, listen_fd: int | None = None) -> Worker: ...
    def event(self, who: Worker | None, text: str) -> None: ...
    def publish(self, who: Worker | None, event: str, text: str, **fields: Any) -> None: ...
    def changed(self) -> None: ...

DEFAULT_TIMEOUT = 30.0


class ReloadFailed(Exception):
    pass


class Run:
    """What a reload of either kind shows in status and the UI (RollingReload, TaskRun)."""

    kind: ReloadKind = "rolling"

    def __init__(self, group: ReloadHost, release: int, progress: Callable[[str], None] | None,
                 why: ReloadWhy = "reload"):
        self.group, self.release, self.progress, self.why = group, release, progress, why
        self.state: ReloadState = "running"       # running -> done | failed | cancelled
        self.slot: int | str | None = None
        self.step = "starting"
        self.reason: str | None = None
        self.slots: list[ReloadSlot] = []
        self.started = time.time()
        self.finished: float | None = None
        self.tail: list[str] = []      # the last lines of the new instance (or canary) that failed

    @property
    def active(self) -> bool:
        return self.state == "running"

    def snapshot(self) -> ReloadSnapshot:
        return {"state": self.state, "release": self.release, "slot": self.slot, "step": self.step,
                "reason": self.reason, "slots": [ReloadSlot(**s) for s in self.slots], "started_at": self.started,
                "finished_at": self.finished, "kind": self.kind, "tail": list(self.tail), "why": self.why}


class Carried:
    """How the last reload ended, carried over a hand-over (carry.py): status still shows it."""

    active = False
    slot = None

    def __init__(self, snap: ReloadSnapshot):
        self._snap = snap
        self.state, self.reason, self.why = snap["state"], snap["reason"], snap.get("why", "reload")

    def snapshot(self) -> ReloadSnapshot:
        return self._snap


class RollingReload(Run):
    def __init__(self, group: ReloadHost, release: int, progress: Callable[[str], None] | None,
                 why: ReloadWhy = "reload"):
        super().__init__(group, release, progress, why)
        self._drains: list[asyncio.Future[None]] = []

    @property
    def timeout(self) -> float:
        ready = self.group.cfg.ready
        return ready.timeout if ready is not None else DEFAULT_TIMEOUT

    @property
    def min_ready(self) -> float:
        """A replacement (or the canary) that dies this soon after becoming ready fails the reload."""
        return self.group.cfg.reload.min_ready

    def say(self, text: str, event: str = "reload_step") -> None:
        self.step = text
        self.group.event(None, f"reload: {text}")
        self.group.publish(None, event, f"reload: {text}", release=self.release,
                           **({"reason": self.reason, "tail": self.tail} if event == "reload_failed" else {}))
        if self.progress is not None:
            self.progress(text)

    async def run(self) -> bool:
        group = self.group
        try:
            # Every old instance serves until its own replacement is ready, so at most `surge` extra
            # instances serve (besides the canary while it stops) and never fewer than `target` are ready.
            surge = surge_count(group.cfg.reload.max_surge, group.target)
            self.say(f"release {self.release}: replacing {group.target} instance(s), "
                     + ("one at a time" if surge == 1 else f"{surge} at a time"))
            ready = group.cfg.ready
            if ready is not None and ready.http and group.sock is not None:
                await self._canary(ready.http)
            slots = list(range(group.target))
            for i in range(0, len(slots), surge):
                batch = slots[i:i + surge]
                self.slot = batch[0] if len(batch) == 1 else f"{batch[0]}-{batch[-1]}"
                outcomes = await asyncio.gather(*(self._replace(s) for s in batch), return_exceptions=True)
                failed = [o for o in outcomes if isinstance(o, BaseException)]
                if failed:
                    raise failed[0]
            await asyncio.gather(*self._drains)
            self.state = "done"
            self.slot = None
            self.say(f"done: {group.target} instance(s) replaced in {time.time() - self.started:.1f}s", "reload_done")
            return True
        except ReloadFailed as e:
            self.state = "failed"
            self.reason = str(e)
            self.say(f"failed: {e}; the running instances keep serving", "reload_failed")
            return False
        except asyncio.CancelledError:
            self.state = "cancelled"
            self.reason = "cancelled (the process was stopped)"
            raise
        finally:
            if self._drains:      # a failed reload still lets the slots it replaced finish draining
                await asyncio.gather(*self._drains, return_exceptions=True)
            self.finished = time.time()
            if group.extra:
                leftovers, group.extra = group.extra, []
                await asyncio.gather(*(w.stop("reload") for w in leftovers))
            group.changed()

    async def _canary(self, path: str) -> None:
        group = self.group
        self.slot = "canary"
        priv = bind_listener("127.0.0.1", 0)
        port = priv.getsockname()[1]
        canary = group.new_worker(group.target, role="canary", listen_fd=priv.fileno())
        group.extra.append(canary)
        deadline = time.monotonic() + self.timeout
        passed = False
        try:
            canary.start()
            self.say(f"canary: started on private port {port}, waiting for GET {path} to answer 2xx")
            if group.cfg.ready is not None and group.cfg.ready.log is not None:
                await self._wait_ready(canary, deadline, "canary")
            last = "no answer"
            answered = False           # once the canary has answered, its answer is the reason to report
            while True:
                left = deadline - time.monotonic()
                if canary.ended.is_set():
                    raise ReloadFailed(f"canary {self._ended_how(canary)} before answering GET {path}")
                if left <= 0:
                    raise ReloadFailed(f"canary did not answer 2xx on GET {path} within {self.timeout:g}s ({last})")
                probe = asyncio.ensure_future(checks.http_get("127.0.0.1", port, path, left))
                ended = asyncio.ensure_future(canary.ended.wait())
                await asyncio.wait([probe, ended], return_when=asyncio.FIRST_COMPLETED)
                ended.cancel()
                if not probe.done():
                    probe.cancel()
                    continue
                code, why = probe.result()
                if why is None:
                    # A release that answers once and then dies must not reach the live slots either.
                    try:
                        await asyncio.wait_for(canary.ended.wait(), self.min_ready)
                    except TimeoutError:
                        self.say(f"canary: GET {path} answered {code}")
                        passed = True
                        return
                    raise ReloadFailed(f"canary {self._ended_how(canary)} right after answering GET {path}")
                if code is not None or not answered:
                    last, answered = why, code is not None
                await asyncio.sleep(0.2)
        finally:
            if passed:
                # It served nothing but the probe, on its own port: the first batch need not wait out
                # its graceful stop (a drain grace of its own, often a second). It ends beside the
                # batches, as an old instance drains, and the reload is done only once it has.
                self._drains.append(asyncio.ensure_future(self._retire(canary, priv)))
            else:
                await self._retire(canary, priv)

    async def _retire(self, canary: Worker, priv: socket.socket) -> None:
        await canary.stop("reload")
        if canary in self.group.extra:
            self.group.extra.remove(canary)
        priv.close()

    async def _replace(self, slot: int) -> None:
        group = self.group
        old = group.workers.get(slot)
        record: ReloadSlot = {"slot": slot, "old_pid": old.pid if old else None, "new_pid": None, "state": "starting"}
        self.slots.append(record)
        new = group.new_worker(slot, role="surge")
        group.extra.append(new)
        new.start()
        deadline = time.monotonic() + self.timeout
        try:
            await self._wait_ready(new, deadline, f"slot {slot}", record)
            record["new_pid"] = new.last_pid
            try:
                await asyncio.wait_for(new.ended.wait(), self.min_ready)
            except TimeoutError:
                pass
            else:
                raise ReloadFailed(f"slot {slot}: new pid {record['new_pid']} {self._ended_how(new)} "
                                   f"right after becoming ready")
        except ReloadFailed:
            record["state"] = "failed"
            record["new_pid"] = record["new_pid"] or new.last_pid
            await new.stop("reload")
            group.extra.remove(new)
            raise
        # Promote before draining: from here the new instance is the slot's.
        group.extra.remove(new)
        new.role = None
        group.workers[slot] = new
        record["state"] = "draining"
        self.say(f"slot {slot}: new pid {new.pid} ready" + (f", draining old pid {old.pid}" if old and old.pid else ""))
        # The next batch starts while this one's old instances drain: the slot is served by its new
        # instance already, so the ready count holds, and a drain's grace (a second or more for
        # keep-alive connections) is not paid once per batch. The reload ends when every drain has.
        self._drains.append(asyncio.ensure_future(self._drain(old, record)))

    async def _drain(self, old: Worker | None, record: ReloadSlot) -> None:
        if old is not None:
            old_pid = old.pid
            await old.stop("reload")
            if old_pid:
                self.say(f"slot {record['slot']}: old pid {old_pid} drained ({old.exit_text})")
        record["state"] = "done"
        self.group.changed()

    async def _wait_ready(self, worker: Worker, deadline: float, who: str, record: ReloadSlot | None = None) -> None:
        while worker.last_pid is None and not worker.ended.is_set():
            await asyncio.sleep(0.01)
        if record is not None:
            record["new_pid"] = worker.last_pid
            self.group.changed()
        if who != "canary":
            self.say(f"{who}: started new pid {worker.last_pid}, waiting until ready")
        ready = asyncio.ensure_future(worker.ready.wait())
        ended = asyncio.ensure_future(worker.ended.wait())
        try:
            await asyncio.wait([ready, ended], timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            ended.cancel()
        if worker.ready.is_set() and not worker.ended.is_set():
            return
        if worker.ended.is_set():
            raise ReloadFailed(f"{who}: new pid {worker.last_pid} {self._ended_how(worker)} before it was ready")
        self.tail = worker.tail_lines()
        raise ReloadFailed(f"{who}: new pid {worker.last_pid} not ready within {self.timeout:g}s")

    def _ended_how(self, worker: Worker) -> str:
        self.tail = worker.tail_lines()     # what it printed before it died: the reason is usually there
        if worker.exit_signal:
            return f"was killed by {worker.exit_signal}"
        return f"exited with code {worker.exit_code}"


class TaskRun(Run):
    """A task's "reload" (and each scheduled tick): run every instance again, to its end.

    `reload all` in start order then re-runs a migration before it replaces the servers that depend on
    it, and stops there when the migration fails. Same face as RollingReload for status and the UI.
    """

    kind = "run"

    def say(self, text: str) -> None:
        self.step = text
        self.group.event(None, f"{self.why}: {text}")
        if self.progress is not None:
            self.progress(text)

    async def run(self) -> bool:
        group = self.group
        workers = [group.workers[s] for s in sorted(group.workers)]
        try:
            self.say(f"running {len(workers)} instance(s) of the task")
            for w in workers:
                w.use(group.cfg)      # a task runs as the oxfile says now (after an apply: the fixed command)
                w.start()
            await asyncio.gather(*(w.finished() for w in workers))
            failed = [w for w in workers if w.state != "completed"]
            if failed:
                self.state = "failed"
                self.reason = "; ".join(f"{w.label} {w.state} ({w.exit_text if w.state == 'failed' else w.reason})"
                                        for w in failed)
                self.say(f"failed: {self.reason}")
                return False
            self.state = "done"
            self.say(f"done: completed in {time.time() - self.started:.1f}s")
            return True
        except asyncio.CancelledError:
            self.state = "cancelled"
            self.reason = "cancelled (the process was stopped)"
            raise
        finally:
            self.finished = time.time()
            group.changed()
