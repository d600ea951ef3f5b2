"""Gives reservations back when their TTL passes, not when the next request happens to arrive.

The planner keeps its reservations' deadlines in a heap and :meth:`Planner.expire` releases the
ones that are due. Called only from ``filter``, a plan whose members never came held its GPUs
past its TTL for as long as no other pod was filtered (``/debug/state`` showed a negative
``expires_in_s``), and the filter that finally expired it could re-reserve the same gang in
the same breath. This thread calls ``expire`` at each deadline instead: it sleeps until the
earliest one, and the planner wakes it when a new reservation (or a bind that restarts a
clock) brings a deadline forward. The same rounds send back to kube-scheduler the members of
gangs whose link hold ended (:mod:`extender.hold_wakeup`). One runs per server, for either
backend.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from phalanx.extender.planner import Planner

log = logging.getLogger(__name__)

IDLE_S = 1.0
"""Longest sleep: also how soon a planner that appears (the Kubernetes backend's, once the
cluster is synced) is first looked at."""
RETRY_S = 0.05
"""Sleep when a due reservation could not be expired yet (a bind of it is in flight)."""


class ExpiryTimer:
    """A daemon thread that expires the planner's reservations on time.

    ``planner`` returns the current planner (None while there is none). :meth:`tick` is one
    round without the thread, for tests with a fake clock."""

    def __init__(self, planner: Callable[[], Planner | None]) -> None:
        self._planner = planner
        self._cond = threading.Condition()
        self._poked = False
        self._asleep_until_s: float | None = None
        """When the sleeping thread wakes by the planner's clock; None while it is not asleep."""
        self._stopped = False
        self._attached: Planner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="expiry-timer", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def poke(self) -> None:
        """A deadline was added (it may be earlier than the one being slept towards). Called
        by the planner with its lock held: takes this timer's own lock, and reads the planner's
        earliest deadline under the lock the caller holds.

        The sleeping thread is woken only when that deadline comes before its own wake-up.
        Every plan and every bind adds a deadline, nearly always later than the earliest, and
        waking the thread for each one cost a thread switch (and a turn of the GIL) per
        request."""
        with self._cond:
            until, planner = self._asleep_until_s, self._attached
            if until is not None and planner is not None:
                due = planner.next_wake_s()
                if due is None or due >= until:
                    return
            self._poked = True
            self._cond.notify_all()

    def tick(self) -> float | None:
        """Expire what is due now; returns the seconds until the next deadline by the
        planner's clock (0 when one is due but could not be expired yet), None when no
        reservation is waiting."""
        planner = self._planner()
        if planner is None:
            return None
        if planner is not self._attached:
            planner.set_deadline_listener(self.poke)
            self._attached = planner
        planner.expire()
        due = planner.next_wake_s()
        if due is None:
            return None
        return max(0.0, due - planner.clock())

    def _run(self) -> None:
        while True:
            try:
                delay = self.tick()
            except Exception:  # the timer must outlive a fault in one round
                log.exception("expiring reservations failed")
                delay = IDLE_S
            with self._cond:
                if self._stopped:
                    return
                if not self._poked:
                    sleep_s = _sleep_s(delay)
                    planner = self._attached
                    if planner is not None:
                        self._asleep_until_s = planner.clock() + sleep_s
                    self._cond.wait(sleep_s)
                    self._asleep_until_s = None
                self._poked = False
                if self._stopped:
                    return


def _sleep_s(delay: float | None) -> float:
    if delay is None:
        return IDLE_S
    if delay <= 0:
        return RETRY_S
    return min(delay, IDLE_S)
