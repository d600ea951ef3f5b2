"""Prometheus metrics: request latency per verb, gangs by phase, reservation expiries and GPU
allocation. Gauges are read from the planner at scrape time, so requests pay only for the
latency histogram."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from phalanx.extender.planner import Planner
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""From half a millisecond (a filter for a planned member) to kube-scheduler's 5 s timeout."""


class _PlannerCollector(Collector):
    def __init__(self, planner: Callable[[], Planner | None]) -> None:
        self._planner = planner

    def collect(self) -> Iterator[Metric]:
        planner = self._planner()
        if planner is None:
            return
        gauges = planner.gauges()
        gangs = GaugeMetricFamily("phalanx_gangs", "Gangs known to the extender", labels=["phase"])
        for phase in ("pending", "reserved", "bound"):
            gangs.add_metric([phase], gauges[f"gangs_{phase}"])
        yield gangs
        yield GaugeMetricFamily("phalanx_gpus", "Usable GPUs in the cluster", gauges["gpus_total"])
        yield GaugeMetricFamily(
            "phalanx_gpus_allocated",
            "GPUs held by bound pods and reservations",
            gauges["gpus_allocated"],
        )
        yield GaugeMetricFamily(
            "phalanx_gpu_allocation_ratio",
            "Allocated share of usable GPU capacity (fractional shares in milli)",
            gauges["gpu_allocation_ratio"],
        )
        stats = planner.stats
        yield CounterMetricFamily(
            "phalanx_reservation_expiries",
            "Gang reservations given back because members did not bind in time",
            stats.reservation_expiries,
        )
        yield CounterMetricFamily("phalanx_binds", "Successful binds", stats.binds)
        yield CounterMetricFamily("phalanx_bind_failures", "Failed binds", stats.bind_failures)
        yield CounterMetricFamily(
            "phalanx_replans",
            "Members re-planned because their node was not offered",
            stats.replans,
        )


class ExtenderMetrics:
    """One registry per server, so tests can run several side by side."""

    def __init__(self, planner: Callable[[], Planner | None]) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "phalanx_extender_request_seconds",
            "Server-side handling time of extender requests",
            ["verb"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_PlannerCollector(planner))
