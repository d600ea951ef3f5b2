"""Tiresias (Gu et al., NSDI '19): preemptive discretised 2D-LAS with a starvation guard.

Why a policy of its own: 2D-LAS only helps if it can take GPUs back. A job that has not started
has zero attained service, so without preemption LAS orders the queue exactly like FIFO and
gives FIFO's results. Tiresias is the whole package:

- **2D-LAS in discretised queues.** Attained service is GPUs x seconds run (the two
  dimensions). ``thresholds_gpu_s`` cut it into queues; queue 0 (least service) goes first.
  Inside a queue, gangs keep the order in which they entered it (arrival, demotion or
  promotion), as in Tiresias' and Pollux's simulators, so no runtime estimate is needed.
- **Demotion and preemption.** A running gang whose service crosses a threshold moves down a
  queue; a waiting gang of a higher queue may then evict it (:meth:`default_preemption`:
  priority preemption ranked by queue). :meth:`next_change_s` tells the simulator when the
  next crossing is due, so the demotion happens on time and not at the next unrelated event.
- **Starvation guard.** A gang that has waited ``starve_limit_s`` since it last ran (the
  paper's STARVELIMIT), or ``promote_knob`` times its own run time (Tiresias' code), is put
  back into queue 0 with its queue service counted from zero again.
- **Resume.** Tiresias assumes checkpointed jobs, so a preempted gang keeps its progress
  (``resume_after_preemption``; the simulator honours it unless told otherwise).

The policy remembers, per gang, when it was last seen running and when it entered its queue;
it learns this from the contexts of the cycles it orders (the simulator and the extender call
:meth:`order` every cycle), so it needs nothing from its caller but ``attained_gpu_s``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from phalanx.policies.preemption.priority import PriorityPreemption
from phalanx.policies.queue.las import DEFAULT_THRESHOLDS_GPU_S, LasPolicy
from phalanx.policies.resources import gang_demand
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext

DEFAULT_MIN_RUNTIME_S = 0.0
"""Tiresias evicts at once: ranks change only with service, so a gang cannot be evicted by the
gang it just evicted (the preemptor is demoted no faster than the victim's queue allows)."""

CROSSING_MARGIN_S = 1e-6
"""Wake a hair after a threshold crossing, so that float rounding cannot leave the gang just
below it and ask for another wake-up a few ulps later."""


class TiresiasPolicy(LasPolicy):
    name = "tiresias"
    description = (
        "Tiresias: preemptive 2D-LAS (GPU-seconds) in queues with demotion, starvation guard "
        "and resume after preemption."
    )
    resume_after_preemption = True
    """Preempted gangs keep their progress (checkpointed jobs, as Tiresias assumes)."""

    def __init__(
        self,
        thresholds_gpu_s: Sequence[float] = DEFAULT_THRESHOLDS_GPU_S,
        starve_limit_s: float | None = None,
        promote_knob: float | None = None,
        min_runtime_s: float = DEFAULT_MIN_RUNTIME_S,
        strict: bool = False,
    ) -> None:
        super().__init__(thresholds_gpu_s, promote_knob, strict)
        if starve_limit_s is not None and not starve_limit_s > 0:
            raise ValueError(f"starve_limit_s must be positive, got {starve_limit_s}")
        if min_runtime_s < 0:
            raise ValueError(f"min_runtime_s must not be negative, got {min_runtime_s}")
        self.starve_limit_s = None if starve_limit_s is None else float(starve_limit_s)
        self.min_runtime_s = float(min_runtime_s)
        self._last_ran: dict[str, float] = {}
        """Gang -> the last cycle time it was seen running."""
        self._baseline: dict[str, float] = {}
        """Gang -> attained GPU-seconds at its last promotion (service counts from there)."""
        self._entered: dict[str, tuple[int, float]] = {}
        """Gang -> (queue, time it entered that queue): the order inside a queue."""
        self._promotions = 0

    # ------------------------------------------------------------------ queues
    def service_gpu_s(self, gang: Gang, ctx: QueueContext) -> float:
        """Service that decides the queue: attained GPU-seconds since the last promotion."""
        attained = ctx.attained_gpu_s.get(gang.name, 0.0)
        return max(attained - self._baseline.get(gang.name, 0.0), 0.0)

    def queue_index(self, gang: Gang, ctx: QueueContext) -> int:
        """0 is the top queue (least service)."""
        return bisect.bisect_right(self.thresholds_gpu_s, self.service_gpu_s(gang, ctx))

    def rank(self, gang: Gang, ctx: QueueContext) -> float:
        """Preemption rank: a higher queue outranks a lower one, and only that."""
        return -float(self.queue_index(gang, ctx))

    def sort_key(self, gang: Gang, ctx: QueueContext) -> Any:
        queue, entered = self._entered.get(gang.name, (0, gang.submit_time_s))
        return (queue, entered, gang.submit_time_s, gang.name)

    def order(self, pending: Sequence[Gang], ctx: QueueContext) -> list[Gang]:
        self.observe(pending, ctx)
        return sorted(pending, key=lambda g: self.sort_key(g, ctx))

    @property
    def promotions(self) -> int:
        """How many times the starvation guard has promoted a gang so far."""
        return self._promotions

    # ------------------------------------------------------------------ bookkeeping
    def observe(self, pending: Sequence[Gang], ctx: QueueContext) -> None:
        """Learn from one cycle's context: who runs now, who starved, who changed queue."""
        now = ctx.now_s
        running = [r.gang for r in ctx.running]
        for gang in running:
            self._last_ran[gang.name] = now
        for gang in pending:
            if self._starving(gang, ctx):
                self._baseline[gang.name] = ctx.attained_gpu_s.get(gang.name, 0.0)
                self._entered[gang.name] = (0, now)
                self._promotions += 1
        alive = set()
        for gang in [*running, *pending]:
            alive.add(gang.name)
            queue = self.queue_index(gang, ctx)
            known = self._entered.get(gang.name)
            if known is None:
                self._entered[gang.name] = (queue, gang.submit_time_s)
            elif known[0] != queue:
                self._entered[gang.name] = (queue, now)
        for table in (self._last_ran, self._baseline, self._entered):
            for name in [n for n in table if n not in alive]:
                del table[name]

    def waited_s(self, gang: Gang, ctx: QueueContext) -> float:
        """Time since ``gang`` last ran (since submission if it never did)."""
        return ctx.now_s - self._last_ran.get(gang.name, gang.submit_time_s)

    def _starving(self, gang: Gang, ctx: QueueContext) -> bool:
        if self.queue_index(gang, ctx) == 0:
            return False
        waited = self.waited_s(gang, ctx)
        if self.starve_limit_s is not None and waited >= self.starve_limit_s:
            return True
        if self.promote_knob is not None:
            executed_s = self.service_gpu_s(gang, ctx) / _gpus(gang)
            return waited >= self.promote_knob * executed_s
        return False

    # ------------------------------------------------------------------ engine hooks
    def default_preemption(self) -> PriorityPreemption:
        """The preemption that makes the policy Tiresias: evict gangs of a lower queue."""
        return PriorityPreemption(min_runtime_s=self.min_runtime_s, rank=self.rank)

    def next_change_s(self, ctx: QueueContext) -> float | None:
        """The earliest time after ``ctx.now_s`` at which a queue changes with no other event:
        a running gang crosses its next threshold, or a waiting one reaches the starvation
        guard. The simulator runs a cycle then; None if nothing is due."""
        now = ctx.now_s
        due = math.inf
        for r in ctx.running:
            service = self.service_gpu_s(r.gang, ctx)
            i = bisect.bisect_right(self.thresholds_gpu_s, service)
            gpus = gang_demand(r.gang).gpus
            if i < len(self.thresholds_gpu_s) and gpus > 0:
                crossing = now + (self.thresholds_gpu_s[i] - service) / gpus
                due = min(due, crossing + CROSSING_MARGIN_S)
        for gang in ctx.pending:
            if self.queue_index(gang, ctx) == 0:
                continue
            since = self._last_ran.get(gang.name, gang.submit_time_s)
            if self.starve_limit_s is not None:
                due = min(due, since + self.starve_limit_s)
            if self.promote_knob is not None:
                executed_s = self.service_gpu_s(gang, ctx) / _gpus(gang)
                due = min(due, since + self.promote_knob * executed_s)
        if not math.isfinite(due):
            return None
        return max(due, math.nextafter(now, math.inf))


class LasAlias(TiresiasPolicy):
    """``las`` by name is Tiresias: 2D-LAS without preemption is FIFO for jobs that have not
    started (all have zero service), so the non-preemptive order alone promised nothing.
    :class:`policies.queue.las.LasPolicy` remains the order on its own for Python callers."""

    name = "las"
    description = "Same as tiresias (2D-LAS is only different from FIFO with preemption)."


def _gpus(gang: Gang) -> float:
    return max(gang_demand(gang).gpus, 1.0)
