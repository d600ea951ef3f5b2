"""What a run records: each job's life, the running set the cycle reads, and the result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import RunningGang
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.job import Job, SkipSummary
from phalanx.simulator.timeline import Timeline
from phalanx.topology.model import MILLI_PER_GPU


class JobStatus(StrEnum):
    QUEUED = "queued"
    RESERVED = "reserved"
    RUNNING = "running"
    COMPLETED = "completed"
    REJECTED = "rejected"
    """Can never run on this cluster (too big, unknown GPU model...)."""
    UNPLACED = "unplaced"
    """Did not fit on arrival under the fill protocol, which does not retry."""


@dataclass(slots=True)
class JobRun:
    """One job's life in the simulation (the per-job output row)."""

    index: int
    job: Job
    gang: Gang
    status: JobStatus = JobStatus.QUEUED
    reason: str = ""
    first_start_s: float = math.nan
    start_s: float = math.nan
    end_s: float = math.nan
    remaining_s: float = 0.0
    """Work left, in seconds at full speed."""
    stretch: float = 1.0
    preemptions: int = 0
    reservation_expiries: int = 0
    """Times the gang was reserved but not bound within the TTL, and queued again."""
    attained_gpu_s: float = 0.0
    version: int = 0
    placement_cost: float = math.nan
    comm_cost: float = math.nan
    cost_ratio: float = math.nan
    nodes: int = 0
    gpus_per_node: tuple[int, ...] = ()
    """Whole GPUs on each node of the current placement, most first."""
    wait_code: str = ""
    """The reason code it waits under now, or of its last spell in the queue
    (:mod:`simulator.wait_reasons`); empty before a cycle labelled it."""
    wait_since_s: float = math.nan
    """When the current code (or spell) began; NaN while not queued."""
    wait_s_by_code: dict[str, float] | None = None
    """Seconds queued under each reason code, over every spell; None if it never waited."""

    @property
    def gpus(self) -> float:
        return self.gang.gpu_milli_total / MILLI_PER_GPU

    @property
    def wait_s(self) -> float:
        return self.first_start_s - self.job.submit_time_s

    @property
    def jct_s(self) -> float:
        return self.end_s - self.job.submit_time_s


class RunningSet:
    """Running gangs as one list the cycle reads, with O(1) add and remove."""

    def __init__(self) -> None:
        self.items: list[RunningGang] = []
        self._pos: dict[str, int] = {}

    def add(self, running: RunningGang) -> None:
        self._pos[running.gang.name] = len(self.items)
        self.items.append(running)

    def remove(self, name: str) -> None:
        i = self._pos.pop(name)
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self._pos[last.gang.name] = i

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class SimulationResult:
    workload: str
    cluster: str
    config: SimulationConfig
    runs: list[JobRun]
    timeline: Timeline
    skipped: SkipSummary
    tenant_guarantees: dict[str, float]
    cluster_gpus: int
    wall_s: float
    events: int
    cycles: int
    preemption_events: int
    fill_demand: float | None = None
    notes: list[str] = field(default_factory=list)
    queue_policy: str = ""
    """The queue policy that ran: ``config.policy``, or ``fifo`` when that named a scorer
    under the fill protocol."""
    scorer: str | None = None
    """The scorer that ran (``config.scorer``, or ``config.policy`` when that named one);
    None: the engine's own placement cost."""
    preemption: str | None = None
    """The preemption policy that ran: ``config.preemption``, or the queue policy's own
    (``tiresias``), or None."""
