"""What the machine allows: instance counts against the CPUs, the per-user process limit and pid_max."""

from __future__ import annotations

import os
import resource

from .values import usable_cpus

# Above this many instances per usable CPU a process is probably a typo (100000 for 10000) or a
# misunderstanding; it is allowed (1000 idle workers are fine), with a warning.
WARN_PER_CPU = 16
WARN_FLOOR = 64


def _pid_max() -> int | None:
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _processes_now() -> int:
    try:
        return sum(1 for e in os.listdir("/proc") if e.isdigit())
    except OSError:
        return 0


def check_counts(errors: list[str], warnings: list[str], file: str, counts: list[tuple[str, int]]) -> None:
    total = sum(n for _, n in counts)
    if not total:
        return
    cpus = usable_cpus()
    for name, n in counts:
        if n > max(WARN_FLOOR, WARN_PER_CPU * cpus):
            warnings.append(f"{file}: [processes.{name}] instances: {n} is over {WARN_PER_CPU}x the {cpus} usable "
                            "CPU(s); fine for idle workers, but check it is not a typo")
    soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
    # root is not bound by RLIMIT_NPROC; everyone is bound by pid_max
    if os.getuid() != 0 and soft != resource.RLIM_INFINITY and total > soft:
        errors.append(f"{file}: {total} instances in all exceed this user's process limit (ulimit -u = {soft}); "
                      "lower instances or raise the limit (LimitNPROC= in a systemd unit)")
    pid_max = _pid_max()
    if pid_max is not None and total > pid_max - _processes_now():
        errors.append(f"{file}: {total} instances in all do not fit in the kernel's pid space (pid_max = {pid_max}, "
                      f"{_processes_now()} processes running); lower instances")
