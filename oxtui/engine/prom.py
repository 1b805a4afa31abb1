"""[metrics] listen: Prometheus /metrics, served by prometheus_client from a thread of its own.

A scrape never touches the engine's objects: the engine's metrics loop (engine/metrics.py) hands
over an immutable sample after each pass, and the collector turns that into metric families. A slow
or frequent scraper costs the HTTP thread, never supervision.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Iterator

import psutil
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..protocol import WorkerState

if TYPE_CHECKING:
    from .engine import Engine


class Exporter(Collector):
    def __init__(self, engine: Engine, host: str, port: int):
        self.engine = engine
        self.sample: dict[str, Any] = {"processes": [], "engine": {}}
        self.me = psutil.Process()
        self.update()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        self.server, self.thread = start_http_server(port, host, registry=registry)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def update(self) -> None:
        """On the engine's loop: take what a scrape will show (one reference swap)."""
        eng = self.engine
        procs = []
        for g in eng.groups.values():
            workers = []
            for w in g.workers.values():
                workers.append((str(w.slot), w.state, w.ready.is_set(), w.restarts, w.cpu_seconds, w.rss_bytes))
            rl = g.reload
            procs.append({"name": g.name, "target": g.target, "workers": workers,
                          "running": sum(1 for x in workers if x[1] == WorkerState.RUNNING),
                          "reloads": dict(g.reload_results), "reload_seconds": g.last_reload_seconds,
                          "reloading": bool(rl is not None and rl.active),
                          "lines": eng.logs.open(g.name).lines_total, "exits": dict(g.exit_causes)})
        times = self.me.cpu_times()
        self.sample = {"processes": procs, "engine": {"cpu": times.user + times.system, "rss": eng.usage.rss_bytes,
                                                      "started": eng.started_at, "pid": os.getpid()},
                       "at": time.time()}

    def collect(self) -> Iterator[Any]:
        s = self.sample
        pw = ["process", "instance"]
        up = GaugeMetricFamily("oxtui_worker_up", "1 while the instance has a live process", labels=pw)
        ready = GaugeMetricFamily("oxtui_worker_ready", "1 while the instance is ready", labels=pw)
        restarts = CounterMetricFamily("oxtui_worker_restarts", "restarts of the instance", labels=pw)
        cpu = CounterMetricFamily("oxtui_worker_cpu_seconds", "CPU time of the instance's process tree", labels=pw)
        rss = GaugeMetricFamily("oxtui_worker_rss_bytes", "resident memory of the instance's process tree",
                                labels=pw)
        inst = GaugeMetricFamily("oxtui_process_instances", "instances wanted", labels=["process"])
        running = GaugeMetricFamily("oxtui_process_instances_running", "instances running and ready",
                                    labels=["process"])
        reloads = CounterMetricFamily("oxtui_reloads", "rolling reloads by result", labels=["process", "result"])
        reload_s = GaugeMetricFamily("oxtui_reload_duration_seconds", "how long the last finished reload took",
                                     labels=["process"])
        lines = CounterMetricFamily("oxtui_log_lines", "lines the instances printed", labels=["process"])
        exits = CounterMetricFamily("oxtui_exits", "exits of instances by cause", labels=["process", "cause"])
        live = (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.STOPPING)
        for p in s["processes"]:
            name = p["name"]
            for slot, state, is_ready, n, cpu_s, rss_b in p["workers"]:
                up.add_metric([name, slot], 1.0 if state in live else 0.0)
                ready.add_metric([name, slot], 1.0 if is_ready else 0.0)
                restarts.add_metric([name, slot], n)
                cpu.add_metric([name, slot], cpu_s)
                rss.add_metric([name, slot], rss_b or 0)
            inst.add_metric([name], p["target"])
            running.add_metric([name], p["running"])
            for result in ("done", "failed"):
                reloads.add_metric([name, result], p["reloads"].get(result, 0))
            if p["reload_seconds"] is not None:
                reload_s.add_metric([name], p["reload_seconds"])
            lines.add_metric([name], p["lines"])
            for cause, n in p["exits"].items():
                exits.add_metric([name, cause], n)
        e = s["engine"]
        yield from (up, ready, restarts, cpu, rss, inst, running, reloads, reload_s, lines, exits)
        yield CounterMetricFamily("oxtui_engine_cpu_seconds", "CPU time of the engine", value=e["cpu"])
        yield GaugeMetricFamily("oxtui_engine_rss_bytes", "resident memory of the engine", value=e["rss"])
        yield GaugeMetricFamily("oxtui_engine_start_time_seconds", "when the engine started", value=e["started"])
