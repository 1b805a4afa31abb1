"""[notify]: events out to a webhook (Slack, Discord, anything that takes a JSON POST) and/or a command.

Delivery never blocks supervision: events are queued from the engine's loop and sent by one task
(webhooks through a thread, with a timeout, a bounded number of retries and backoff). A storm is
coalesced per process and event: the first one goes at once, the rest of a window ([notify]
coalesce, 10 s) are counted and sent as one summary when it ends, so a crash loop sends a handful of messages, not hundreds. A
full queue drops the oldest message and says so in the engine's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import NotifyConfig
from .checks import kill_session
from .exits import UNEXPECTED

if TYPE_CHECKING:
    from .engine import Engine

QUEUE = 200
WEBHOOK_TIMEOUT = 5.0
RETRIES = 3                 # attempts per webhook message, 1 s then 2 s apart
COMMAND_TIMEOUT = 10.0


@dataclass
class _Window:
    started: float
    suppressed: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


def wanted(cfg: NotifyConfig, ev: dict[str, Any]) -> bool:
    """Whether cfg sends this event: "crash" covers every unexpected exit, whatever its cause."""
    if ev["event"] in cfg.events:
        return True
    return "crash" in cfg.events and ev.get("cause") in UNEXPECTED


def message_text(ev: dict[str, Any], host: str) -> str:
    who = ev["process"] + ("" if ev.get("instance") is None else f".{ev['instance']}")
    text = f"[oxtui {host}] {who}: {ev['event']}: {ev.get('text', '')}"
    if ev.get("tail"):
        text += "\n" + "\n".join(ev["tail"][-5:])
    return text


class Alerts:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.host = socket.gethostname()
        self.queue: asyncio.Queue[tuple[dict[str, Any], NotifyConfig]] = asyncio.Queue(maxsize=QUEUE)
        self.windows: dict[tuple[str, str], _Window] = {}
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.engine.events.subscribers.append(self.on_event)
        self._task = asyncio.get_running_loop().create_task(self._deliver(), name="notify")

    def close(self) -> None:
        if self.on_event in self.engine.events.subscribers:
            self.engine.events.subscribers.remove(self.on_event)
        for w in self.windows.values():
            if w.timer is not None:
                w.timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def _config(self, process: str) -> NotifyConfig:
        p = self.engine.config.process(process)
        return p.notify if p is not None and p.notify is not None else self.engine.config.notify

    def on_event(self, ev: dict[str, Any]) -> None:
        cfg = self._config(ev["process"])
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
            cfg = self._config(key[0])
            ev = {**w.last, "coalesced": w.suppressed,
                  "text": f"{w.suppressed} more {key[1]} event(s) in the last {cfg.coalesce:g}s; the last: "
                          f"{w.last['text']}"}
            # a storm that goes on sends one summary per window
            self.windows[key] = _Window(time.monotonic())
            self._enqueue(ev, cfg)

    def _enqueue(self, ev: dict[str, Any], cfg: NotifyConfig) -> None:
        if self.queue.full():
            dropped, _ = self.queue.get_nowait()
            self.engine.logs.emit("oxtui", None, "event", [f"notify: queue full, dropped a {dropped['event']} "
                                                           f"message of {dropped['process']}"])
        self.queue.put_nowait(({**ev, "host": self.host}, cfg))

    async def _deliver(self) -> None:
        while True:
            ev, cfg = await self.queue.get()
            try:
                if cfg.webhook:
                    await self._webhook(cfg.webhook, ev)
                if cfg.command:
                    await self._command(cfg.command, ev)
                self.sent += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:   # a broken hook must never end delivery
                self._say(f"notify: {type(e).__name__}: {e}")

    def _say(self, text: str) -> None:
        self.engine.logs.emit("oxtui", None, "event", [text])

    async def _webhook(self, url: str, ev: dict[str, Any]) -> None:
        text = message_text(ev, self.host)
        body = json.dumps({**ev, "text": text, "content": text[:2000]}).encode()
        last = ""
        for attempt in range(RETRIES):
            try:
                await asyncio.to_thread(_post, url, body)
                return
            except Exception as e:
                last = str(e) or type(e).__name__
            if attempt < RETRIES - 1:
                await asyncio.sleep(2 ** attempt)
        self._say(f"notify: webhook {url} failed {RETRIES} times ({last}); {ev['event']} of {ev['process']} not sent")

    async def _command(self, command: str, ev: dict[str, Any]) -> None:
        env = {**os.environ, "OXTUI_EVENT": ev["event"], "OXTUI_PROCESS": ev["process"],
               "OXTUI_INSTANCE": "" if ev.get("instance") is None else str(ev["instance"]),
               "OXTUI_PID": str(ev.get("pid") or ""), "OXTUI_EXIT_CODE": "" if ev.get("code") is None else str(ev["code"]),
               "OXTUI_EXIT_SIGNAL": ev.get("signal") or "", "OXTUI_CAUSE": ev.get("cause") or "",
               "OXTUI_TEXT": message_text(ev, self.host)}
        proc = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True, cwd=str(self.engine.config.path.parent))
        try:
            _, err = await asyncio.wait_for(proc.communicate(json.dumps(ev).encode() + b"\n"), COMMAND_TIMEOUT)
        except TimeoutError:
            await kill_session(proc)
            self._say(f"notify: command ran over {COMMAND_TIMEOUT:g}s and was killed: {command}")
            return
        if proc.returncode:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            self._say(f"notify: command exited with {proc.returncode}: {command} {tail[0]}")


def _post(url: str, body: bytes) -> None:
    import urllib.request  # here, not at the top: it pulls in ssl, 20 ms of every engine start
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "oxtui"})
    with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT) as r:
        r.read(1024)
