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
from typing import Any

from phalanx.policies.estimates import DEFAULT_RUNTIME_ESTIMATE_S, RuntimeEstimator
from phalanx.policies.queue.backfill_plan import (
    Reservation,
    ReservationPlanner,
    node_indices,
)
from phalanx.policies.queue.base import OrderedQueuePolicy, fifo_key, priority_fifo_key
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import PlaceFunction, QueueContext
from phalanx.scheduler.placement import Placement, PlacementResult
from phalanx.scheduler.state import LedgerError
from phalanx.topology.compiled import CapacityError
from phalanx.topology.model import MILLI_PER_GPU

ORDERS = ("priority", "fifo")
CANDIDATE_ORDERS = ("queue", "sjf")
"""The order later gangs are tried in once the head blocks: the queue's own, or smallest
estimated GPU-time first."""


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
        self.planner = ReservationPlanner(self.estimator)
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
        self.reservation = self.planner.plan(gang, ctx, ctx.place, _epoch(ctx))
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
        # The what-if: the newcomer goes into the shadow itself and comes out again unless the
        # head still fits beside it (a copy of the shadow per overtaking gang per cycle was
        # most of what accepting cost).
        shadow = reservation.shadow
        try:
            shadow.reserve(placement, ctx.now_s)
        except (CapacityError, LedgerError):
            head = None  # it uses what the shadow still holds: capacity a preemption frees now
        else:
            head = self.planner.place(reservation.head, shadow, reservation.place, _epoch(ctx))
            if isinstance(head, Placement):
                shadow.commit(placement.gang)
            else:
                shadow.release(placement.gang)
        if isinstance(head, Placement):
            reservation.placement = head
            reservation.head_nodes = node_indices(head)
            return None
        return (
            f"backfill: would delay gang {reservation.head.name!r}, reserved to start at "
            f"t={reservation.start_s:.0f}s"
        )


def _epoch(ctx: QueueContext) -> object:
    """How long the planner may keep placement answers: while the live state is unchanged,
    since a scorer may read its ledger."""
    return (id(ctx.state), ctx.state.changes)


def plan_reservation(
    head: Gang, ctx: QueueContext, place: PlaceFunction, estimator: RuntimeEstimator
) -> Reservation | None:
    """The reservation :class:`BackfillPolicy` would make for ``head`` now (one plan, nothing
    kept; see :mod:`policies.queue.backfill_plan`)."""
    return ReservationPlanner(estimator).plan(head, ctx, place, object())
