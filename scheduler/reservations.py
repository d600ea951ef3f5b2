"""The reservation book: plans held with a time to live, one set of rules for the simulator and
the extender.

A plan is reserved in the ledger (:class:`~scheduler.state.ClusterState`) while its pods bind;
if they do not all bind in time it is given back. Both callers need the same three rules, or a
simulated reservation would behave unlike a live one:

- **Deadlines on time.** Deadlines sit in a heap, so asking what is due costs nothing while
  nothing is; a deadline can be restarted (the extender restarts it on every bind), and stale
  heap entries are skipped. They are dropped all at once when they outnumber the held plans
  (a finished gang's deadline would otherwise stay in the heap until it came due: at a few
  hundred plans a second and a 300 s TTL, tens of megabytes).
- **Due is not released.** :meth:`ReservationBook.due` names the plans whose deadline passed;
  the caller gives them back (the simulator whole, the extender keeping members already bound).
- **Back of the queue.** A gang whose reservation expired before anything of it bound goes
  behind the gangs that waited meanwhile: its queue time becomes the expiry time
  (:meth:`ReservationBook.queue_time`), which FIFO and the other policies' tie-breaks read.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState, Holding, HoldingPhase

REQUEUES_KEPT = 4096
"""Gangs whose expiry time is remembered (the oldest are forgotten first)."""
STALE_DEADLINES_KEPT = 1024
"""Heap entries beyond twice the held plans (and this many) trigger dropping the stale ones."""


class ReservationBook:
    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self._deadlines: list[tuple[float, str]] = []
        self._requeued_s: dict[str, float] = {}
        self.on_deadline: Callable[[], None] | None = None
        """Called whenever a deadline is set, so that a timer sleeping towards a later one
        wakes up (the extender's :class:`extender.expiry_timer.ExpiryTimer`)."""

    def reserve(self, placement: Placement, now_s: float, ttl_s: float) -> Holding:
        """Take the placement's resources until ``now_s + ttl_s`` (a TTL of at least one
        representable step, so that a reservation never expires the instant it is made)."""
        holding = self.state.reserve(placement, now_s, max(ttl_s, math.ulp(now_s)))
        self._push(holding.expires_at_s, placement.gang)
        return holding

    def restart(self, key: str, expires_at_s: float) -> None:
        """Move the deadline of a reservation (no-op once every member is committed)."""
        holding = self.state.holdings[key]
        if holding.phase is HoldingPhase.COMMITTED:
            return
        holding.expires_at_s = expires_at_s
        self._push(expires_at_s, key)

    def track(self, key: str) -> None:
        """A reservation made on the state directly (a cycle's ``reserve_ttl_s``): keep its
        deadline."""
        holding = self.state.holdings[key]
        if math.isfinite(holding.expires_at_s):
            self._push(holding.expires_at_s, key)

    def due(self, now_s: float) -> list[str]:
        """Reservations whose deadline has passed, earliest first, each once, still held when
        asked (the caller gives them back, or calls :meth:`defer` for one it cannot give back
        yet; a caller that changes the ledger between them checks each again)."""
        found: dict[str, None] = {}
        while self._deadlines and self._deadlines[0][0] <= now_s:
            at_s, key = heapq.heappop(self._deadlines)
            holding = self.state.holdings.get(key)
            if holding is not None and holding.expires_at_s == at_s:
                found[key] = None
        return list(found)

    def defer(self, key: str) -> None:
        """A due reservation that must wait (a bind of it is in flight): asked again later."""
        holding = self.state.holdings.get(key)
        if holding is not None:
            heapq.heappush(self._deadlines, (holding.expires_at_s, key))

    def next_deadline(self) -> float | None:
        """The earliest deadline still in force, None when nothing is reserved."""
        while self._deadlines:
            at_s, key = self._deadlines[0]
            holding = self.state.holdings.get(key)
            if holding is not None and holding.expires_at_s == at_s:
                return at_s
            heapq.heappop(self._deadlines)
        return None

    def requeue(self, gang: str, now_s: float) -> None:
        """The gang's reservation expired before anything of it bound: it queues from now."""
        self._requeued_s.pop(gang, None)
        self._requeued_s[gang] = now_s
        while len(self._requeued_s) > REQUEUES_KEPT:
            del self._requeued_s[next(iter(self._requeued_s))]

    def queue_time(self, gang: str, submit_time_s: float) -> float:
        """Where the gang stands in the queue: its submission, or its last expiry."""
        return max(submit_time_s, self._requeued_s.get(gang, submit_time_s))

    def carry_requeues(self, other: ReservationBook) -> None:
        """Queue times from the book of a state this one replaces (a changed node set)."""
        self._requeued_s.update(other._requeued_s)

    def forget(self, gang: str) -> None:
        """The gang is gone (finished, deleted): nothing to remember."""
        self._requeued_s.pop(gang, None)

    def _push(self, at_s: float, key: str) -> None:
        heapq.heappush(self._deadlines, (at_s, key))
        if len(self._deadlines) > 2 * len(self.state.holdings) + STALE_DEADLINES_KEPT:
            self._drop_stale()
        if self.on_deadline is not None:
            self.on_deadline()

    def _drop_stale(self) -> None:
        """Keep only the entries :meth:`due` and :meth:`next_deadline` would act on (the
        reservation is held and its deadline is the entry's), each once: at most one a held
        plan. Linear, and at most once per ``len(holdings) + STALE_DEADLINES_KEPT`` pushes."""
        holdings = self.state.holdings
        live = list(
            {
                (at_s, key)
                for at_s, key in self._deadlines
                if (held := holdings.get(key)) is not None and held.expires_at_s == at_s
            }
        )
        heapq.heapify(live)
        self._deadlines = live
