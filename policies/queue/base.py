"""What every queue policy shares: a sort key decides the order, and nothing else is checked.

Subclasses override :meth:`OrderedQueuePolicy.sort_key` for the ordering and, where they need
to, ``admit`` (quota, fairness), ``accept`` (backfill) or ``after_blocked`` (reservations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext
from phalanx.scheduler.placement import Placement, PlacementResult


def fifo_key(gang: Gang) -> tuple[float, str]:
    """Submission order; the name breaks ties so that orders are reproducible."""
    return (gang.submit_time_s, gang.name)


def priority_fifo_key(gang: Gang) -> tuple[int, float, str]:
    """Higher priority first, FIFO inside one priority."""
    return (-gang.priority, gang.submit_time_s, gang.name)


class OrderedQueuePolicy:
    """A queue policy defined by a sort key.

    ``strict=True`` stops the cycle at the first gang that cannot be placed (Kueue
    StrictFIFO: nothing overtakes the head); the default lets later gangs try (BestEffortFIFO),
    which keeps the cluster busy but can starve large gangs; ``backfill`` fixes that.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict

    def sort_key(self, gang: Gang, ctx: QueueContext) -> Any:
        return fifo_key(gang)

    def order(self, pending: Sequence[Gang], ctx: QueueContext) -> list[Gang]:
        return sorted(pending, key=lambda g: self.sort_key(g, ctx))

    def admit(self, gang: Gang, ctx: QueueContext) -> str | None:
        return None

    def accept(self, gang: Gang, placement: Placement, ctx: QueueContext) -> str | None:
        return None

    def after_blocked(self, gang: Gang, result: PlacementResult, ctx: QueueContext) -> bool:
        return not self.strict
