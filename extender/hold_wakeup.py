"""When a link hold ends, the held gang's members go back to kube-scheduler at once.

A member Phalanx rejected waits in kube-scheduler's unschedulable queue until a cluster event
or the periodic flush (5 minutes by default) sends it back, and the end of a ``link-hold``
(:mod:`policies.permit.link_hold`) is no cluster event: in a quiet real cluster a gang held for
5 s was bound 322 s after it was created. The planner notes the gangs a cycle held and the
earliest end of their holds; the expiry timer (:mod:`extender.expiry_timer`) wakes then, and
the planner writes a condition into the status of each of those gangs' unbound members
(:meth:`extender.pod_actions.PodActions.requeue`), an update kube-scheduler answers by trying
the pod again (bound 0.1 s after the write). One wake-up serves every held gang: a gang whose
own hold ends later is rejected again, with its hold, and noted again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class HoldWakeup:
    """The gangs held by the permit plugin and the earliest end of their holds."""

    def __init__(self) -> None:
        self.due_s = math.inf
        self.gangs: set[str] = set()

    def note(self, gangs: Iterable[str], until_s: float) -> bool:
        """Remember ``gangs``, held until ``until_s`` at the earliest; True when that brings
        the wake-up forward (the timer sleeping towards a later one must be woken)."""
        self.gangs.update(gangs)
        if until_s < self.due_s:
            self.due_s = until_s
            return True
        return False

    def take_due(self, now_s: float) -> set[str]:
        """The gangs to send back now (all of them once the wake-up is due), forgotten."""
        if now_s < self.due_s:
            return set()
        gangs, self.gangs, self.due_s = self.gangs, set(), math.inf
        return gangs

    @property
    def next_s(self) -> float | None:
        return self.due_s if math.isfinite(self.due_s) else None
