"""What the engine records as it runs: time integrals and a sampled time series.

Integrals are exact (updated at every change): allocated GPU milli over time, per tenant, and
the number of jobs in the system (for finish-time fairness). The time series is sampled on a
regular grid (replay) or at each whole percent of arrived GPU demand (fill protocol), so its
size does not grow with the trace.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from phalanx.simulator.fragmentation import FragmentationMeter

MAX_SAMPLES = 1000
"""A replay's series is thinned to every other point when it reaches this many."""
SAMPLE_COLUMNS = (
    "time_s",
    "arrived_demand",
    "gpu_allocation_ratio",
    "running_jobs",
    "queued_jobs",
    "fragmentation_ratio",
    "fragmentation_of_capacity",
)


@dataclass
class Timeline:
    capacity_milli: float
    meter: FragmentationMeter
    sample_step_s: float = math.inf
    """Grid step for replay sampling; inf disables time sampling."""
    max_samples: int = MAX_SAMPLES
    samples: list[tuple[float, ...]] = field(default_factory=list)
    allocated_milli: int = 0
    tenant_milli: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    allocated_area: float = 0.0
    tenant_area: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    in_system: int = 0
    change_times: list[float] = field(default_factory=list)
    system_area: list[float] = field(default_factory=list)
    """Cumulative integral of jobs-in-system at each change time (for contention averages)."""
    arrived_milli: int = 0
    start_s: float | None = None
    last_s: float = 0.0
    _next_sample_s: float = math.inf

    def begin(self, now_s: float) -> None:
        self.start_s = self.last_s = now_s
        self._next_sample_s = now_s
        self.change_times.append(now_s)
        self.system_area.append(0.0)

    def advance(self, now_s: float, running: int, queued: int) -> None:
        """Move the clock to ``now_s`` (the state is unchanged since the last call)."""
        if self.start_s is None:
            self.begin(now_s)
        while self._next_sample_s <= now_s and math.isfinite(self.sample_step_s):
            self.sample(self._next_sample_s, running, queued)
            self._next_sample_s += self.sample_step_s
            if len(self.samples) >= self.max_samples:
                self._coarsen()
        dt = now_s - self.last_s
        if dt > 0:
            self.allocated_area += self.allocated_milli * dt
            for tenant, milli in self.tenant_milli.items():
                if milli:
                    self.tenant_area[tenant] += milli * dt
            self.system_area.append(self.system_area[-1] + self.in_system * dt)
            self.change_times.append(now_s)
            self.last_s = now_s

    def _coarsen(self) -> None:
        """Keep every other sample and double the step, so a run that goes on long after
        its arrivals still keeps a bounded series on a regular grid."""
        self.samples = self.samples[::2]
        self.sample_step_s *= 2
        self._next_sample_s = self.samples[-1][0] + self.sample_step_s

    def allocate(self, tenant: str, milli: int) -> None:
        self.allocated_milli += milli
        self.tenant_milli[tenant] += milli

    def release(self, tenant: str, milli: int) -> None:
        self.allocated_milli -= milli
        self.tenant_milli[tenant] -= milli

    def sample(self, time_s: float, running: int, queued: int) -> None:
        frag = self.meter.measure()
        self.samples.append(
            (
                time_s,
                self.arrived_milli / self.capacity_milli if self.capacity_milli else 0.0,
                self.allocation_ratio,
                float(running),
                float(queued),
                frag.ratio,
                frag.of_capacity,
            )
        )

    @property
    def allocation_ratio(self) -> float:
        return self.allocated_milli / self.capacity_milli if self.capacity_milli else 0.0

    def mean_allocation_ratio(self) -> float:
        span = self.last_s - (self.start_s or 0.0)
        if span <= 0 or not self.capacity_milli:
            return self.allocation_ratio
        return self.allocated_area / (self.capacity_milli * span)

    def mean_in_system(self, start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
        """Average number of jobs in the system over each ``[start, end]`` window."""
        times = np.asarray(self.change_times)
        area = np.asarray(self.system_area)
        lo = np.interp(start_s, times, area)
        hi = np.interp(end_s, times, area)
        span = end_s - start_s
        return np.where(span > 0, (hi - lo) / np.where(span > 0, span, 1.0), 1.0)

    def sample_array(self) -> np.ndarray:
        return np.array(self.samples, dtype=np.float64).reshape(-1, len(SAMPLE_COLUMNS))
