"""What protects a running gang from eviction: a minimum runtime, a disruption budget (the
gang's ``evictable`` flag), and the no-loop rule.

A gang that has run less than ``min_runtime_s`` is not a candidate, so it gets past start-up
and a first checkpoint before it can be evicted (YuniKorn's ``preemption.delay``, KAI's
``preemptionDelay``). A gang may not be evicted by a gang it itself evicted last time: that
pair would otherwise evict each other in turn (kueue #3779, #7101, #14543).
"""

from __future__ import annotations

from collections.abc import Iterable

from phalanx.policies.resources import placement_usage
from phalanx.scheduler.interfaces import RunningGang

DEFAULT_MIN_RUNTIME_S = 300.0
"""Five minutes: long enough for image pull, NCCL set-up and a first checkpoint."""


class EvictionHistory:
    """Who last evicted whom; shared by the policies of one scheduler."""

    def __init__(self) -> None:
        self._last_evictor: dict[str, str] = {}

    def record(self, preemptor: str, victims: Iterable[str]) -> None:
        for victim in victims:
            self._last_evictor[victim] = preemptor

    def forbids(self, preemptor: str, victim: str) -> bool:
        """True if ``victim`` last evicted ``preemptor``."""
        return self._last_evictor.get(preemptor) == victim


def protected(running: RunningGang, now_s: float, min_runtime_s: float) -> bool:
    """Not a candidate: too young, or not evictable as a whole now (a disruption budget)."""
    return not running.evictable or now_s - running.start_s < min_runtime_s


def lost_work_gpu_s(running: RunningGang, now_s: float) -> float:
    """GPU-seconds of work thrown away if the gang is evicted now (no checkpoint assumed)."""
    return max(now_s - running.start_s, 0.0) * placement_usage(running.placement).gpus
