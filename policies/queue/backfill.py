"""EASY backfill: a reservation for the blocked head gang, and only harmless overtaking.

When the head of the queue cannot be placed, the policy plans when it could start: running
gangs are released in the order they are expected to end (see :mod:`policies.estimates`)
until the head fits. That time and the cluster as it will then be (the *shadow* state) make
the reservation. A later gang may start now only if it is expected to end before the reserved
start, or if the head still fits in the shadow state with the newcomer added to it. So no
stream of small gangs can push a large gang's start back (Slurm's backfill, Mu'alem and
Feitelson's EASY), which is the usual answer to large gangs starving behind small jobs.

Only the first blocked gang gets a reservation (EASY, not conservative backfill); the plan is
remade every cycle. Without a planner (``ctx.place`` is None) the policy cannot tell harmless
overtaking from harmful, so it blocks behind the head instead. A head that would not fit even
with every running gang gone (it needs preemption, or capacity the running gangs do not hold)
gets no reservation: waiting cannot help it, so there is nothing to protect. A gang that would
start by preemption is checked the same way; if it needs capacity the shadow state still
holds at the reserved start, it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from phalanx.policies.estimates import DEFAULT_RUNTIME_ESTIMATE_S, RuntimeEstimator
from phalanx.policies.queue.base import OrderedQueuePolicy, fifo_key, priority_fifo_key
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import PlaceFunction, QueueContext
from phalanx.scheduler.placement import Placement, PlacementResult
from phalanx.scheduler.state import ClusterState, LedgerError
from phalanx.topology.compiled import CapacityError
from phalanx.topology.model import MILLI_PER_GPU

ORDERS = ("priority", "fifo")
CANDIDATE_ORDERS = ("queue", "sjf")
"""The order later gangs are tried in once the head blocks: the queue's own, or smallest
estimated GPU-time first."""


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


class BackfillPolicy(OrderedQueuePolicy):
    name = "backfill"
    description = (
        "EASY backfill: overtake a blocked head gang only without delaying its reservation."
    )

    def __init__(
        self,
        order: str = "priority",
        default_runtime_s: float = DEFAULT_RUNTIME_ESTIMATE_S,
        candidates: str = "queue",
    ) -> None:
        super().__init__(strict=False)
        if order not in ORDERS:
            raise ValueError(f"backfill order must be one of {ORDERS}, got {order!r}")
        if candidates not in CANDIDATE_ORDERS:
            raise ValueError(
                f"backfill candidates must be one of {CANDIDATE_ORDERS}, got {candidates!r}"
            )
        self.order_by = order
        self.candidates = candidates
        self.estimator = RuntimeEstimator(default_runtime_s)
        self.reservation: Reservation | None = None
        self._planned = False
        self._cycle: QueueContext | None = None
        self._last_plan: tuple[tuple[str, int, int, int], Reservation | None] | None = None

    def sort_key(self, gang: Gang, ctx: QueueContext) -> Any:
        return priority_fifo_key(gang) if self.order_by == "priority" else fifo_key(gang)

    def order(self, pending: Sequence[Gang], ctx: QueueContext) -> list[Gang]:
        """The queue's order; with ``candidates="sjf"`` only its first gang keeps its place
        and the rest, the gangs that may backfill, go smallest estimated GPU-time first
        (Tsafrir, Etsion and Feitelson's EASY++ "shortest job backfilled first", TPDS 2007:
        with predicted runtimes it cut mean wait below EASY's). The oldest gang is tried
        first every cycle, so whoever has waited longest is the one a reservation protects
        as soon as it blocks."""
        self._reset(ctx)
        ordered = super().order(pending, ctx)
        if self.candidates == "queue" or len(ordered) < 3:
            return ordered
        rest = sorted(ordered[1:], key=lambda g: self._backfill_key(g, ctx))
        return [ordered[0], *rest]

    def _backfill_key(self, gang: Gang, ctx: QueueContext) -> Any:
        gpu_s = self.estimator.estimate_s(gang) * max(gang.gpu_milli_total / MILLI_PER_GPU, 1.0)
        first = -gang.priority if self.order_by == "priority" else 0
        return (first, gpu_s, *fifo_key(gang))

    def _reset(self, ctx: QueueContext) -> None:
        """A new cycle: forget the last reservation (EASY re-plans every cycle)."""
        self.reservation, self._planned, self._cycle = None, False, ctx

    def record_completion(self, gang: Gang, runtime_s: float) -> None:
        self.estimator.record_completion(gang, runtime_s)

    def after_blocked(self, gang: Gang, result: PlacementResult, ctx: QueueContext) -> bool:
        if self._cycle is not ctx:
            self._reset(ctx)
        if self._planned:
            return True
        if ctx.place is None:
            return False
        self._planned = True
        key = (gang.name, id(ctx.state), ctx.state.changes, self.estimator.version)
        last = self._last_plan
        if last is not None and last[0] == key and (last[1] is None or last[1].start_s > ctx.now_s):
            # Nothing started, ended or was learnt since the last plan for this head, so the
            # plan stands (only the ends of gangs past their estimates have drifted with the
            # clock). A cycle runs on every arrival; re-planning each one was most of the cost.
            self.reservation = last[1]
            return True
        self.reservation = plan_reservation(gang, ctx, ctx.place, self.estimator)
        self._last_plan = (key, self.reservation)
        return True

    def accept(self, gang: Gang, placement: Placement, ctx: QueueContext) -> str | None:
        reservation = self.reservation
        if reservation is None or self._cycle is not ctx or gang.name == reservation.head.name:
            return None
        if ctx.now_s + self.estimator.estimate_s(gang) <= reservation.start_s:
            return None
        if reservation.head_nodes.isdisjoint(m.node_index for m in placement.members):
            # The head's planned nodes are untouched, so its planned placement still fits: take
            # the newcomer into the shadow itself, without the copy and the re-plan (which cost
            # a state copy per overtaking gang per cycle, most of backfill's extra run time).
            try:
                reservation.shadow.assign(placement, ctx.now_s)
            except (CapacityError, LedgerError):
                pass  # it needs what the shadow still holds (a preemption): the full check
            else:
                return None
        trial = reservation.shadow.copy()
        try:
            trial.assign(placement, ctx.now_s)
        except (CapacityError, LedgerError):
            head = None  # it uses what the shadow still holds: capacity a preemption frees now
        else:
            head = reservation.place(reservation.head, trial)
        if isinstance(head, Placement):
            reservation.shadow, reservation.placement = trial, head
            reservation.head_nodes = node_indices(head)
            return None
        return (
            f"backfill: would delay gang {reservation.head.name!r}, reserved to start at "
            f"t={reservation.start_s:.0f}s"
        )


def plan_reservation(
    head: Gang, ctx: QueueContext, place: PlaceFunction, estimator: RuntimeEstimator
) -> Reservation | None:
    """Earliest expected time at which ``head`` fits once running gangs end, found by binary
    search over the distinct end times (releasing more never makes a gang fit worse).

    The shadow at a time is the cluster's free capacity with every gang expected to end by
    then given back, in end order. Each probe starts from the shadow of the latest time already
    found too early and gives back only the gangs ending after it, so a search releases each
    gang about twice instead of once per probe (a long queue on a full cluster re-plans every
    cycle). Shadows copy the capacity arrays only, not the ledger of holdings (a Python object
    per running gang, copied per probe, had made backfill several times FIFO's run time):
    gangs are given back from their placements, and a shadow's ledger holds only the gangs
    backfilled into it."""
    running = [
        (estimator.expected_end_s(r, ctx.now_s), held.placement)
        for r in ctx.running
        if (held := ctx.state.holdings.get(r.gang.name)) is not None
    ]
    running.sort(key=lambda pair: pair[0])
    ends = [end for end, _ in running]
    times = sorted(set(ends))

    too_early, released = ctx.state.compiled, 0
    """The free capacity at the latest time known too early, and how many gangs it has freed."""
    found: Reservation | None = None
    lo, hi = 0, len(times) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        capacity = too_early.copy()
        upto = released
        while upto < len(running) and ends[upto] <= times[mid]:
            for m in running[upto][1].members:
                capacity.release(m.node_index, m.gpus, m.gpu_milli, m.cpu_milli, m.memory_mib)
            upto += 1
        shadow = ClusterState(capacity)
        result = place(head, shadow)
        if isinstance(result, Placement):
            found = Reservation(head, times[mid], shadow, result, place)
            hi = mid - 1
        else:
            too_early, released = capacity, upto
            lo = mid + 1
    return found
