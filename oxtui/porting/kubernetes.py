"""`oxtui export kubernetes`: a Deployment per process (and a Service for one with `listen`).

The oxfile says most of what Kubernetes needs: instances are replicas, the rolling reload is a
RollingUpdate with maxSurge 1 and maxUnavailable 0, ready.http a readiness probe, health a liveness
probe, max_memory a memory limit, stop_timeout the termination grace period. What has no Kubernetes
meaning (a ready.log regex, the canary, fd 3) is a comment beside the nearest field and a line on
stderr. Checked against the schemas of KUBERNETES_VERSION by the tests (kubernetes-validate).
"""

from __future__ import annotations

import math
import re
import signal
from typing import Any
from urllib.parse import urlsplit

from ..oxfile.config import Config, ProcessConfig
from .yamlout import Note, dump_all

KUBERNETES_VERSION = "1.31"
MIN_READY_SECONDS = 1     # oxtui's reload waits 0.5 s after ready before it drains; Kubernetes counts whole seconds


def _name(name: str) -> str:
    """A DNS-1123 label: lower case, digits and '-'."""
    out = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return out[:63] or "app"


def _seconds(x: float) -> int:
    return max(1, math.ceil(x))


def _memory(n: int) -> str:
    mib = n / 2**20
    return f"{int(mib)}Mi" if mib == int(mib) else f"{math.ceil(n / 1024)}Ki"


def _probe_http(path: str, port: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}}


FD3 = re.compile(r"(--fd[= ]3|--bind[= ](unix:)?fd://3|-b ?(unix:)?fd://3)\b")


def pod_command(p: ProcessConfig, warn: list[str]) -> str:
    """The command as a pod runs it: a pod has no fd 3, so a server told to take it binds PORT instead."""
    command = p.command
    if p.listen is None:
        return command
    if FD3.search(command):
        flag = "--host 0.0.0.0 --port $PORT" if re.search(r"--fd[= ]3", command) else "--bind 0.0.0.0:$PORT"
        command = FD3.sub(flag, command)
    elif re.search(r"(^|\s|/)gunicorn\s", command) and not re.search(r"\s(--bind|-b)[= ]?", command):
        command += " --bind 0.0.0.0:$PORT"    # it adopted fd 3 from LISTEN_FDS; a pod has neither
    if "oxtui.drain" in command:
        warn.append(f"{p.name}: its command runs oxtui.drain.uvicorn (a lossless drain on SIGTERM): the image "
                    "needs oxtui installed (pip install oxtui), or use uvicorn itself")
    return command


