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

import math
from typing import Any

from phalanx.policies.estimates import DEFAULT_RUNTIME_ESTIMATE_S, RuntimeEstimator
from phalanx.policies.preemption.priority import PriorityPreemption
from phalanx.policies.queue.base import OrderedQueuePolicy, fifo_key
from phalanx.policies.resources import cluster_capacity, gang_demand
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext

MIN_GPUS = 1.0
DEFAULT_RHO_BAND = 0.25
"""Preemption compares rho in bands this wide (see :meth:`FinishTimeFairnessPolicy.rank`)."""
CROSSING_MARGIN_S = 1e-6
"""Wake a hair after a rho crossing, so that rounding cannot leave the two just apart."""
"""CPU-only gangs are treated as one GPU's worth, so rho stays defined."""


class FinishTimeFairnessPolicy(OrderedQueuePolicy):
    name = "finish-time-fairness"
    reads_attained_service = True
    description = "Themis: largest rho = shared JCT / isolated JCT (worst-off) first."

    def __init__(
        self,
        default_runtime_s: float = DEFAULT_RUNTIME_ESTIMATE_S,
        strict: bool = False,
        preemptive: bool = False,
        min_runtime_s: float = 0.0,
        rho_band: float = DEFAULT_RHO_BAND,
    ) -> None:
        super().__init__(strict)
        if min_runtime_s < 0:
            raise ValueError(f"min_runtime_s must not be negative, got {min_runtime_s}")
        if not rho_band > 0:
            raise ValueError(f"rho_band must be positive, got {rho_band}")
        self.rho_band = float(rho_band)
        self.estimator = RuntimeEstimator(default_runtime_s)
        self.preemptive = bool(preemptive)
        self.min_runtime_s = float(min_runtime_s)
        self.resume_after_preemption = self.preemptive
        self._tenants_of: tuple[QueueContext, set[str]] | None = None
        """Evicted gangs keep their progress (checkpointed jobs, as Themis' leases assume)."""

    def default_preemption(self) -> PriorityPreemption | None:
        """With ``preemptive``: a worse-off gang (higher rho) evicts better-off ones, whole
        gangs, only if it then fits. Ordering alone cannot help a short job that arrives while
        long ones hold every GPU; this is the lease expiry of Themis without its auction."""
        if not self.preemptive:
            return None
        return PriorityPreemption(min_runtime_s=self.min_runtime_s, rank=self.rank)

    def record_completion(self, gang: Gang, runtime_s: float) -> None:
        self.estimator.record_completion(gang, runtime_s)

    def rho(self, gang: Gang, ctx: QueueContext) -> float:
        return self._rho_and_isolated(gang, ctx)[0]

    def _rho_and_isolated(self, gang: Gang, ctx: QueueContext) -> tuple[float, float]:
        gpus = max(gang_demand(gang).gpus, MIN_GPUS)
        done_s = ctx.attained_gpu_s.get(gang.name, 0.0) / gpus
        runtime_s = self.estimator.estimate_s(gang)
        if done_s < runtime_s:
            remaining_s = runtime_s - done_s
        else:  # past its estimate: the history's median residual life, not "done now"
            remaining_s = self.estimator.remaining_after_s(gang, done_s)
            runtime_s = done_s + remaining_s
        shared_s = max(ctx.now_s - gang.submit_time_s, 0.0) + remaining_s
        tenants = self._tenants(ctx)
        count = len(tenants) + (gang.tenant not in tenants)
        slice_gpus = max(cluster_capacity(ctx.state.compiled).gpus / count, MIN_GPUS)
        isolated_s = runtime_s * max(1.0, gpus / slice_gpus)
        return shared_s / isolated_s, isolated_s

    def _tenants(self, ctx: QueueContext) -> set[str]:
        """Tenants with work in ``ctx``, counted once per context (rho is asked for every
        gang; counting them per call made a cycle quadratic in the queue's length)."""
        if self._tenants_of is None or self._tenants_of[0] is not ctx:
            tenants = {r.gang.tenant for r in ctx.running} | {g.tenant for g in ctx.pending}
            self._tenants_of = (ctx, tenants)
        return self._tenants_of[1]

    def next_change_s(self, ctx: QueueContext) -> float | None:
        """With ``preemptive``: when the first waiting gang's rho, which grows by 1/isolated
        time per second of waiting, reaches the band above the lowest running gang's (theirs
        holds still while they progress as estimated), so the simulator runs a cycle then
        and not at the next unrelated event. None when nothing is due."""
        if not self.preemptive or not ctx.running or not ctx.pending:
            return None
        lowest = min(self.rank(r.gang, ctx) for r in ctx.running)
        floor = (lowest + 1) * self.rho_band  # the rho that outranks the lowest running gang
        due = math.inf
        for gang in ctx.pending:
            rho, isolated_s = self._rho_and_isolated(gang, ctx)
            if rho < floor:
                due = min(due, ctx.now_s + (floor - rho) * isolated_s + CROSSING_MARGIN_S)
        return due if math.isfinite(due) else None

    def sort_key(self, gang: Gang, ctx: QueueContext) -> Any:
        return (-self.rho(gang, ctx), *fifo_key(gang))

    def rank(self, gang: Gang, ctx: QueueContext) -> float:
        """Preemption rank: rho in whole bands of ``rho_band``, so a worse-off gang evicts only
        gangs at least a band better off. Ranked by rho itself, a waiting gang overtook a
        running one the moment their rho met, the evicted one overtook back a microsecond
        later, and three gangs took turns forever (a run never ended)."""
        return float(math.floor(self.rho(gang, ctx) / self.rho_band))
