"""The oxfile as the engine uses it: frozen dataclasses, made by config.py from a validated file."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

from . import fields


class ConfigError(Exception):
    """One or more problems in an oxfile; `errors` holds one line per problem."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ReadyConfig:
    log: re.Pattern[str] | None = None
    http: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class HealthConfig:
    http: str | None = None
    tcp: tuple[str, int] | None = None
    cmd: str | None = None
    interval: float = 10.0
    failures: int = 3
    timeout: float = 5.0


@dataclass(frozen=True)
class ScheduleConfig:
    cron: str | None = None
    every: float | None = None
    timezone: str | None = None

    @property
    def text(self) -> str:
        if self.cron:
            return f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone else "")
        return f"every {self.every:g}s"


@dataclass(frozen=True)
class ReloadConfig:
    max_surge: int | str | None = None     # None: half the instances, at least 2 (values.surge_count)
    min_ready: float = 0.5


@dataclass(frozen=True)
class RunAs:
    """The account instances run as (`user`/`group`), resolved when the oxfile is read."""
    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


@dataclass(frozen=True)
class ProcessConfig:
    name: str
    command: str
    instances: int
    instances_spec: int | str
    restart: str                       # "always", "on-failure" or "never"
    cwd: Path
    env: tuple[tuple[str, str], ...]
    env_files: tuple[Path, ...]
    env_files_digest: str              # of their contents: an edited .env makes `apply` reload the process
    listen: tuple[str, int] | None
    stop_signal: signal.Signals
    stop_timeout: float
    max_memory: int | None
    ready: ReadyConfig | None
    health: HealthConfig | None
    backoff: float
    backoff_max: float
    max_restarts: int
    restart_window: float
    watch: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    watch_debounce: float = 0.5
    depends_on: tuple[tuple[str, str], ...] = ()
    run_as: RunAs | None = None
    schedule: ScheduleConfig | None = None
    reload: ReloadConfig = field(default_factory=ReloadConfig)
    notify: NotifyConfig | None = None      # this process's own settings, merged over the top-level ones
    disabled: bool = False                  # not started with the engine; `oxtui start NAME` starts it

    @property
    def is_task(self) -> bool:
        """Runs to an end (completed or failed) instead of being kept running."""
        return self.restart != "always"

    @property
    def restart_on_exit(self) -> bool:
        return self.restart == "always"

    @property
    def listen_str(self) -> str | None:
        if self.listen is None:
            return None
        host, port = self.listen
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class LogsConfig:
    dir: Path
    max_size: int = 10 * 1024 * 1024
    keep: int = 5
    buffer_lines: int = 10_000
    stdout: str = "auto"     # what `oxtui run` prints: "all", "events" (engine events only), or "auto"
    max_age: float | None = None      # seconds: rotate a file once its first line is this old
    compress: bool = False            # gzip rotated files
    journald: bool | None = None      # None: when running under systemd
    files: bool = True


@dataclass(frozen=True)
class NotifyConfig:
    webhook: str | None = None
    command: str | None = None
    events: tuple[str, ...] = tuple(fields.NOTIFY_DEFAULT)
    coalesce: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.webhook or self.command)


@dataclass(frozen=True)
class MetricsConfig:
    listen: tuple[str, int] | None = None
    public: bool = False


@dataclass(frozen=True)
class DeployConfig:
    """[deploy]: releases from git beside the oxfile (oxtui/releases.py)."""
    root: Path                   # the oxfile's folder: releases/, current, shared/ and repo/ live here
    source: str
    ref: str | None = None
    build: str | None = None
    shared: tuple[str, ...] = ()
    keep: int = 5

    @property
    def current(self) -> Path:
        return self.root / "current"


@dataclass(frozen=True)
class Config:
    path: Path
    processes: tuple[ProcessConfig, ...]
    logs: LogsConfig = field(default_factory=lambda: LogsConfig(dir=Path(".")))
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    deploy: DeployConfig | None = None
    digest: str = ""      # sha256 of the bytes read: `save` refuses to overwrite a file changed since
    warnings: tuple[str, ...] = ()    # what `check` reports without failing (a deploy may still fix it)

    @property
    def longest_stop(self) -> float:
        return max((p.stop_timeout for p in self.processes), default=10.0)

    def process(self, name: str) -> ProcessConfig | None:
        return next((p for p in self.processes if p.name == name), None)

    def notify_for(self, name: str) -> NotifyConfig:
        """The [notify] settings for that process's events: its own table merged over the top-level one."""
        p = self.process(name)
        return p.notify if p is not None and p.notify is not None else self.notify

    @property
    def notifies(self) -> bool:
        return self.notify.enabled or any(p.notify is not None and p.notify.enabled for p in self.processes)

