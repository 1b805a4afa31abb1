"""A worker's account of an ended process: the event line and the exit record (a part of Worker)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..oxfile.values import program_of
from ..protocol import ExitRecord
from .exits import cannot_run, classify, oom_counters

if TYPE_CHECKING:
    from ..oxfile.config import ProcessConfig


class ExitReport:
    # what it uses of Worker
    cfg: ProcessConfig
    group: Any
    slot: int
    release: int
    role: str | None
    reason: str | None
    exit_code: int | None
    exit_signal: str | None
    last_exit: ExitRecord | None
    exit_text: str
    _stop_cause: str | None
    _oom_before: tuple[int | None, int | None]

    def tail_lines(self) -> list[str]: ...
    def _restarts_after_exit(self) -> bool: ...

    def _say_exit(self, pid: int, uptime: float, why: str | None) -> None:
        how = self.exit_text
        if why is None:
            self.reason = self._cannot_run() or f"exited with {how}"
            self.group.event(self, f"pid {pid} exited with {how} after {uptime:.1f}s"
                             + (f" ({self.reason})" if self.exit_code in (126, 127) else ""))
        elif why == "stop":
            self.group.event(self, f"pid {pid} stopped ({how})")
        else:
            self.reason = why
            self.group.event(self, f"pid {pid} restarted: {why}")

    def _record_exit(self, pid: int, uptime: float, why: str | None) -> None:
        task_done = why is None and not self._restarts_after_exit()
        cause, note = classify(self.exit_code, self.exit_signal, why, self._stop_cause, self._oom_before,
                               oom_counters(), task_done)
        self._stop_cause = None
        if why not in (None, "stop"):
            note = why
        elif why is None and self._cannot_run():
            note = self._cannot_run()
        record: ExitRecord = {"at": round(time.time(), 3), "pid": pid, "code": self.exit_code,
                              "signal": self.exit_signal, "cause": cause, "note": note,
                              "uptime_s": round(uptime, 3), "instance": self.slot, "release": self.release,
                              "tail": self.tail_lines()}
        if self.role is None:
            self.last_exit = record
        self.group.record_exit(self, record)

    def _cannot_run(self) -> str | None:
        return cannot_run(self.exit_code, self.tail_lines(), program_of(self.cfg.command))
