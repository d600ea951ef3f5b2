"""The one plain form every trace loader produces: jobs, the workload and what was skipped.

Loaders know nothing about the scheduler; :mod:`simulator.gangs` is the single place where a
:class:`Job` becomes a :class:`scheduler.gang.Gang`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from phalanx.topology.model import MILLI_PER_GPU, Cluster

if TYPE_CHECKING:
    from phalanx.simulator.traces.philly_activity import NodeActivity

DEFAULT_TENANT = "default"


class TraceError(ValueError):
    """A trace that cannot be read as asked; names the file, line and field at fault."""

    def __init__(self, path: str, message: str, line: int | None = None, field: str | None = None):
        self.path = path
        self.message = message
        self.line = line
        self.field = field
        where = path if line is None else f"{path}:{line}"
        if field:
            where = f"{where}: field {field!r}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[type[TraceError], tuple[str, str, int | None, str | None]]:
        # A sweep's worker process sends the error back pickled; the default reduction would
        # call __init__ with the formatted text alone and fail, hiding the real message.
        return type(self), (self.path, self.message, self.line, self.field)


@dataclass(frozen=True)
class Job:
    """One job of a trace.

    ``gpus`` is the job's total whole GPUs; ``gpu_milli`` (1..999) a share of one GPU for a
    one-pod job, never both. ``pods`` fixes the gang size (``gpus`` must divide evenly); None
    splits the job into node-sized pods when it becomes a gang. ``cpu_milli`` and
    ``memory_mib`` are per pod. ``duration_s`` is the trace's run time on a placement that
    costs nothing extra (``inf``: never departs, as in the FGD fill protocol).
    """

    name: str
    submit_time_s: float
    duration_s: float
    gpus: int = 0
    gpu_milli: int = 0
    pods: int | None = None
    cpu_milli: int = 0
    memory_mib: int = 0
    gpu_products: tuple[str, ...] = ()
    tenant: str = DEFAULT_TENANT
    priority: int = 0
    job_class: str = ""
    """Model or application family, used to look up communication intensity."""
    comm_intensity: float | None = None
    """Overrides the class default (0..1) when the trace states it."""
    runtime_estimate_s: float | None = None
    """What the scheduler is told the run time will be (SJF, backfill); None: unknown."""
    source: str = ""
    """``file:line`` the job came from, for error messages."""
    placement_stretch: Callable[[tuple[int, ...]], float] | None = field(
        default=None, compare=False, repr=False
    )
    """Run-time factor on a placement, given as GPUs per node (most first), against
    ``duration_s``: a trace whose own simulator models each placement's speed (Pollux's
    goodput model) says it here. None: the simulator's slowdown model decides."""

    @property
    def gpu_milli_total(self) -> int:
        """GPU demand in milli-GPU, the unit of the FGD paper's demand and allocation."""
        return self.gpus * MILLI_PER_GPU + self.gpu_milli

    @property
    def gpu_demand(self) -> float:
        return self.gpu_milli_total / MILLI_PER_GPU

    def check(self) -> str | None:
        """The reason this job is malformed, or None."""
        if not self.name:
            return "job has no name"
        if not math.isfinite(self.submit_time_s) or self.submit_time_s < 0:
            return "submit time must be a finite number >= 0"
        if not self.duration_s > 0:
            return "duration must be positive"
        if self.gpus < 0 or self.gpu_milli < 0 or self.cpu_milli < 0 or self.memory_mib < 0:
            return "resource requests must not be negative"
        if self.gpus and self.gpu_milli:
            return "ask for whole GPUs or a gpu_milli share, not both"
        if self.gpu_milli >= MILLI_PER_GPU:
            return f"gpu_milli must be below {MILLI_PER_GPU}"
        if self.pods is not None:
            if self.pods < 1:
                return "pods must be at least 1"
            if self.gpu_milli and self.pods != 1:
                return "a gpu_milli share is for one pod"
            if self.gpus % self.pods:
                return "GPUs do not split evenly over the pods"
        if self.comm_intensity is not None and not 0.0 <= self.comm_intensity <= 1.0:
            return "comm_intensity must be within 0..1"
        if self.runtime_estimate_s is not None and not self.runtime_estimate_s > 0:
            return "runtime estimate must be positive"
        return None


@dataclass
class SkipSummary:
    """Rows a loader did not turn into jobs, counted by reason, with the first few places."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.max_examples:
            shown.append(where)

    def merge(self, other: SkipSummary) -> None:
        for reason, count in other.counts.items():
            self.counts[reason] += count
            for where in other.examples.get(reason, []):
                shown = self.examples.setdefault(reason, [])
                if len(shown) < self.max_examples:
                    shown.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """One line per reason: count, reason and where the first ones were."""
        return [
            f"{count} skipped: {reason} (e.g. {', '.join(self.examples.get(reason, []))})"
            for reason, count in self.counts.most_common()
        ]

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts.most_common())


@dataclass
class TraceWorkload:
    """Jobs of one trace, sorted by submit time, plus the trace's own cluster if it has one.

    ``tenant_guarantees`` maps a tenant to its guaranteed share of the cluster's GPUs (0..1),
    where the trace says (Philly virtual-cluster sizes); tenants not listed have none.
    """

    name: str
    jobs: list[Job]
    source: str
    cluster: Cluster | None = None
    skipped: SkipSummary = field(default_factory=SkipSummary)
    tenant_guarantees: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What the loader assumed (duration model, unit conversions), for the report."""
    cluster_notes: list[str] = field(default_factory=list)
    """What the loader assumed about ``cluster``; reported only when a run uses that cluster
    (not one given with ``--cluster``)."""
    node_activity: NodeActivity | None = None
    """Philly's per-minute node series, where it sits beside the jobs (``philly:auto``)."""

    def __post_init__(self) -> None:
        self.jobs.sort(key=lambda j: (j.submit_time_s, j.name))

    @property
    def gpu_milli_total(self) -> int:
        return sum(j.gpu_milli_total for j in self.jobs)

    @property
    def tenants(self) -> list[str]:
        return sorted({j.tenant for j in self.jobs})
