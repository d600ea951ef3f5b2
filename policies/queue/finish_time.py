"""Themis finish-time fairness (Mahajan et al., NSDI '20): serve the worst-off gang first.

``rho = T_shared / T_isolated``. ``T_shared`` is how long the gang will have taken if it starts
now: time since submission plus its remaining runtime (estimate minus attained service).
``T_isolated`` is how long it would take alone on its fair slice of the cluster, ``1/N`` of
the GPUs with N the tenants that have work: its runtime if it fits in that slice, stretched by
``gpus / slice`` if it does not. rho > 1 means the gang is worse off than in its own small
cluster; the largest rho goes first. Themis' auction for leases is not modelled: this is the
ordering only.
"""

from __future__ import annotations

from typing import Any

from phalanx.policies.estimates import DEFAULT_RUNTIME_ESTIMATE_S, RuntimeEstimator
from phalanx.policies.queue.base import OrderedQueuePolicy, fifo_key
from phalanx.policies.resources import cluster_capacity, gang_demand
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext

MIN_GPUS = 1.0
"""CPU-only gangs are treated as one GPU's worth, so rho stays defined."""


class FinishTimeFairnessPolicy(OrderedQueuePolicy):
    name = "finish-time-fairness"
    reads_attained_service = True
    description = "Themis: largest rho = shared JCT / isolated JCT (worst-off) first."

    def __init__(
        self, default_runtime_s: float = DEFAULT_RUNTIME_ESTIMATE_S, strict: bool = False
    ) -> None:
        super().__init__(strict)
        self.estimator = RuntimeEstimator(default_runtime_s)

    def record_completion(self, gang: Gang, runtime_s: float) -> None:
        self.estimator.record_completion(gang, runtime_s)

    def rho(self, gang: Gang, ctx: QueueContext) -> float:
        gpus = max(gang_demand(gang).gpus, MIN_GPUS)
        done_s = ctx.attained_gpu_s.get(gang.name, 0.0) / gpus
        runtime_s = self.estimator.estimate_s(gang)
        if done_s < runtime_s:
            remaining_s = runtime_s - done_s
        else:  # past its estimate: the history's median residual life, not "done now"
            remaining_s = self.estimator.remaining_after_s(gang, done_s)
            runtime_s = done_s + remaining_s
        shared_s = max(ctx.now_s - gang.submit_time_s, 0.0) + remaining_s
        tenants = {r.gang.tenant for r in ctx.running} | {g.tenant for g in ctx.pending}
        tenants.add(gang.tenant)
        slice_gpus = max(cluster_capacity(ctx.state.compiled).gpus / len(tenants), MIN_GPUS)
        isolated_s = runtime_s * max(1.0, gpus / slice_gpus)
        return shared_s / isolated_s

    def sort_key(self, gang: Gang, ctx: QueueContext) -> Any:
        return (-self.rho(gang, ctx), *fifo_key(gang))

    def rank(self, gang: Gang, ctx: QueueContext) -> float:
        """Preemption rank (``--preemption priority --preemption-option
        rank=finish-time-fairness``): a worse-off gang may evict a better-off one."""
        return self.rho(gang, ctx)
