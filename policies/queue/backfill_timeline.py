"""The running gangs as a backfill reservation sees them: when each is expected to end, and the
rows of its members to give back, kept from one plan to the next.

A plan needs, for every running gang (about 330 on Philly Oct 16-18 on ``philly:39``), its
expected end (:meth:`RuntimeEstimator.expected_end_s`) and its members; asked gang by gang in
Python, that was most of a plan once the placements were cut down. Here each running gang
keeps a slot in arrays: its start; its end without the clock (its own estimated end or
``start + its own estimate``, fixed; else ``start +`` the estimate of its queue and job class,
one per group, read again only after the estimator learns); and, for a gang past that end, the
median its remaining time is read from with the elapsed times it holds for
(:meth:`RuntimeEstimator.remaining_rule`, kept until its queue learns a runtime,
:meth:`RuntimeEstimator.queue_version`). A plan then works the ends out for all gangs at once
with the same float operations the estimator does one by one, so every end is the same to the
last bit, and the order of equal ends is the running list's, as the stable sort always gave.
"""

from __future__ import annotations

import math
from itertools import repeat
from operator import attrgetter, is_, is_not

import numpy as np
from phalanx.policies.estimates import MIN_REMAINING_S, RuntimeEstimator, own_estimate_s
from phalanx.policies.queue.backfill_kernels import MemberTable
from phalanx.scheduler.interfaces import QueueContext, RunningGang

_GANG_NAME = attrgetter("gang.name")
_START = attrgetter("start_s")
_ESTIMATED_END = attrgetter("estimated_end_s")
_MEMBERS = attrgetter("placement.members")
SLACK_SLOTS = 64
"""Slots of ended gangs tolerated beyond twice the running ones before they are dropped."""
_SLOT_FIELDS = (
    "start",
    "given_end",
    "base_end",
    "queue",
    "group",
    "kind",
    "rule_version",
    "rule_median",
    "rule_by_median",
    "rule_lo",
    "rule_hi",
)
"""Per-slot arrays of :class:`RunningTable` (``span`` is rebuilt apart when compacting)."""


