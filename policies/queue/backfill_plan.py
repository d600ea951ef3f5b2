"""Planning a backfill reservation: when the blocked head gang could start, and the cluster then.

Running gangs are given back in the order they are expected to end (see
:mod:`policies.estimates`) until the head fits: the earliest of their distinct end times at
which it does (releasing more never makes a gang fit worse). The time found and the cluster as
it will then be (the *shadow* state) are the reservation.

Backfill plans on most cycles of a busy replay (4,315 plans in 7,774 cycles on Philly
Oct 16-18, ``philly:39``), and planning was most of its extra run time over FIFO. What cuts it
now, without changing any reservation:

- the running gangs' expected ends and member rows are kept across plans
  (:mod:`policies.queue.backfill_timeline`), and a probe gives back every gang it frees in
  one compiled loop (:mod:`policies.queue.backfill_kernels`);
- the search starts where the last reservation was and gallops from there
  (:meth:`ReservationPlanner.plan`): about 2 probes a plan instead of 7;
- before a probe's placement, whether the shadow's nodes have the wholly free GPUs the head's
  members need at all (:func:`cannot_fit`): when not, no placement exists and the search is
  not run (nearly every probe that is too early);
- the head's placement answers are kept by the exact free capacity they were asked about
  (:class:`WhatIfMemo`), while the live state is unchanged: overtaking gangs refused one
  after another try the same what-if.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from phalanx.policies.estimates import RuntimeEstimator
from phalanx.policies.queue.backfill_timeline import RunningTable
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import PlaceFunction, QueueContext
from phalanx.scheduler.placement import Placement, PlacementResult, Unplaceable
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster

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


class ReservationPlanner:
    """Plans reservations for one policy, keeping what a plan can reuse from the last."""

    def __init__(self, estimator: RuntimeEstimator) -> None:
        self.estimator = estimator
        self.running = RunningTable(estimator)
        self.memo = WhatIfMemo()
        self._last_start: float | None = None
        """The start the last reservation got: where the next plan starts looking (for the
        same head or the next one, the first fit is usually at or near it)."""

    def place(
        self, gang: Gang, state: ClusterState, place: PlaceFunction, epoch: object
    ) -> PlacementResult:
        """``place(gang, state)`` on a what-if state, through the memo."""
        return self.memo.place(gang, state, place, epoch)

    def plan(
        self, head: Gang, ctx: QueueContext, place: PlaceFunction, epoch: object
    ) -> Reservation | None:
        """Earliest expected end time of running gangs at which ``head`` fits once the gangs
        ending by then are given back, or None if it fits at none of them.

        The search rests on the premise the binary search it replaces rested on: releasing
        more never makes a gang fit worse, so the times at which the head fits are all those
        from one on, and any search that finds the first gives the same reservation. It starts
        at the time the last reservation got (for this head or the one before it), where the
        first fit usually still is: 10,143 probes in 4,315 plans on Philly Oct 16-18, against
        the binary search's 31,879; it gallops away from there in doubling steps until the
        first fit is bracketed, then bisects the bracket. A probe's shadow starts from the
        shadow of the latest time already found too early and gives back only the gangs ending
        after it. Shadows copy the capacity arrays only, not the ledger of holdings: gangs are
        given back from their placements, and a shadow's ledger holds only the gangs
        backfilled into it."""
        ends, spans = self.running.ends(ctx)
        times = np.unique(ends)
        search = _Search(head, ctx.state.compiled, ends, spans, times, self, place, epoch)
        hint = self._last_start
        first = search.first_fit(None if hint is None else int(np.searchsorted(times, hint)))
        if first is None:
            return None
        shadow, placement = search.fitted[first]
        found = Reservation(head, float(times[first]), shadow, placement, place)
        self._last_start = found.start_s
        return found


class _Search:
    """One plan's probes: the shadow at the i-th end time, and whether the head fits there."""

    def __init__(
        self,
        head: Gang,
        live: CompiledCluster,
        ends: np.ndarray,
        spans: np.ndarray,
        times: np.ndarray,
        planner: ReservationPlanner,
        place: PlaceFunction,
        epoch: object,
    ) -> None:
        self.head, self.ends, self.spans, self.times = head, ends, spans, times
        self.planner, self.place, self.epoch = planner, place, epoch
        self.demand = gpu_demand(head)
        self.too_early, self.released, self.too_early_at = live, 0, -1
        """The free capacity at the latest time known too early, how many gangs it has
        freed, and that time's index."""
        self.fitted: dict[int, tuple[ClusterState, Placement]] = {}

    def fits(self, i: int) -> bool:
        capacity = self.too_early.copy()
        upto = int(np.searchsorted(self.ends, self.times[i], side="right"))
        self.planner.running.members.give_back(capacity, self.spans, self.released, upto)
        shadow = ClusterState(capacity)
        if not cannot_fit(capacity.free_gpu_count, self.demand):
            result = self.planner.memo.place(self.head, shadow, self.place, self.epoch)
            if isinstance(result, Placement):
                self.fitted[i] = (shadow, result)
                return True
        if i > self.too_early_at:
            self.too_early, self.released, self.too_early_at = capacity, upto, i
        return False

    def first_fit(self, hint: int | None) -> int | None:
        """The index of the first time the head fits at (None: at none), starting at
        ``hint`` when given."""
        n = len(self.times)
        too_early, fit = -1, n
        if hint is not None and n:
            start = min(int(hint), n - 1)
            step = 1
            if self.fits(start):
                fit = start
                while fit - step > too_early:
                    if not self.fits(fit - step):
                        too_early = fit - step
                        break
                    fit, step = fit - step, step * 2
            else:
                too_early = start
                while too_early + step < fit:
                    if self.fits(too_early + step):
                        fit = too_early + step
                        break
                    too_early, step = too_early + step, step * 2
        while fit - too_early > 1:
            mid = (too_early + fit) // 2
            if self.fits(mid):
                fit = mid
            else:
                too_early = mid
        return fit if fit < n else None
