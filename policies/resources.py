"""Resource vectors (GPU milli, cpu milli, memory MiB) as fairness and quota policies count them.

One small value type, so that a gang's demand, a placement's usage, a tenant's total and the
cluster's capacity are all added, compared and divided the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import RunningGang
from phalanx.scheduler.placement import Placement
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

RESOURCE_NAMES = ("gpu_milli", "cpu_milli", "memory_mib")


@dataclass(frozen=True)
class Resources:
    gpu_milli: float = 0.0
    cpu_milli: float = 0.0
    memory_mib: float = 0.0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.gpu_milli + other.gpu_milli,
            self.cpu_milli + other.cpu_milli,
            self.memory_mib + other.memory_mib,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.gpu_milli - other.gpu_milli,
            self.cpu_milli - other.cpu_milli,
            self.memory_mib - other.memory_mib,
        )

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.gpu_milli, self.cpu_milli, self.memory_mib)

    def get(self, name: str) -> float:
        return float(getattr(self, name))

    def fits_within(self, limit: Resources) -> bool:
        return all(a <= b for a, b in zip(self.as_tuple(), limit.as_tuple(), strict=True))

    def dominant_share(self, capacity: Resources) -> float:
        """Largest fraction of any resource (DRF's dominant share); resources the cluster
        does not have are ignored."""
        shares = [u / c for u, c in zip(self.as_tuple(), capacity.as_tuple(), strict=True) if c > 0]
        return max(shares, default=0.0)

    @property
    def gpus(self) -> float:
        return self.gpu_milli / MILLI_PER_GPU


def gang_demand(gang: Gang) -> Resources:
    """What the whole gang asks for (every member, not only the quorum)."""
    return Resources(
        gpu_milli=sum(m.request.gpu_milli_total for m in gang.members),
        cpu_milli=sum(m.request.cpu_milli for m in gang.members),
        memory_mib=sum(m.request.memory_mib for m in gang.members),
    )


def placement_usage(placement: Placement) -> Resources:
    """What a placement actually holds (a quorum start may hold less than the demand)."""
    return Resources(
        gpu_milli=sum(len(m.gpus) * m.gpu_milli for m in placement.members),
        cpu_milli=sum(m.cpu_milli for m in placement.members),
        memory_mib=sum(m.memory_mib for m in placement.members),
    )


def usage_by(running: Iterable[RunningGang], key: Callable[[Gang], str]) -> dict[str, Resources]:
    """Total usage of the running gangs, grouped by ``key`` (tenant, queue...)."""
    totals: dict[str, Resources] = {}
    for r in running:
        k = key(r.gang)
        totals[k] = totals.get(k, Resources()) + placement_usage(r.placement)
    return totals


def total_usage(running: Iterable[RunningGang]) -> Resources:
    total = Resources()
    for r in running:
        total = total + placement_usage(r.placement)
    return total


def cluster_capacity(compiled: CompiledCluster) -> Resources:
    """Usable GPU milli, allocatable cpu and memory of the whole cluster."""
    return Resources(
        gpu_milli=float(compiled.gpu_usable.sum() * MILLI_PER_GPU),
        cpu_milli=float(compiled.cpu_capacity_milli.sum()),
        memory_mib=float(compiled.memory_capacity_mib.sum()),
    )
