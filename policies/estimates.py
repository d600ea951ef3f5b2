"""Runtime estimates for policies that need to know how long a gang will run (SJF, backfill).

Where an estimate comes from, first match wins:

1. the gang's own ``runtime_estimate_s`` (the trace's duration or the user's time limit, as
   Slurm's backfill uses ``--time``);
2. the median runtime of the last :data:`MEDIAN_WINDOW` gangs of the same queue that finished
   (reported through :meth:`RuntimeEstimator.record_completion`);
3. :data:`DEFAULT_RUNTIME_ESTIMATE_S`.

A running gang that has outlived its estimate is expected to end "now": backfill then plans
as if its resources were about to free, which is optimistic, but never delays the head's
reservation by more than the overrun itself.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import RunningGang

DEFAULT_RUNTIME_ESTIMATE_S = 3600.0
"""One hour, when neither the gang nor its queue's history says anything."""
MEDIAN_WINDOW = 101
"""Completed runtimes remembered per queue (odd, so the median is one of them)."""


class RuntimeEstimator:
    def __init__(
        self, default_s: float = DEFAULT_RUNTIME_ESTIMATE_S, window: int = MEDIAN_WINDOW
    ) -> None:
        if default_s <= 0 or not math.isfinite(default_s):
            raise ValueError(f"default runtime estimate must be positive, got {default_s}")
        if window < 1:
            raise ValueError(f"median window must be at least 1, got {window}")
        self.default_s = default_s
        self.window = window
        self._history: dict[str, deque[float]] = {}
        self._median: dict[str, float] = {}

    def record_completion(self, gang: Gang, runtime_s: float) -> None:
        if runtime_s < 0 or not math.isfinite(runtime_s):
            raise ValueError(f"gang {gang.name!r}: runtime {runtime_s} is not a duration")
        history = self._history.setdefault(gang.queue, deque(maxlen=self.window))
        history.append(runtime_s)
        self._median[gang.queue] = statistics.median(history)

    def estimate_s(self, gang: Gang) -> float:
        """Expected total runtime of ``gang``."""
        own = gang.runtime_estimate_s
        if own is not None and own > 0 and math.isfinite(own):
            return float(own)
        return self._median.get(gang.queue, self.default_s)

    def expected_end_s(self, running: RunningGang, now_s: float) -> float:
        """When ``running`` is expected to free its resources (never before ``now_s``)."""
        end = running.estimated_end_s
        if not math.isfinite(end):
            end = running.start_s + self.estimate_s(running.gang)
        return max(end, now_s)
