"""[notify]: events out to a webhook (Slack, Discord, anything that takes a JSON POST) and/or a command.

Delivery never blocks supervision, and one receiver never delays another:

    event ──> wanted? ──> coalesced? ──> one lane per (receiver, process, event) ──> delivered
                                            │  in order within the lane,
                                            │  lanes side by side (at most PARALLEL at once,
                                            │  PER_RECEIVER of them to one receiver)
                                            └──> failed after RETRIES: a `notify_failed` event,
                                                 counted in status (engine.notify)

A storm is coalesced per process and event: the first one goes at once, the rest of a window ([notify]
coalesce, 10 s) are counted and sent as one summary when it ends, and a storm that goes on sends one
summary per window. Webhooks are posted from a thread pool of this module's own (never the loop's
default executor, which the metrics sampler uses), with a timeout and a bounded number of retries.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..oxfile.config import NotifyConfig
from ..protocol import UNEXPECTED, EngineFeed, Event, NotifyStatus

LANE_QUEUE = 50             # messages waiting in one lane; a lane that cannot deliver drops its oldest
PARALLEL = 16               # deliveries at once, all receivers together
PER_RECEIVER = 4            # deliveries at once to one receiver (a hanging one holds no more than these)
WEBHOOK_TIMEOUT = 5.0
RETRIES = 3                 # attempts per webhook message, 1 s then 2 s apart
COMMAND_TIMEOUT = 10.0


@dataclass
class _Window:
    started: float
    suppressed: int = 0
    last: Event = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Lane:
    queue: deque[Event] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


def wanted(cfg: NotifyConfig, ev: Event) -> bool:
    """Whether cfg sends this event: "crash" covers every unexpected exit, whatever its cause."""
    if ev["event"] in cfg.events:
        return True
    return "crash" in cfg.events and ev.get("cause") in UNEXPECTED


def message_text(ev: Event, host: str) -> str:
    who = ev["process"] + ("" if ev.get("instance") is None else f".{ev['instance']}")
    text = f"[oxtui {host}] {who}: {ev['event']}: {ev.get('text', '')}"
    if ev.get("tail"):
        text += "\n" + "\n".join(ev["tail"][-5:])
    return text


class Notifications:
    def __init__(self, feed: EngineFeed, settings: Callable[[str], NotifyConfig], cwd: str):
        """`settings(process)`: the [notify] settings that apply to that process's events."""
        self.feed, self.settings, self.cwd = feed, settings, cwd
        self.host = socket.gethostname()
        self.windows: dict[tuple[str, str], _Window] = {}
        self.lanes: dict[tuple[str, str, str], _Lane] = {}
        self.sent = 0
        self.failed = 0
        self.last_failure: str | None = None
        self._slots = asyncio.Semaphore(PARALLEL)
        self._receivers: dict[str, asyncio.Semaphore] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self.feed.subscribe(self.on_event)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for w in self.windows.values():
            if w.timer is not None:
                w.timer.cancel()
        for lane in self.lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def status(self) -> NotifyStatus:
        pending = sum(len(lane.queue) + (lane.task is not None) for lane in self.lanes.values())
        return {"sent": self.sent, "failed": self.failed, "pending": pending, "last_failure": self.last_failure}

    # ---- which events, and how many ---------------------------------------------------------

    def on_event(self, ev: Event) -> None:
        cfg = self.settings(ev["process"])
        if not cfg.enabled or not wanted(cfg, ev):
            return
        key = (ev["process"], ev["event"])
        now = time.monotonic()
        w = self.windows.get(key)
        if w is not None and now - w.started < cfg.coalesce:
            w.suppressed += 1
            w.last = ev
            if w.timer is None:
                w.timer = asyncio.get_running_loop().call_later(cfg.coalesce - (now - w.started),
                                                                self._close_window, key)
            return
        self.windows[key] = _Window(now)
        self._enqueue(ev, cfg)

    def _close_window(self, key: tuple[str, str]) -> None:
        w = self.windows.pop(key)
        if w.suppressed:
            cfg = self.settings(key[0])
            ev = {**w.last, "coalesced": w.suppressed,
                  "text": f"{w.suppressed} more {key[1]} event(s) in the last {cfg.coalesce:g}s; the last: "
                          f"{w.last['text']}"}
            # a storm that goes on sends one summary per window
            self.windows[key] = _Window(time.monotonic())
            self._enqueue(ev, cfg)

    # ---- lanes ------------------------------------------------------------------------------

    def _enqueue(self, ev: Event, cfg: NotifyConfig) -> None:
        ev = {**ev, "host": self.host}
        receivers = [("webhook", cfg.webhook)] * bool(cfg.webhook) + [("command", cfg.command)] * bool(cfg.command)
        for kind, target in receivers:
            assert target is not None
            key = (f"{kind} {target}", ev["process"], ev["event"])
            lane = self.lanes.get(key)
            if lane is None:
                lane = self.lanes[key] = _Lane()
            if len(lane.queue) >= LANE_QUEUE:
                dropped = lane.queue.popleft()
                self._fail(dropped, f"{kind} {target} is behind by {LANE_QUEUE} messages; dropped the oldest")
            lane.queue.append(ev)
            if lane.task is None:
                lane.task = asyncio.get_running_loop().create_task(self._drain(key, kind, target),
                                                                   name=f"notify {key[1]} {key[2]}")

    async def _drain(self, key: tuple[str, str, str], kind: str, target: str) -> None:
        """One lane: its messages in order, one at a time."""
        lane = self.lanes[key]
        receiver = self._receivers.setdefault(key[0], asyncio.Semaphore(PER_RECEIVER))
        try:
            while lane.queue:
                ev = lane.queue.popleft()
                try:
                    why = await (self._webhook(target, ev, receiver) if kind == "webhook"
                                 else self._command(target, ev, receiver))
                except asyncio.CancelledError:
                    raise
                except Exception as e:     # a broken hook must never end delivery
                    why = f"{type(e).__name__}: {e}"
                if why is None:
                    self.sent += 1
                else:
                    self._fail(ev, f"{kind} {target} {why}")
        finally:
            lane.task = None
            if not lane.queue:
                del self.lanes[key]

    def _fail(self, ev: Event, why: str) -> None:
        self.failed += 1
        text = f"notify: {why}; {ev['event']} of {ev['process']} not sent"
        self.last_failure = f"{time.strftime('%H:%M:%S')} {text[len('notify: '):]}"
        self.feed.log(text)
        self.feed.publish("notify_failed", ev["process"], text, failed_event=ev["event"])

    # ---- receivers --------------------------------------------------------------------------

    async def _webhook(self, url: str, ev: Event, receiver: asyncio.Semaphore) -> str | None:
        text = message_text(ev, self.host)
        body = json.dumps({**ev, "text": text, "content": text[:2000]}).encode()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="oxtui notify")
        loop = asyncio.get_running_loop()
        last = ""
        for attempt in range(RETRIES):
            try:
                async with receiver, self._slots:
                    await loop.run_in_executor(self._pool, _post, url, body)
                return None
            except asyncio.CancelledError:
                raise
            except Exception as e:
                last = str(e) or type(e).__name__
            if attempt < RETRIES - 1:
                await asyncio.sleep(2 ** attempt)
        return f"failed {RETRIES} times ({last})"

    async def _command(self, command: str, ev: Event, receiver: asyncio.Semaphore) -> str | None:
        env = {**os.environ, "OXTUI_EVENT": ev["event"], "OXTUI_PROCESS": ev["process"],
               "OXTUI_INSTANCE": "" if ev.get("instance") is None else str(ev["instance"]),
               "OXTUI_PID": str(ev.get("pid") or ""), "OXTUI_EXIT_CODE": "" if ev.get("code") is None else str(ev["code"]),
               "OXTUI_EXIT_SIGNAL": ev.get("signal") or "", "OXTUI_CAUSE": ev.get("cause") or "",
               "OXTUI_TEXT": message_text(ev, self.host)}
        async with receiver, self._slots:
            proc = await asyncio.create_subprocess_shell(
                command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, cwd=self.cwd)
            try:
                _, err = await asyncio.wait_for(proc.communicate(json.dumps(ev).encode() + b"\n"), COMMAND_TIMEOUT)
            except (TimeoutError, asyncio.CancelledError) as e:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)    # the command and whatever it started
                except ProcessLookupError:
                    pass
                await proc.wait()
                if isinstance(e, asyncio.CancelledError):
                    raise
                return f"ran over {COMMAND_TIMEOUT:g}s and was killed"
        if proc.returncode:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            return f"exited with {proc.returncode} {tail[0]}".rstrip()
        return None


def _post(url: str, body: bytes) -> None:
    from ..openssl import allow
    allow()                # an https URL needs ssl, kept out of the engine until now (openssl.py)
    import urllib.request  # here, not at the top: it pulls in ssl, 20 ms of every engine start
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "oxtui"})
    with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT) as r:
        r.read(1024)
