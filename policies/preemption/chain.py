"""Composite preemption: ``"priority+reclaim"`` tries each policy in turn, first decision wins,
and the parts share one eviction history so the no-loop rule holds across them."""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import (
    PlaceFunction,
    PreemptionDecision,
    PreemptionPolicy,
    QueueContext,
)


class NoPreemption:
    name = "none"
    description = "Never evict anything."

    def select_victims(
        self, preemptor: Gang, ctx: QueueContext, place: PlaceFunction
    ) -> PreemptionDecision | None:
        return None


class ChainedPreemption:
    def __init__(self, parts: Sequence[PreemptionPolicy]) -> None:
        if not parts:
            raise ValueError("a preemption chain needs at least one policy")
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)

    def select_victims(
        self, preemptor: Gang, ctx: QueueContext, place: PlaceFunction
    ) -> PreemptionDecision | None:
        for policy in self.parts:
            decision = policy.select_victims(preemptor, ctx, place)
            if decision is not None:
                return decision
        return None
