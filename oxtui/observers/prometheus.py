"""[metrics] listen: Prometheus /metrics, served by prometheus_client from a thread of its own.

A scrape never touches the engine: after each metrics sample the engine hands the exporter its
typed snapshot (the one `status --json` prints, counters included), and a scrape turns the latest
one into metric families. A slow or frequent scraper costs the HTTP thread, never supervision.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..protocol import LIVE_STATES, Snapshot, WorkerState, slot_workers


class Exporter(Collector):
    def __init__(self, snapshot: Snapshot, host: str, port: int):
        self.snapshot = snapshot
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        self.server, self.thread = start_http_server(port, host, registry=registry)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def update(self, snapshot: Snapshot) -> None:
        """On the engine's loop: what the next scrape shows (one reference swap)."""
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        s = self.snapshot
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
        for p in s["processes"]:
            name = p["name"]
            workers = slot_workers(p)
            for w in workers:
                slot = str(w["instance"])
                up.add_metric([name, slot], 1.0 if w["state"] in LIVE_STATES else 0.0)
                ready.add_metric([name, slot], 1.0 if w["ready"] and w["state"] == WorkerState.RUNNING else 0.0)
                restarts.add_metric([name, slot], w["restarts"])
                cpu.add_metric([name, slot], w["cpu_seconds"])
                rss.add_metric([name, slot], w["rss_bytes"] or 0)
            inst.add_metric([name], p["instances"])
            running.add_metric([name], sum(1 for w in workers if w["state"] == WorkerState.RUNNING))
            counters = p["counters"]
            for result in ("done", "failed"):
                reloads.add_metric([name, result], counters["reloads"].get(result, 0))
            if counters["last_reload_s"] is not None:
                reload_s.add_metric([name], counters["last_reload_s"])
            lines.add_metric([name], counters["log_lines"])
            for cause, n in counters["exits"].items():
                exits.add_metric([name, cause], n)
        e = s["engine"]
        yield from (up, ready, restarts, cpu, rss, inst, running, reloads, reload_s, lines, exits)
        yield CounterMetricFamily("oxtui_engine_cpu_seconds", "CPU time of the engine", value=e["cpu_seconds"])
        yield GaugeMetricFamily("oxtui_engine_rss_bytes", "resident memory of the engine", value=e["rss_bytes"])
        yield GaugeMetricFamily("oxtui_engine_start_time_seconds", "when the engine started", value=e["started_at"])


def serve(engine: Any) -> Exporter | None:
    """/metrics on [metrics] listen; None, said in the engine's log, when that address cannot be served."""
    try:
        return Exporter(engine.snapshot(), *engine.config.metrics.listen)
    except OSError as e:
        engine.log(f"[metrics] listen: cannot serve on {engine.config.metrics.listen}: {e.strerror}; no /metrics")
        return None
