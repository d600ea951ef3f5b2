"""The plain orders: FIFO, priority (FIFO inside a priority), shortest estimated GPU-time first."""

from __future__ import annotations

from typing import Any

from phalanx.policies.estimates import DEFAULT_RUNTIME_ESTIMATE_S, RuntimeEstimator
from phalanx.policies.queue.base import OrderedQueuePolicy, fifo_key, priority_fifo_key
from phalanx.policies.resources import gang_demand
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext


class FifoPolicy(OrderedQueuePolicy):
    name = "fifo"
    description = "First in, first out by submission time (strict=True: the head blocks all)."


class PriorityPolicy(OrderedQueuePolicy):
    name = "priority"
    description = "Higher priority first, FIFO inside one priority."

    def sort_key(self, gang: Gang, ctx: QueueContext) -> Any:
        return priority_fifo_key(gang)


class SjfPolicy(OrderedQueuePolicy):
    """Shortest job first, where a job's size is its estimated GPU-time (runtime x GPUs), so a
    short 64-GPU job does not count as "short"; CPU-only gangs count one GPU's worth."""

    name = "sjf"
    description = "Shortest estimated GPU-time (runtime x GPUs) first."

    def __init__(self, strict: bool = False, default_runtime_s: float = DEFAULT_RUNTIME_ESTIMATE_S):
        super().__init__(strict)
        self.estimator = RuntimeEstimator(default_runtime_s)

    def sort_key(self, gang: Gang, ctx: QueueContext) -> Any:
        gpus = max(gang_demand(gang).gpus, 1.0)
        return (self.estimator.estimate_s(gang) * gpus, *fifo_key(gang))

    def record_completion(self, gang: Gang, runtime_s: float) -> None:
        self.estimator.record_completion(gang, runtime_s)