def deployment(p: ProcessConfig, image: str, namespace: str | None, warn: list[str]) -> list[tuple[list[str], dict]]:
    name = _name(p.name)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "oxtui-export"}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    env: list[Any] = [{"name": k, "value": v} for k, v in p.env]
    env.append({"name": "OXTUI_PROCESS", "value": p.name})
    command = pod_command(p, warn)
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": ["sh", "-c", f"exec {command}"],
    }
    comments = [f"[processes.{p.name}] of the oxfile: `{p.command}`"]
    container["workingDir"] = Note(str(p.cwd), "the oxfile's folder on this machine: set where the app is in the image")
    port = None
    if p.listen is not None:
        port = p.listen[1]
        env += [{"name": "PORT", "value": str(port)}, {"name": "HOST", "value": "0.0.0.0"}]
        container["ports"] = [Note({"name": "http", "containerPort": port},
                                   "no fd 3 in a pod: the app must listen on PORT itself")]
        warn.append(f"{p.name}: in a pod there is no shared socket on fd 3: the app must fall back to "
                    f"listening on PORT ({port}) when LISTEN_FDS is unset")
    container["env"] = env
    if p.ready is not None:
        probe: dict[str, Any] = {"periodSeconds": 1, "timeoutSeconds": 1,
                                 "failureThreshold": _seconds(p.ready.timeout)}
        if p.ready.http and port is not None:
            probe.update(_probe_http(p.ready.http, port))
            container["readinessProbe"] = Note(probe, "from ready.http; each new pod gates the rollout "
                                                      "(oxtui's canary has no equivalent)")
            warn.append(f"{p.name}: the reload canary is not carried over: each new pod's readiness gates the rollout")
        if p.ready.log is not None:
            container["name"] = Note(name, f"ready.log {p.ready.log.pattern!r} cannot be a probe: "
                                           "give the pod an HTTP or exec readinessProbe")
            warn.append(f"{p.name}: ready.log ({p.ready.log.pattern!r}) has no Kubernetes meaning: say when the "
                        "app is ready with an HTTP or exec readinessProbe")
    if p.health is not None:
        h = p.health
        live: dict[str, Any] = {"periodSeconds": _seconds(h.interval), "timeoutSeconds": _seconds(h.timeout),
                                "failureThreshold": h.failures}
        if h.http:
            url = urlsplit(h.http)
            live.update(_probe_http(url.path or "/", url.port or port or 80))
        elif h.tcp:
            live["tcpSocket"] = {"port": h.tcp[1]}
        elif h.cmd:
            live["exec"] = {"command": ["sh", "-c", h.cmd]}
        container["livenessProbe"] = Note(live, "from [health]")
    if p.max_memory is not None:
        container["resources"] = {"limits": Note({"memory": _memory(p.max_memory)}, "from max_memory (the whole pod)")}
    if p.stop_signal != signal.SIGTERM:
        warn.append(f"{p.name}: stop_signal {p.stop_signal.name}: Kubernetes sends SIGTERM; set STOPSIGNAL in the image")
    if p.depends_on:
        warn.append(f"{p.name}: depends_on ({', '.join(f'{d} {c}' for d, c in p.depends_on)}) has no Kubernetes "
                    "equivalent: run tasks as Jobs before the rollout (or as an initContainer) and let readiness "
                    "probes gate traffic")
    if p.run_as is not None:
        container["securityContext"] = Note({"runAsUser": p.run_as.uid, "runAsGroup": p.run_as.gid},
                                             f"from user = {p.run_as.user!r}: ids of this machine")
    if p.watch:
        warn.append(f"{p.name}: watch is not carried over: a new image and `kubectl rollout` replace it")
    if p.is_task:
        return [_job(p, meta, labels, container, warn)]
    if p.schedule is not None:
        warn.append(f"{p.name}: its schedule reloads a long-running process: in Kubernetes, a CronJob that runs "
                    f"`kubectl rollout restart deployment/{name}` does that")
    replicas: Any = p.instances
    if p.instances_spec == "max":
        replicas = Note(p.instances, 'instances = "max": the CPUs of the machine that exported; pods use one each')
    spec = {
        "replicas": replicas,
        "minReadySeconds": MIN_READY_SECONDS,
        "strategy": Note({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": p.reload.max_surge or "50%",
                                                                     "maxUnavailable": 0}},
                         "oxtui's rolling reload: [reload] max_surge at a time, never fewer ready than wanted"),
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": Note(_seconds(p.stop_timeout), "from stop_timeout"),
                "containers": [container],
            },
        },
    }
    docs = [(comments, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})]
    if port is not None:
        docs.append(([f"the port of [processes.{p.name}] listen = {p.listen_str!r}"], {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app.kubernetes.io/name": name},
                     "ports": [{"name": "http", "port": port, "targetPort": port}]},
        }))
    return docs


def _cron(p: ProcessConfig, warn: list[str]) -> str | None:
    sched = p.schedule
    assert sched is not None
    if sched.cron:
        return sched.cron
    every = sched.every or 60
    minutes = every / 60
    if minutes.is_integer() and 60 % minutes == 0:
        return f"*/{int(minutes)} * * * *"
    if (every / 3600).is_integer() and 24 % (every / 3600) == 0:
        return f"0 */{int(every / 3600)} * * *"
    warn.append(f"{p.name}: every = {every:g}s cannot be a cron schedule (a CronJob runs at most once a minute, on "
                "whole minutes): write a cron expression for it")
    return None


def _job(p: ProcessConfig, meta: dict, labels: dict, container: dict, warn: list[str]) -> tuple[list[str], dict]:
    """A task: a Job (restart = "never": no retry; "on-failure": retried), or a CronJob when scheduled."""
    never = p.restart == "never"
    job = {
        "completions": p.instances,
        "parallelism": p.instances,
        "backoffLimit": Note(0 if never else p.max_restarts, f'from restart = "{p.restart}"'),
        "template": {"metadata": {"labels": labels},
                     "spec": {"restartPolicy": "Never" if never else "OnFailure",
                              "terminationGracePeriodSeconds": _seconds(p.stop_timeout),
                              "containers": [container]}},
    }
    comments = [f"[processes.{p.name}] of the oxfile: `{p.command}` (a task)"]
    if p.schedule is None:
        return comments, {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job}
    spec: dict[str, Any] = {"schedule": _cron(p, warn) or "* * * * *",
                            "concurrencyPolicy": Note("Forbid", "oxtui skips a tick while the last run goes on"),
                            "jobTemplate": {"spec": job}}
    if p.schedule.timezone:
        spec["timeZone"] = p.schedule.timezone
    return comments, {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": spec}


def export_kubernetes(config: Config, image: str, namespace: str | None) -> tuple[dict[str, str], list[str]]:
    """{file name: YAML} (one file per process), and what did not carry over."""
    warn: list[str] = []
    files = {}
    for p in config.processes:
        docs = deployment(p, image, namespace, warn)
        header = [f"Made by `oxtui export kubernetes` from {config.path}, for Kubernetes {KUBERNETES_VERSION}."]
        docs[0] = (header + docs[0][0], docs[0][1])
        files[f"{_name(p.name)}.yaml"] = dump_all(docs)
    return files, warn
