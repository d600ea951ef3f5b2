"""GPU fragmentation as the FGD paper defines it (Weng et al., ATC '23, section 3).

For a node and a task type of the target workload, the fragment is the idle GPU capacity the
task cannot use; a node's fragmentation is the popularity-weighted expectation over the
workload's task types, the cluster's the sum over nodes. The expectation is the FGD scorer's
own (:meth:`policies.scoring.fgd.FgdScorer.node_fragmentation`), measured against the task
types of the simulated workload, so the metric and the policy can never disagree.
``ratio`` divides by idle GPU capacity (the paper's "frag rate", Fig. 7); ``of_capacity`` by
total capacity ("frag / total").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from phalanx.policies.scoring.fgd import FgdScorer
from phalanx.policies.scoring.fgd_workload import Workload
from phalanx.scheduler.gang import Gang
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU


@dataclass(frozen=True)
class FragmentationSample:
    fragmented_milli: float
    idle_milli: float
    capacity_milli: float

    @property
    def ratio(self) -> float:
        """Fragmented share of idle GPU capacity (0 when nothing is idle)."""
        return self.fragmented_milli / self.idle_milli if self.idle_milli else 0.0

    @property
    def of_capacity(self) -> float:
        return self.fragmented_milli / self.capacity_milli if self.capacity_milli else 0.0


class FragmentationMeter:
    """Measures the cluster's fragmentation against one workload's pod distribution."""

    def __init__(self, compiled: CompiledCluster, gangs: Sequence[Gang]):
        self.compiled = compiled
        requests = [m.request for g in gangs for m in g.members]
        workload = Workload.from_requests(requests) if requests else Workload.default()
        self._fgd = FgdScorer(workload)
        self._gpu_nodes = np.flatnonzero(compiled.gpu_usable.any(axis=1))
        self.capacity_milli = float(compiled.gpu_usable.sum() * MILLI_PER_GPU)

    def measure(self) -> FragmentationSample:
        c = self.compiled
        nodes = self._gpu_nodes
        idle = np.where(c.gpu_usable[nodes], MILLI_PER_GPU - c.gpu_used_milli[nodes], 0).sum()
        fragmented = self._fgd.node_fragmentation(c, nodes).sum() if nodes.size else 0.0
        return FragmentationSample(float(fragmented), float(idle), self.capacity_milli)
