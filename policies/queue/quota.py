"""Queue policy over a :class:`~policies.queue.quota_tree.QuotaTree`.

Admission: a gang may start only if every queue on its path stays within its limit
(guarantee + borrowing limit), and it may *borrow* (go past its leaf's guarantee) only while no
other queue has a waiting gang that fits inside that queue's own guarantee
(:mod:`policies.queue.fair_gate`). Borrowed capacity is taken back by the ``reclaim``
preemption policy.

Order: Slurm's Fair Tree. Each queue's usage is GPU-seconds decayed with a half-life; at every
level of the tree siblings are ranked by level fair-share ``S / U`` (their share of the
siblings' weights over their share of the siblings' decayed usage), depth first, so the
queue that has used least relative to its weight goes first. Inside a queue: priority, then
FIFO.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from phalanx.policies.queue.base import OrderedQueuePolicy, priority_fifo_key
from phalanx.policies.queue.fair_gate import entitled_waiter
from phalanx.policies.queue.quota_tree import QuotaTree
from phalanx.policies.resources import (
    RESOURCE_NAMES,
    Resources,
    cluster_capacity,
    gang_demand,
    usage_by,
)
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext, RunningGang
from phalanx.scheduler.running_view import derived

DEFAULT_HALF_LIFE_S = 7 * 24 * 3600.0
"""Slurm's default ``PriorityDecayHalfLife`` (7 days)."""


def queue_of(gang: Gang) -> str:
    return gang.queue


def as_tree(tree: QuotaTree | Any) -> QuotaTree:
    """A tree object, a parsed YAML document, or the path of a YAML file."""
    if isinstance(tree, str | Path):
        return QuotaTree.load(tree)
    return QuotaTree.from_spec(tree)


def tree_usage(tree: QuotaTree, ctx: QueueContext) -> dict[str, Resources]:
    """Usage of every queue, inner queues summing their subtree; made once per state of the
    cycle's running gangs (admission and preemption ask for every waiting gang), shared: read
    it, do not change it."""
    return derived(ctx.running, (tree_usage, id(tree)), lambda running: _tree_usage(tree, running))


def queue_usage(running: Sequence[RunningGang]) -> dict[str, Resources]:
    """Usage of every leaf queue that has running gangs, made once per state of the cycle's
    running gangs (:func:`scheduler.running_view.derived`); shared: read it, do not change it."""
    return derived(running, (usage_by, queue_of), lambda gangs: usage_by(gangs, queue_of))


def _tree_usage(tree: QuotaTree, running: Sequence[RunningGang]) -> dict[str, Resources]:
    usage: dict[str, Resources] = {}
    for leaf, used in queue_usage(running).items():
        if leaf not in tree.queues:
            continue
        for q in tree.path(leaf):
            usage[q] = usage.get(q, Resources()) + used
    return usage


class QuotaPolicy(OrderedQueuePolicy):
    name = "quota"
    description = (
        "Hierarchical queues: guaranteed share, borrowing limit, weight; Fair Tree order on "
        "decayed usage."
    )

    def __init__(
        self, tree: Any, half_life_s: float = DEFAULT_HALF_LIFE_S, strict: bool = False
    ) -> None:
        super().__init__(strict)
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be positive, got {half_life_s}")
        self.tree = as_tree(tree)
        self.half_life_s = half_life_s
        self.decayed_gpu_s: dict[str, float] = {}
        self._rate_gpus: dict[str, float] = {}
        self._last_s: float | None = None
        self._checked_cluster: object | None = None

    # ------------------------------------------------------------------ QueuePolicy
    def order(self, pending: Sequence[Gang], ctx: QueueContext) -> list[Gang]:
        self._check_capacity(ctx)
        self._decay(ctx)
        rank = self.fair_tree_rank()
        unranked = len(rank)
        return sorted(pending, key=lambda g: (rank.get(g.queue, unranked), *priority_fifo_key(g)))

    def admit(self, gang: Gang, ctx: QueueContext) -> str | None:
        problem = self.tree.leaf_error(gang.queue)
        if problem is not None:
            return f"quota: {problem}"
        usage = tree_usage(self.tree, ctx)
        demand = gang_demand(gang)
        for q in self.tree.path(gang.queue):
            after = usage.get(q, Resources()) + demand
            limit = self.tree.queues[q].limit
            if not after.fits_within(limit):
                return f"quota: queue {q!r} would exceed its limit ({_over(after, limit)})"
        leaf = self.tree.queues[gang.queue]
        if (usage.get(leaf.name, Resources()) + demand).fits_within(leaf.guaranteed):
            return None

        def within(queue: str, used: Resources) -> bool:
            return self.tree.is_leaf(queue) and used.fits_within(self.tree.queues[queue].guaranteed)

        waiter = entitled_waiter(ctx, queue_of, usage, within, exclude=leaf.name)
        if waiter is None:
            return None
        return (
            f"quota: queue {leaf.name!r} would borrow beyond its guarantee while queue "
            f"{waiter!r} waits within its own"
        )

    # ------------------------------------------------------------------ fair share
    def fair_tree_rank(self) -> dict[str, int]:
        """Leaf queues in Fair Tree order (0 goes first)."""
        usage: dict[str, float] = {}
        for leaf, used in self.decayed_gpu_s.items():
            if leaf in self.tree.queues:
                for q in self.tree.path(leaf):
                    usage[q] = usage.get(q, 0.0) + used
        rank: dict[str, int] = {}

        def visit(parent: str | None) -> None:
            kids = self.tree.children.get(parent, [])
            total_w = sum(self.tree.queues[k].weight for k in kids)
            total_u = sum(usage.get(k, 0.0) for k in kids)

            def level_fairshare(k: str) -> float:
                used = usage.get(k, 0.0) / total_u if total_u > 0 else 0.0
                share = self.tree.queues[k].weight / total_w
                return share / used if used > 0 else math.inf

            for k in sorted(kids, key=lambda k: (-level_fairshare(k), k)):
                if self.tree.is_leaf(k):
                    rank[k] = len(rank)
                else:
                    visit(k)

        visit(None)
        return rank

    def _decay(self, ctx: QueueContext) -> None:
        """Integrate the GPU usage seen at the previous cycle over the time since, with
        exponential decay: ``U <- U e^{-l dt} + rate (1 - e^{-l dt}) / l``."""
        if self._last_s is not None and ctx.now_s > self._last_s:
            decay_rate = math.log(2) / self.half_life_s
            kept = math.exp(-decay_rate * (ctx.now_s - self._last_s))
            for q in set(self.decayed_gpu_s) | set(self._rate_gpus):
                added = self._rate_gpus.get(q, 0.0) * (1 - kept) / decay_rate
                self.decayed_gpu_s[q] = self.decayed_gpu_s.get(q, 0.0) * kept + added
        if self._last_s is None or ctx.now_s >= self._last_s:
            self._last_s = ctx.now_s
            self._rate_gpus = {q: u.gpus for q, u in queue_usage(ctx.running).items()}

    def _check_capacity(self, ctx: QueueContext) -> None:
        cluster = ctx.state.compiled.cluster
        if self._checked_cluster is not cluster:
            self.tree.check_capacity(cluster_capacity(ctx.state.compiled))
            self._checked_cluster = cluster


def _over(after: Resources, limit: Resources) -> str:
    pairs = zip(RESOURCE_NAMES, after.as_tuple(), limit.as_tuple(), strict=True)
    return ", ".join(f"{name} {a:g} > {b:g}" for name, a, b in pairs if a > b)
