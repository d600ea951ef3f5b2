"""Prometheus metrics: request latency per verb, gangs by phase, reservation expiries and GPU
allocation; per queue and tenant, pending gangs and GPUs by reason code, GPUs in use and shares;
reservation age, gang start latency and placement cost. Everything but the request latency is
read from the planner at scrape time, so requests pay only for that histogram."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from phalanx.extender.planner import Planner
from phalanx.extender.queue_views import queue_metrics
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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


class _QueueCollector(Collector):
    """Per queue and tenant: pending gangs and GPUs by reason code, GPUs in use, shares and
    guarantees; reservation age; the decision log's start-latency and placement-cost
    histograms. Read at scrape time, like the gauges above."""

    def __init__(self, planner: Callable[[], Planner | None]) -> None:
        self._planner = planner

    def collect(self) -> Iterator[Metric]:
        planner = self._planner()
        if planner is None:
            return
        m = queue_metrics(planner)
        labels = ["queue", "tenant", "reason"]
        gangs = GaugeMetricFamily(
            "phalanx_queue_pending_gangs", "Pending gangs by reason code", labels=labels
        )
        gpus = GaugeMetricFamily(
            "phalanx_queue_pending_gpus", "GPUs pending gangs ask for, by reason", labels=labels
        )
        for key, count in sorted(m.pending_gangs.items()):
            gangs.add_metric(list(key), count)
            gpus.add_metric(list(key), m.pending_gpus[key])
        used = GaugeMetricFamily(
            "phalanx_queue_gpus_in_use",
            "GPUs held by reserved and bound gangs",
            labels=["queue", "tenant"],
        )
        for pair, value in sorted(m.in_use_gpus.items()):
            used.add_metric(list(pair), value)
        dominant = GaugeMetricFamily(
            "phalanx_tenant_dominant_share", "Tenant's dominant resource share", labels=["tenant"]
        )
        fair = GaugeMetricFamily(
            "phalanx_tenant_fair_share",
            "Tenant's fair dominant share (fair-share queue policies)",
            labels=["tenant"],
        )
        for row in m.tenants:
            dominant.add_metric([row["tenant"]], row["dominant_share"])
            if "fair_share" in row:
                fair.add_metric([row["tenant"]], row["fair_share"])
        guaranteed = GaugeMetricFamily(
            "phalanx_queue_guaranteed_gpus", "Queue's guaranteed GPUs (quota)", labels=["queue"]
        )
        for row in m.quotas:
            if row["guaranteed_gpus"] is not None:
                guaranteed.add_metric([row["queue"]], row["guaranteed_gpus"])
        yield from (gangs, gpus, used, dominant, fair, guaranteed)
        yield GaugeMetricFamily(
            "phalanx_reservations", "Plans reserved and not yet fully bound", m.reservations
        )
        yield GaugeMetricFamily(
            "phalanx_reservation_oldest_age_seconds",
            "Age of the oldest reservation not yet fully bound",
            m.oldest_reservation_s,
        )
        with planner.lock:
            latency = planner.decisions.start_latency
            cost = planner.decisions.placement_cost
            yield HistogramMetricFamily(
                "phalanx_gang_start_latency_seconds",
                "First member seen to every member bound, per gang",
                buckets=latency.cumulative(),
                sum_value=latency.total,
            )
            yield HistogramMetricFamily(
                "phalanx_placement_cost",
                "Total placement cost of each plan and re-plan (H100 NVLink4 = 1)",
                buckets=cost.cumulative(),
                sum_value=cost.total,
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
        self.registry.register(_QueueCollector(planner))
