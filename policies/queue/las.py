"""Tiresias' discretised two-dimensional least-attained-service (2D-LAS, Gu et al. NSDI '19).

A gang's attained service is the GPU-seconds it has received (``ctx.attained_gpu_s``: GPUs x
time, the "two dimensions"). Thresholds cut service into priority queues; a gang that has
received less goes first, and inside one queue gangs keep FIFO order, so no runtime estimate
is needed. Tiresias' starvation guard moves a gang back to the top queue once it has waited
``promote_knob`` times as long as it has run. Tiresias is preemptive: pair this policy with the
``priority`` preemption policy given ``rank=policy.rank`` to let fresh gangs evict
long-running ones.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from phalanx.policies.queue.base import OrderedQueuePolicy, fifo_key
from phalanx.policies.resources import gang_demand
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext

DEFAULT_THRESHOLDS_GPU_S = (3600.0,)
"""The Tiresias simulator's example: two queues split at one GPU-hour."""


class LasPolicy(OrderedQueuePolicy):
    name = "las"
    reads_attained_service = True
    description = "Tiresias 2D-LAS: least attained GPU-service first, in discretised queues."

    def __init__(
        self,
        thresholds_gpu_s: Sequence[float] = DEFAULT_THRESHOLDS_GPU_S,
        promote_knob: float | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(strict)
        thresholds = [float(t) for t in thresholds_gpu_s]
        if any(t <= 0 for t in thresholds) or thresholds != sorted(set(thresholds)):
            raise ValueError(
                f"LAS thresholds must be positive and strictly increasing, got {thresholds}"
            )
        if promote_knob is not None and not promote_knob > 0:
            raise ValueError(f"promote_knob must be positive, got {promote_knob}")
        self.thresholds_gpu_s = thresholds
        self.promote_knob = promote_knob

    def queue_index(self, gang: Gang, ctx: QueueContext) -> int:
        """0 is the top queue."""
        attained = ctx.attained_gpu_s.get(gang.name, 0.0)
        index = bisect.bisect_right(self.thresholds_gpu_s, attained)
        if self.promote_knob is not None and index > 0:
            gpus = max(gang_demand(gang).gpus, 1.0)
            executed_s = attained / gpus
            waited_s = ctx.now_s - gang.submit_time_s - executed_s
            if waited_s >= self.promote_knob * executed_s:
                return 0
        return index

    def rank(self, gang: Gang, ctx: QueueContext) -> float:
        """Preemption rank: higher queues outrank lower ones."""
        return -float(self.queue_index(gang, ctx))

    def sort_key(self, gang: Gang, ctx: QueueContext) -> Any:
        return (self.queue_index(gang, ctx), *fifo_key(gang))
