"""Fair-share reclaim: a queue takes back guaranteed quota that other queues borrowed.

Only a gang that fits inside its own queue's guarantee may reclaim, and only from leaf queues
running above their guarantee; candidates are taken lowest priority and least lost work first,
and a queue stops being a candidate as soon as the gangs already chosen from it would bring it
back to its guarantee, so guaranteed capacity is never taken. The decision must strictly
improve fairness: the reclaiming queue's share of its guarantee after the start must stay
below every victim queue's share before the eviction (Kueue's ``LessThanInitialShare``), so the
largest share involved falls and two queues cannot keep evicting each other.
"""

from __future__ import annotations

import math
from typing import Any

from phalanx.policies.preemption.guards import (
    DEFAULT_MIN_RUNTIME_S,
    EvictionHistory,
    lost_work_gpu_s,
    protected,
)
from phalanx.policies.preemption.search import find_victims
from phalanx.policies.queue.quota import as_tree, tree_usage
from phalanx.policies.queue.quota_tree import QueueQuota
from phalanx.policies.resources import Resources, gang_demand, placement_usage, total_usage
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import (
    PlaceFunction,
    PreemptionDecision,
    QueueContext,
    RunningGang,
)


def guarantee_share(queue: QueueQuota, used: Resources) -> float:
    """Largest ratio of usage to guarantee over the resources the queue governs."""
    share = 0.0
    for u, g in zip(used.as_tuple(), queue.guaranteed.as_tuple(), strict=True):
        if math.isinf(g):
            continue
        share = max(share, u / g if g > 0 else (math.inf if u > 0 else 0.0))
    return share


class FairShareReclaim:
    name = "reclaim"
    description = "Fair-share reclaim of borrowed quota; only if it strictly improves fairness."

    def __init__(
        self,
        quotas: Any,
        min_runtime_s: float = DEFAULT_MIN_RUNTIME_S,
        history: EvictionHistory | None = None,
    ) -> None:
        if min_runtime_s < 0:
            raise ValueError(f"min_runtime_s must not be negative, got {min_runtime_s}")
        self.tree = as_tree(quotas)
        self.min_runtime_s = min_runtime_s
        self.history = history or EvictionHistory()

    def select_victims(
        self, preemptor: Gang, ctx: QueueContext, place: PlaceFunction
    ) -> PreemptionDecision | None:
        tree = self.tree
        if tree.leaf_error(preemptor.queue) is not None:
            return None
        mine = tree.queues[preemptor.queue]
        usage = tree_usage(tree, ctx)
        if not (usage.get(mine.name, Resources()) + gang_demand(preemptor)).fits_within(
            mine.guaranteed
        ):
            return None
        candidates = self._candidates(preemptor, ctx, usage)
        found = find_victims(preemptor, ctx.state, place, candidates)
        if found is None:
            return None
        victims, placement = found
        mine_after = guarantee_share(
            mine, usage.get(mine.name, Resources()) + placement_usage(placement)
        )
        victim_queues = sorted({r.gang.queue for r in victims})
        before = {q: guarantee_share(tree.queues[q], usage[q]) for q in victim_queues}
        if any(mine_after >= share for share in before.values()):
            return None
        names = tuple(r.gang.name for r in victims)
        self.history.record(preemptor.name, names)
        shares = ", ".join(f"{q} at {s:.2f}" for q, s in before.items())
        reason = (
            f"fair-share reclaim: queue {mine.name!r} (at {mine_after:.2f} of its guarantee after "
            f"{preemptor.name!r} starts) takes back borrowed quota from {shares}"
        )
        return PreemptionDecision(preemptor.name, names, placement, reason)

    def _candidates(
        self, preemptor: Gang, ctx: QueueContext, usage: dict[str, Resources]
    ) -> list[RunningGang]:
        """Gangs of borrowing queues, cheapest first, each taken only while its queue would
        still be above its guarantee without the gangs taken before it."""
        pool = sorted(
            (
                r
                for r in ctx.running
                if r.gang.queue != preemptor.queue
                and self.tree.is_leaf(r.gang.queue)
                and not protected(r, ctx.now_s, self.min_runtime_s)
                and not self.history.forbids(preemptor.name, r.gang.name)
            ),
            key=lambda r: (r.gang.priority, lost_work_gpu_s(r, ctx.now_s), r.gang.name),
        )
        chosen: list[RunningGang] = []
        for r in pool:
            queue = self.tree.queues[r.gang.queue]
            taken = total_usage(c for c in chosen if c.gang.queue == queue.name)
            if not (usage.get(queue.name, Resources()) - taken).fits_within(queue.guaranteed):
                chosen.append(r)
        return chosen
