"""The event queue: a heap ordered by time, then by kind, then by insertion.

Same-time events run in a fixed kind order so that a run is a pure function of its inputs and
seed: resources are freed (completions, expired reservations) before reservations bind, and all
of that before new arrivals and scheduling ticks, so a cycle at time t sees everything that
happened at t.
"""

from __future__ import annotations

import heapq
import itertools
from enum import IntEnum
from typing import NamedTuple


class EventKind(IntEnum):
    COMPLETION = 0
    RESERVATION_EXPIRY = 1
    BIND = 2
    ARRIVAL = 3
    SCHEDULE_TICK = 4
    WAKEUP = 5
    """A time-driven queue policy's order changes (Tiresias' demotions and promotions)."""


class Event(NamedTuple):
    """Compared field by field; ``seq`` is unique, so ``job`` and ``version`` never are."""

    time_s: float
    kind: EventKind
    seq: int
    job: int = -1
    """Index of the job record the event is about (-1 for ticks)."""
    version: int = 0
    """The job's run version when scheduled; a preempted run's stale events are dropped."""


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = itertools.count()

    def push(self, time_s: float, kind: EventKind, job: int = -1, version: int = 0) -> None:
        heapq.heappush(self._heap, Event(time_s, kind, next(self._seq), job, version))

    def pop(self) -> Event:
        return heapq.heappop(self._heap)

    def peek(self) -> Event:
        return self._heap[0]

    def peek_time(self) -> float:
        return self._heap[0].time_s

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)
