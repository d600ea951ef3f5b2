"""One simulation from start to finish: load the trace and cluster, run, summarise.

:class:`RunSpec` holds everything a run needs as plain values, so that sweeps can ship it to
another process (or a Ray worker) and get back the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.engine import ProgressHook, Simulation
from phalanx.simulator.fill import fill_workload
from phalanx.simulator.job import TraceWorkload
from phalanx.simulator.metrics import summarize
from phalanx.simulator.records import SimulationResult
from phalanx.simulator.traces import TraceOptions, load_trace
from phalanx.topology.model import MILLI_PER_GPU, Cluster


@dataclass(frozen=True)
class RunSpec:
    trace: str
    """``FORMAT:PATH`` (``synthetic:SPEC``)."""
    cluster: str | None = None
    config: SimulationConfig = field(default_factory=SimulationConfig)
    trace_options: TraceOptions = field(default_factory=TraceOptions)
    demand: float | None = None
    """Fill protocol target (arrived GPU demand / capacity); None replays the trace's times."""
    label: str = ""
    """Name of the cluster variant in sweep tables."""


def simulate(
    workload: TraceWorkload,
    cluster: Cluster,
    config: SimulationConfig,
    *,
    demand: float | None = None,
    progress: ProgressHook | None = None,
) -> SimulationResult:
    if demand is not None:
        capacity_milli = MILLI_PER_GPU * sum(
            gpu.healthy and not gpu.mig_enabled for node in cluster.nodes for gpu in node.gpus
        )
        workload = fill_workload(workload, capacity_milli, demand, config.seed)
        config = replace(config, drop_unplaced=True)
    return Simulation(workload, cluster, config, fill_demand=demand, progress=progress).run()


def run_spec(spec: RunSpec) -> tuple[SimulationResult, dict[str, Any]]:
    workload = load_trace(spec.trace, spec.trace_options)
    cluster = resolve_cluster(spec.cluster, workload)
    result = simulate(workload, cluster, spec.config, demand=spec.demand)
    return result, summarize(result)
