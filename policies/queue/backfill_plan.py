"""Planning a backfill reservation: when the blocked head gang could start, and the cluster then.

Running gangs are given back in the order they are expected to end (see
:mod:`policies.estimates`) until the head fits: a binary search over the distinct end times,
one placement per probe, each probe starting from the shadow of the latest time already found
too early (releasing more never makes a gang fit worse). The time found and the cluster as it
will then be (the *shadow* state) are the reservation.

Backfill plans on most cycles of a busy replay (4,315 plans in 7,774 cycles on Philly
Oct 16-18, ``philly:39``), and the plan was most of its extra run time over FIFO. What it now
keeps between plans, without changing any answer:

- each running gang's expected end, less the part that moves with the clock
  (:class:`ExpectedEnds`), and its members as flat arrays, so that a probe gives back every
  gang it frees in one compiled loop (:mod:`policies.queue.backfill_kernels`);
- the head's placement answers by the exact free capacity they were asked about
  (:class:`WhatIfMemo`): consecutive plans probe many of the same shadows, and overtaking
  gangs refused one after another try the same what-if;
- before a probe's placement, whether the shadow's nodes have the wholly free GPUs the head's
  members need at all (:func:`cannot_fit`): when not, no placement exists and the search is
  not run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from phalanx.policies.estimates import RuntimeEstimator
from phalanx.policies.queue.backfill_kernels import MemberTable
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import PlaceFunction, QueueContext, RunningGang
from phalanx.scheduler.placement import Placement, PlacementResult, Unplaceable
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.state import ClusterState

MEMO_BYTES = 64 << 20
"""What the memo of placement answers may hold in keys (free-capacity bytes) before it is
emptied: about 20,000 shadows of a 39-node cluster, 80 of a 10,000-node one."""


@dataclass
class Reservation:
    head: Gang
    start_s: float
    shadow: ClusterState
    """The cluster as expected at ``start_s``, including backfilled gangs still running then."""
    placement: Placement
    """Where the head is expected to go at ``start_s``."""
    place: PlaceFunction
    """The planner that made the reservation, to check later gangs against it."""
    head_nodes: frozenset[int] = frozenset()
    """Node indices of ``placement``: a newcomer that keeps off them cannot disturb it."""

    def __post_init__(self) -> None:
        if not self.head_nodes:
            self.head_nodes = node_indices(self.placement)


def node_indices(placement: Placement) -> frozenset[int]:
    return frozenset(m.node_index for m in placement.members)


def gpu_demand(gang: Gang) -> list[tuple[int, int]]:
    """(t, how many of the gang's quorum members take at least t whole GPUs) for each
    distinct whole-GPU request t: what :func:`cannot_fit` tests. The quorum is what any
    placement holds (the engine tries the whole gang, then the quorum); a share of a GPU
    needs no wholly free one, so it is left out."""
    gpus = [m.request.gpus for m in gang.members[: gang.quorum] if m.request.gpus > 0]
    return [(t, sum(g >= t for g in gpus)) for t in sorted(set(gpus))]


def cannot_fit(free_gpu_count: np.ndarray, demand: list[tuple[int, int]]) -> bool:
    """True when no placement of a gang with this :func:`gpu_demand` exists: a member of t
    whole GPUs needs t wholly free GPUs on its node, so a node with f of them hosts at most
    f // t such members. About one probe in three of a reservation's search fails, and this
    catches nearly all of those without the placement search (11,316 of 11,470 on Philly)."""
    return any(int((free_gpu_count // t).sum()) < count for t, count in demand)


class WhatIfMemo:
    """The placement call's answers for one gang on what-if states, by the exact free
    capacity asked about (every mutable array of the compiled cluster, byte for byte).

    The engine's fast path is a function of the gang and those arrays; a scorer may also read
    the live ledger (the gpu-clustering baseline), so answers are kept only while the live
    state is unchanged unless the caller says the placement call reads nothing else
    (``epoch`` None). An answer that ran out of solver time is not kept (another try may
    finish)."""

    def __init__(self, limit_bytes: int = MEMO_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._answers: dict[bytes, PlacementResult] = {}
        self._bytes = 0
        self._owner: tuple[Gang, PlaceFunction, object] | None = None
        self.hits = 0
        self.misses = 0

    def place(
        self, gang: Gang, state: ClusterState, place: PlaceFunction, epoch: object
    ) -> PlacementResult:
        owner = self._owner
        if owner is None or owner[0] is not gang or owner[1] != place or owner[2] != epoch:
            self._answers.clear()
            self._bytes = 0
            self._owner = (gang, place, epoch)
        key = state.compiled.mutable_state_bytes()
        known = self._answers.get(key)
        if known is not None:
            self.hits += 1
            return known
        self.misses += 1
        result = place(gang, state)
        if isinstance(result, Unplaceable) and result.constraint == Reason.TIME_LIMIT:
            return result
        if self._bytes + len(key) > self.limit_bytes:
            self._answers.clear()
            self._bytes = 0
        self._answers[key] = result
        self._bytes += len(key)
        return result


class ExpectedEnds:
    """When each running gang is expected to end, with the part that does not move with the
    clock kept per gang: ``start + estimate`` changes only when the estimator learns about the
    gang's queue (:meth:`RuntimeEstimator.queue_version`; a completion anywhere happens between
    almost any two plans, one in the same queue far less often); a gang past it is
    re-estimated from the clock every time, as :meth:`RuntimeEstimator.expected_end_s` does."""

    def __init__(self, estimator: RuntimeEstimator) -> None:
        self.estimator = estimator
        self._base: dict[str, tuple[RunningGang, float, float, int, float]] = {}
        """Gang name -> (running entry, its start, its estimated end, its queue's version, the
        end without the clock)."""

    def end_s(self, running: RunningGang, now_s: float) -> float:
        """Exactly :meth:`RuntimeEstimator.expected_end_s`."""
        estimator = self.estimator
        gang = running.gang
        version = estimator.queue_version(gang.queue)
        known = self._base.get(gang.name)
        if (
            known is not None
            and known[0].gang is gang
            and known[1] == running.start_s
            and known[2] == running.estimated_end_s
            and known[3] == version
        ):
            end = known[4]
        else:
            end = running.estimated_end_s
            if not math.isfinite(end):
                end = running.start_s + estimator.estimate_s(gang)
            self._base[gang.name] = (
                running,
                running.start_s,
                running.estimated_end_s,
                version,
                end,
            )
        if end > now_s:
            return end
        return now_s + estimator.remaining_after_s(running.gang, now_s - running.start_s)

    def keep_only(self, names: set[str]) -> None:
        if len(self._base) > 2 * len(names) + 64:
            self._base = {n: v for n, v in self._base.items() if n in names}


class ReservationPlanner:
    """Plans reservations for one policy, keeping what a plan can reuse from the last."""

    def __init__(self, estimator: RuntimeEstimator) -> None:
        self.estimator = estimator
        self.ends = ExpectedEnds(estimator)
        self.members = MemberTable()
        self.memo = WhatIfMemo()

    def place(
        self, gang: Gang, state: ClusterState, place: PlaceFunction, epoch: object
    ) -> PlacementResult:
        """``place(gang, state)`` on a what-if state, through the memo."""
        return self.memo.place(gang, state, place, epoch)

    def plan(
        self, head: Gang, ctx: QueueContext, place: PlaceFunction, epoch: object
    ) -> Reservation | None:
        """Earliest expected time at which ``head`` fits once running gangs end, found by
        binary search over the distinct end times (the probes the search has always made, in
        the same order, so the same reservation).

        Each probe starts from the shadow of the latest time already found too early and gives
        back only the gangs ending after it, so a search releases each gang about twice
        instead of once per probe. Shadows copy the capacity arrays only, not the ledger of
        holdings: gangs are given back from their placements, and a shadow's ledger holds only
        the gangs backfilled into it."""
        holdings = ctx.state.holdings
        now_s = ctx.now_s
        rows: list[tuple[float, int, int]] = []
        names: set[str] = set()
        for r in ctx.running:
            held = holdings.get(r.gang.name)
            if held is None:
                continue
            name = r.gang.name
            names.add(name)
            lo, hi = self.members.span(name, held.placement.members)
            rows.append((self.ends.end_s(r, now_s), lo, hi))
        rows.sort(key=itemgetter(0))
        self.ends.keep_only(names)
        if not rows:
            return None
        ends = [end for end, _, _ in rows]
        spans = np.array([(lo, hi) for _, lo, hi in rows], dtype=np.int64)
        times = sorted(set(ends))
        demand = gpu_demand(head)

        too_early, released = ctx.state.compiled, 0
        """The free capacity at the latest time known too early, and how many gangs it has
        freed."""
        found: Reservation | None = None
        lo, hi = 0, len(times) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            capacity = too_early.copy()
            upto = released
            while upto < len(rows) and ends[upto] <= times[mid]:
                upto += 1
            self.members.give_back(capacity, spans, released, upto)
            shadow = ClusterState(capacity)
            if cannot_fit(capacity.free_gpu_count, demand):
                result: PlacementResult | None = None
            else:
                result = self.memo.place(head, shadow, place, epoch)
            if isinstance(result, Placement):
                found = Reservation(head, times[mid], shadow, result, place)
                hi = mid - 1
            else:
                too_early, released = capacity, upto
                lo = mid + 1
        self.members.keep_only(names)
        return found
