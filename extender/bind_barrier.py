"""The bind barrier: a gang's Bindings are posted together or not at all.

kube-scheduler binds each pod in a goroutine of its own and calls the extender's bind verb from
there, after the pod was assumed on its node (its binding cycle, where Coscheduling's Permit
would wait). So the verb can wait, as Permit does: a member of a gang with no member bound yet
waits until every planned member has reached bind, then all of them post their Bindings at once.
A gang that is not complete within ``timeout_s`` binds nothing: each waiting member answers with
an error, which makes kube-scheduler forget the assumed pod and try it again (clearing its
nomination, which Phalanx then sets again), so that no node is held by part of a gang.

The wait happens on the event loop (one future per waiting member), never on a worker thread:
a 512-member gang waiting must not starve the bind workers or the filters. ``timeout_s`` plus
the bind's own retries must stay below kube-scheduler's extender ``httpTimeout``.
"""

from __future__ import annotations

import asyncio
import time

from phalanx.extender.planner import Planner
from phalanx.extender.planner_protocol import Arrival

DEFAULT_BIND_BARRIER_S = 40.0
"""Long enough for kube-scheduler to take a large gang's members through their cycles while
other gangs' members share its queue: a barrier that gives up costs far more than it waits
(every failed bind moves all unschedulable pods back to kube-scheduler's active queue, so at
5,000 nodes an 8 s barrier made gangs time out again and again). With the chart's bind timeout
(15 s) it stays under the chart's ``httpTimeout`` (60 s)."""
RECHECK_S = 0.5
"""How often a waiting member asks whether its gang completed without a new arrival (a
missing member was deleted, or bound by another way)."""


class BindBarrier:
    def __init__(self, timeout_s: float = DEFAULT_BIND_BARRIER_S) -> None:
        self.timeout_s = timeout_s
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    @property
    def waiting(self) -> int:
        """Members waiting now (for /metrics and tests)."""
        return sum(len(w) for w in self._waiters.values())

    async def wait(self, planner: Planner, namespace: str, name: str) -> str:
        """'' once the member may bind, else the error to answer its bind with."""
        if self.timeout_s <= 0:
            return ""
        arrival = planner.arrive(namespace, name)
        if arrival.complete:
            self._release(arrival.gang_key)
            return ""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(arrival.gang_key, [])
        waiters.append(future)
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    error = _timeout_error(arrival, planner, self.timeout_s)
                    planner.depart(namespace, name)
                    return error
                try:
                    await asyncio.wait_for(asyncio.shield(future), min(RECHECK_S, left))
                    return ""
                except TimeoutError:
                    if not planner.barrier_missing(arrival.gang_key):
                        self._release(arrival.gang_key)
                        return ""
        finally:
            if future in waiters:
                waiters.remove(future)
            if not waiters and self._waiters.get(arrival.gang_key) is waiters:
                del self._waiters[arrival.gang_key]

    def _release(self, gang_key: str) -> None:
        for future in self._waiters.pop(gang_key, []):
            if not future.done():
                future.set_result(None)


def _timeout_error(arrival: Arrival, planner: Planner, timeout_s: float) -> str:
    missing = planner.barrier_missing(arrival.gang_key) or arrival.missing
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    return (
        f"gang {arrival.gang_key} [bind_barrier]: not every planned member reached bind within "
        f"{timeout_s:g} s (missing: {shown or 'none'}); no member binds before all do"
    )