class RunningTable:
    """Expected ends and member rows of the running gangs, by slot."""

    def __init__(self, estimator: RuntimeEstimator) -> None:
        self.estimator = estimator
        self.members = MemberTable()
        self._slot_of: dict[int, int] = {}
        """id(RunningGang) -> slot; the slot keeps the object, so the id is not reused."""
        self._running: list[RunningGang] = []
        self._held: list[object] = []
        """Slot -> the placement members its gang holds (a new placement is a new slot)."""
        self._queue_id: dict[str, int] = {}
        self._group_id: dict[tuple[str, str], int] = {}
        self._kind_id: dict[tuple[str, str], int] = {}
        self._kinds: list[tuple[str, str]] = []
        """Kind -> (queue, job class): whose histories an overrunning gang's rule reads."""
        self._group_estimates = np.zeros(0)
        self._estimates_version = -1
        """The estimator's version when ``_group_estimates`` were read."""
        self._size = 0
        self.start = np.zeros(0)
        self.given_end = np.zeros(0)
        """The running entry's own ``estimated_end_s`` (inf when it has none)."""
        self.base_end = np.zeros(0)
        """The end without the clock: the gang's estimated end, else start + its own estimate
        (for a gang in a ``group``, worked out on every plan)."""
        self.queue = np.zeros(0, dtype=np.int64)
        self.group = np.zeros(0, dtype=np.int64)
        self.kind = np.zeros(0, dtype=np.int64)
        """The slot's (queue, job class) group when its end is start + its group's estimate
        (the gang gives no end and no estimate of its own), else -1: ``base_end`` is fixed."""
        self.span = np.zeros((0, 2), dtype=np.int64)
        self.rule_version = np.zeros(0, dtype=np.int64)
        """For a gang past ``base_end``: its queue's version when the rule below was read."""
        self.rule_median = np.zeros(0)
        self.rule_by_median = np.zeros(0, dtype=bool)
        """True: remaining = median - elapsed; False: as long again as it has run."""
        self.rule_lo = np.zeros(0)
        self.rule_hi = np.zeros(0)

    def ends(self, ctx: QueueContext) -> tuple[np.ndarray, np.ndarray]:
        """The expected ends of the running gangs that hold a placement, sorted (ties in the
        order of ``ctx.running``), and the member rows of each, in that order."""
        running = ctx.running
        # passes in C (map over built-in getters) where they can be: a Python loop over some
        # 330 gangs per plan was a third of the plan's time
        held = list(map(ctx.state.holdings.get, map(_GANG_NAME, running)))
        if not all(map(is_not, held, repeat(None))):  # not held: left out, as always
            kept = [i for i, h in enumerate(held) if h is not None]
            running, held = [running[i] for i in kept], [held[i] for i in kept]
        n = len(running)
        members = list(map(_MEMBERS, held))
        slot_list = list(map(self._slot_of.get, map(id, running), repeat(-1)))
        slots = np.array(slot_list, dtype=np.int64)
        if self._size:
            known = np.fromiter(
                map(is_, members, map(self._held.__getitem__, slot_list)), dtype=bool, count=n
            )
            seen = np.maximum(slots, 0)
            known &= (
                (slots >= 0)
                & (self.start[seen] == np.fromiter(map(_START, running), np.float64, count=n))
                & (
                    self.given_end[seen]
                    == np.fromiter(map(_ESTIMATED_END, running), np.float64, count=n)
                )
            )
        else:
            known = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(~known).tolist():  # first seen, or changed: a new slot
            slots[i] = self._new_slot(running[i], members[i])
        if self._size > 2 * len(slots) + SLACK_SLOTS:
            slots = self._compact(slots)
        if not len(slots):
            return np.zeros(0), np.zeros((0, 2), dtype=np.int64)
        ends = self._ends_of(slots, ctx.now_s)
        order = np.argsort(ends, kind="stable")
        return ends[order], self.span[slots[order]]

    def _ends_of(self, index: np.ndarray, now_s: float) -> np.ndarray:
        """:meth:`RuntimeEstimator.expected_end_s` of every slot in ``index``."""
        estimator = self.estimator
        versions = np.array(
            [estimator.queue_version(q) for q in self._queue_id] or [0], dtype=np.int64
        )
        current = versions[self.queue[index]]
        ends = self.base_end[index]
        group = self.group[index]
        grouped = group >= 0
        if grouped.any():
            # the same float addition as start + estimate_s(gang), for every such gang at once
            ends[grouped] = self.start[index[grouped]] + self._estimates()[group[grouped]]
        late = ~(ends > now_s)
        if not late.any():
            return ends
        over = index[late]
        elapsed = now_s - self.start[over]
        stale = (
            (self.rule_version[over] != current[late])
            | (elapsed < self.rule_lo[over])
            | ~(elapsed < self.rule_hi[over])
        )
        if stale.any():
            renew = over[stale]
            elapsed_renew = elapsed[stale]
            kinds = self.kind[renew]
            for kind in np.unique(kinds).tolist():
                mine = kinds == kind
                slots = renew[mine]
                queue, job_class = self._kinds[kind]
                median, found, lo, hi = estimator.remaining_rules(
                    queue, job_class, elapsed_renew[mine]
                )
                self.rule_median[slots], self.rule_by_median[slots] = median, found
                self.rule_lo[slots], self.rule_hi[slots] = lo, hi
            self.rule_version[renew] = current[late][stale]
        remaining = np.where(self.rule_by_median[over], self.rule_median[over] - elapsed, elapsed)
        ends[late] = now_s + np.maximum(remaining, MIN_REMAINING_S)
        return ends

    def _estimates(self) -> np.ndarray:
        """Every group's :meth:`RuntimeEstimator.history_estimate_s`, read again only after the
        estimator has learnt something."""
        estimator = self.estimator
        if self._estimates_version != estimator.version or len(self._group_estimates) != len(
            self._group_id
        ):
            self._group_estimates = np.array(
                [estimator.history_estimate_s(q, c) for q, c in self._group_id], dtype=np.float64
            )
            self._estimates_version = estimator.version
        return self._group_estimates

    def _new_slot(self, r: RunningGang, members: object) -> int:
        slot = self._size
        if slot == len(self.start):
            self._grow(max(64, 2 * slot))
        self._size += 1
        self._slot_of[id(r)] = slot
        self._running.append(r)
        self._held.append(members)
        queue = self._queue_id.setdefault(r.gang.queue, len(self._queue_id))
        self.queue[slot] = queue
        kind_key = (r.gang.queue, r.gang.job_class)
        kind = self._kind_id.get(kind_key)
        if kind is None:
            kind = self._kind_id[kind_key] = len(self._kinds)
            self._kinds.append(kind_key)
        self.kind[slot] = kind
        self.start[slot] = r.start_s
        self.given_end[slot] = r.estimated_end_s
        self.group[slot] = -1
        if math.isfinite(r.estimated_end_s):
            self.base_end[slot] = r.estimated_end_s
        elif (own := own_estimate_s(r.gang)) is not None:
            self.base_end[slot] = r.start_s + own
        else:
            key = (r.gang.queue, r.gang.job_class)
            self.group[slot] = self._group_id.setdefault(key, len(self._group_id))
        self.rule_version[slot] = -1
        self.span[slot] = self.members.add(members)  # type: ignore[arg-type]
        return slot

    def _grow(self, size: int) -> None:
        for name in (*_SLOT_FIELDS, "span"):
            old = getattr(self, name)
            new = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _compact(self, slots: np.ndarray) -> np.ndarray:
        """Keep only the slots in use, renumbered; their member rows are rebuilt too (rows
        are appended as gangs start, so ended gangs' rows would pile up over a replay)."""
        running = [self._running[s] for s in slots.tolist()]
        held = [self._held[s] for s in slots.tolist()]
        for name in _SLOT_FIELDS:
            setattr(self, name, getattr(self, name)[slots])
        self.span = np.zeros((len(slots), 2), dtype=np.int64)
        self.members = MemberTable()
        self._slot_of = {id(r): i for i, r in enumerate(running)}
        self._running, self._held = running, held
        self._size = len(slots)
        self._grow(max(64, 2 * self._size))
        for i, members in enumerate(held):
            self.span[i] = self.members.add(members)  # type: ignore[arg-type]
        return np.arange(self._size, dtype=np.int64)
