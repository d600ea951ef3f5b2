"""Tiresias' preemption by name, for callers that build the queue and preemption policies
apart (the extender's config: ``queue: tiresias``, ``preemption: tiresias``).

Why: Tiresias is only itself with preemption, and a config names each policy on its own. The
simulator hands the queue policy's own ranking to its preemption
(:meth:`policies.queue.tiresias.TiresiasPolicy.default_preemption`); here the ranking is a
second Tiresias order built from the same thresholds, ranking by attained service alone. It
does not apply the starvation guard: a promoted gang goes first in the queue but evicts nobody
on the strength of its promotion (a copy that does not see every cycle could promote the
wrong gangs).
"""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.policies.preemption.guards import EvictionHistory
from phalanx.policies.preemption.priority import PriorityPreemption
from phalanx.policies.queue.las import DEFAULT_THRESHOLDS_GPU_S
from phalanx.policies.queue.tiresias import DEFAULT_MIN_RUNTIME_S, TiresiasPolicy


class TiresiasPreemption(PriorityPreemption):
    name = "tiresias"
    description = (
        "Tiresias: evict whole gangs of a lower 2D-LAS queue (same thresholds as the queue)."
    )

    def __init__(
        self,
        thresholds_gpu_s: Sequence[float] = DEFAULT_THRESHOLDS_GPU_S,
        min_runtime_s: float = DEFAULT_MIN_RUNTIME_S,
        history: EvictionHistory | None = None,
    ) -> None:
        self.queues = TiresiasPolicy(thresholds_gpu_s, min_runtime_s=min_runtime_s)
        super().__init__(min_runtime_s=min_runtime_s, rank=self.queues.rank, history=history)
