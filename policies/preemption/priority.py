"""Priority preemption: a gang may evict whole gangs of strictly lower rank.

Rank is the gang's priority unless a ``rank`` function is given (Tiresias LAS passes
:meth:`policies.queue.las.LasPolicy.rank`, so gangs with little attained service evict gangs
with a lot). From a command line or config file ``rank`` is a name: ``priority``, or a queue
policy that ranks gangs (``las``, ``tiresias``: its default instance ranks them; the simulator
binds the run's own queue policy instead when the names match). Victims are taken cheapest
first: lower rank, then gangs of queues running on borrowed quota (when a quota tree is
given), then least work lost.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

from phalanx.policies.preemption.guards import (
    DEFAULT_MIN_RUNTIME_S,
    EvictionHistory,
    lost_work_gpu_s,
    protected,
)
from phalanx.policies.preemption.search import find_victims
from phalanx.policies.queue.quota import as_tree, tree_usage
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import (
    PlaceFunction,
    PreemptionDecision,
    QueueContext,
    RunningGang,
)
from phalanx.scheduler.running_view import derived

Rank = Callable[[Gang, QueueContext], float]
_PRIORITY = attrgetter("gang.priority")


def by_priority(gang: Gang, ctx: QueueContext) -> float:
    return float(gang.priority)


def rank_by_name(name: str) -> Rank:
    """The rank a command line names: ``priority``, or the ``rank`` of a queue policy that has
    one (``las``, ``tiresias``), built with its defaults. A name with no rank is an error
    naming the choices, not a crash inside a cycle."""
    if name == "priority":
        return by_priority
    from phalanx.policies.registry import _TABLES, QUEUE

    ranked = sorted(n for n, cls in _TABLES[QUEUE].items() if callable(getattr(cls, "rank", None)))
    if name not in ranked:
        raise ValueError(
            f"preemption option rank={name!r}: choose priority or a queue policy that ranks "
            f"gangs ({', '.join(ranked)})"
        )
    return _TABLES[QUEUE][name]().rank


class PriorityPreemption:
    name = "priority"
    description = (
        "Gang-aware: evict whole lower-priority gangs, cheapest set, only if it then fits."
    )

    def __init__(
        self,
        min_runtime_s: float = DEFAULT_MIN_RUNTIME_S,
        quotas: Any = None,
        rank: Rank | str | None = None,
        history: EvictionHistory | None = None,
    ) -> None:
        if min_runtime_s < 0:
            raise ValueError(f"min_runtime_s must not be negative, got {min_runtime_s}")
        self.min_runtime_s = min_runtime_s
        self.tree = as_tree(quotas) if quotas is not None else None
        self.rank = rank_by_name(rank) if isinstance(rank, str) else rank or by_priority
        self.reads_attained_service = self.rank is not by_priority
        """Ranked by a queue policy's rank (LAS, Tiresias), which reads attained service."""
        self.history = history or EvictionHistory()

    def select_victims(
        self, preemptor: Gang, ctx: QueueContext, place: PlaceFunction
    ) -> PreemptionDecision | None:
        mine = self.rank(preemptor, ctx)
        borrowing = self._borrowing_queues(ctx)
        candidates = [
            r
            for r in self._lower_ranked(mine, ctx)
            if r.gang.name != preemptor.name
            and not protected(r, ctx.now_s, self.min_runtime_s)
            and not self.history.forbids(preemptor.name, r.gang.name)
        ]

        def cost(r: RunningGang) -> tuple[float, int, float, str]:
            on_loan = 0 if r.gang.queue in borrowing else 1
            return (self.rank(r.gang, ctx), on_loan, lost_work_gpu_s(r, ctx.now_s), r.gang.name)

        found = find_victims(preemptor, ctx.state, place, sorted(candidates, key=cost))
        if found is None:
            return None
        victims, placement = found
        names = tuple(r.gang.name for r in victims)
        self.history.record(preemptor.name, names)
        lost = sum(lost_work_gpu_s(r, ctx.now_s) for r in victims)
        ranks = ", ".join(f"{r.gang.name}={self.rank(r.gang, ctx):g}" for r in victims)
        reason = (
            f"priority preemption: {preemptor.name!r} (rank {mine:g}) evicts {len(names)} "
            f"gang(s) of lower rank ({ranks}), losing {lost:.0f} GPU-s of work"
        )
        return PreemptionDecision(preemptor.name, names, placement, reason)

    def _lower_ranked(self, mine: float, ctx: QueueContext) -> Iterable[RunningGang]:
        """The running gangs ranked strictly below ``mine`` (in no particular order: the caller
        sorts them by a total order).

        Every gang a cycle cannot place asks this, and a busy cluster has hundreds waiting and
        thousands running: a pass over every running gang for each waiting one was nearly all of
        a cycle's time (200 waiting, 1,600 running: 37 ms a filter). Ranked by priority, the
        running gangs' lowest priority is found once per state of the cycle's running gangs
        (:func:`scheduler.running_view.derived`), and a gang ranked at or below it gets nothing
        without a pass; the gangs are sorted by priority only for a gang that outranks some. A
        rank from a queue policy (LAS, Tiresias) reads attained service and keeps the pass."""
        running = ctx.running
        if self.rank is not by_priority:
            return [r for r in running if self.rank(r.gang, ctx) < mine]
        return derived(running, PriorityGroups, PriorityGroups).below(mine)

    def _borrowing_queues(self, ctx: QueueContext) -> set[str]:
        if self.tree is None:
            return set()
        usage = tree_usage(self.tree, ctx)
        return {
            q
            for q, used in usage.items()
            if self.tree.is_leaf(q) and not used.fits_within(self.tree.queues[q].guaranteed)
        }


class PriorityGroups:
    """Running gangs by priority, read lazily: their lowest priority first (one pass in C), and
    only when some gang ranks above it, the gangs sorted by priority."""

    def __init__(self, running: Sequence[RunningGang]) -> None:
        self._running = running
        self.lowest = min(map(_PRIORITY, running), default=None)
        self._sorted: tuple[list[RunningGang], list[int]] | None = None

    def below(self, rank: float) -> Sequence[RunningGang]:
        """The gangs of priority strictly below ``rank`` (none for a NaN rank, as comparing
        with NaN gives)."""
        if self.lowest is None or not self.lowest < rank:
            return ()
        if self._sorted is None:
            gangs = sorted(self._running, key=_PRIORITY)
            self._sorted = (gangs, [r.gang.priority for r in gangs])
        gangs, priorities = self._sorted
        return gangs[: bisect_left(priorities, rank)]
