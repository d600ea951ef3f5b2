"""The narrow interfaces through which policies plug into the core.

The core (placement engine, scheduling cycle) depends only on these protocols; concrete
policies live in :mod:`policies` and are found by name through its registry, so the simulator
and the extender run exactly the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement, PlacementResult
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster


@dataclass
class RunningGang:
    """A gang holding resources, as the queue and preemption policies see it."""

    gang: Gang
    placement: Placement
    start_s: float
    estimated_end_s: float
    """start + runtime estimate (``inf`` if none is known)."""
    preempted_by: str | None = None
    """The gang whose preemption last evicted this one, to stop preemption loops."""
    evictable: bool = True
    """False when the gang may not be evicted now whatever its priority (the extender: a
    PodDisruptionBudget would refuse evicting it whole); the simulator has no such limit."""


@dataclass
class QueueContext:
    """Everything a queue policy may read when ordering and admitting gangs."""

    now_s: float
    state: ClusterState
    running: Sequence[RunningGang]
    attained_gpu_s: dict[str, float] = field(default_factory=dict)
    """GPU-seconds of service each gang has received so far (Tiresias LAS). Only policies
    whose ``reads_attained_service`` is true read it (see :func:`reads_attained_service`)."""
    pending: Sequence[Gang] = ()
    """Every gang waiting this cycle, so fairness gates can see who else has demand."""
    place: PlaceFunction | None = None
    """The cycle's own placement call (same solver and scorer), for what-if planning such as
    a backfill reservation; None where no engine is at hand."""


@runtime_checkable
class PlacementScorer(Protocol):
    """Scores feasible nodes for one member; higher is better (as kube-scheduler scores)."""

    name: str

    def score(
        self, compiled: CompiledCluster, request: MemberRequest, nodes: np.ndarray
    ) -> np.ndarray:
        """float64 scores aligned with ``nodes`` (node indices already known to fit)."""
        ...

    def pick_gpu(self, compiled: CompiledCluster, request: MemberRequest, node: int) -> int | None:
        """For a fractional request, which GPU of ``node`` to share; None lets the core pick."""
        ...


class BestNodesScorer(Protocol):
    """A scorer that finds its best-scored fitting nodes in one pass, without scoring every
    node into an array first. The search asks it (where present) for a gang of one class,
    which fills any node with room and so only ever takes the first node it ranks."""

    def best_nodes(
        self,
        compiled: CompiledCluster,
        request: MemberRequest,
        node_units: np.ndarray,
        units: int,
        ties: int,
    ) -> np.ndarray | None:
        """The nodes with ``node_units >= units`` whose score is highest, the lowest ``ties``
        of them by index, in index order; None when the scorer has no such pass for this
        request (the search then scores every fitting node)."""
        ...


class GroupedBestNodesScorer(Protocol):
    """A scorer that finds one member's best nodes from nodes grouped by what its score
    reads, without the search's capacity pass over every node (the search asks it, where
    present, for a gang of one member of whole GPUs)."""

    def best_nodes_in_groups(
        self,
        compiled: CompiledCluster,
        request: MemberRequest,
        eligible: np.ndarray,
        ties: int,
    ) -> np.ndarray | None:
        """:meth:`BestNodesScorer.best_nodes` for one member of ``request`` on the
        ``eligible`` nodes that have its GPUs, cpu and memory; None when the groups do not
        serve (the search then runs the full pass)."""
        ...


@runtime_checkable
class StateObserver(Protocol):
    """A scorer that reads the ledger, not only the compiled arrays (e.g. which kinds of pods
    already share a node): the scheduling cycle binds it to the state it places against."""

    def bind_state(self, state: ClusterState) -> None: ...


@runtime_checkable
class QueuePolicy(Protocol):
    """Decides which pending gang is tried next and whether it may start."""

    name: str

    def order(self, pending: Sequence[Gang], ctx: QueueContext) -> list[Gang]:
        """Pending gangs in the order the cycle should try them."""
        ...

    def admit(self, gang: Gang, ctx: QueueContext) -> str | None:
        """None if quota and fairness let ``gang`` start now, else the reason it waits."""
        ...

    def accept(self, gang: Gang, placement: Placement, ctx: QueueContext) -> str | None:
        """Last check with the placement in hand (backfill: would it delay the head's
        reserved start?); None to start, else the reason it waits."""
        ...

    def after_blocked(self, gang: Gang, result: PlacementResult, ctx: QueueContext) -> bool:
        """``gang`` could not start; return True to keep trying later gangs this cycle."""
        ...


@runtime_checkable
class PermitPlugin(Protocol):
    """The framework's Permit stage: a gang that fits may still be told to wait (kube-scheduler's
    Permit plugins; Slurm's ``--switches=N@max-time`` waits for a placement under fewer
    switches). Called with the placement in hand, before the queue policy's ``accept``."""

    name: str

    def permit(self, gang: Gang, placement: Placement, ctx: QueueContext) -> str | None:
        """None to let ``gang`` start on ``placement`` now, else why it waits."""
        ...

    def kept_nodes(self, gang: Gang, now_s: float) -> np.ndarray | None:
        """Node indices kept for the other gangs this plugin holds (what each waits to get),
        which ``gang`` is placed around when it fits elsewhere (as kube-scheduler counts a
        nominated pod's resources as taken on its node); None when nothing is kept."""
        ...


@runtime_checkable
class RuntimeObserver(Protocol):
    """A policy that learns runtime estimates from finished gangs (backfill, SJF): the
    simulator and the extender report every completion to policies implementing this."""

    def record_completion(self, gang: Gang, runtime_s: float) -> None: ...


@dataclass(frozen=True)
class PreemptionDecision:
    """Whole gangs to evict so that ``preemptor`` fits, and the placement it then gets."""

    preemptor: str
    victims: tuple[str, ...]
    placement: Placement
    reason: str


@runtime_checkable
class PreemptionPolicy(Protocol):
    name: str

    def select_victims(
        self, preemptor: Gang, ctx: QueueContext, place: PlaceFunction
    ) -> PreemptionDecision | None:
        """Cheapest set of whole gangs whose eviction lets ``preemptor`` be placed, checked by
        placing it on a copy of the state with the victims released; None if no such set."""
        ...


class PlaceFunction(Protocol):
    """The engine's entry point as policies call it: place ``gang`` against ``state``."""

    def __call__(self, gang: Gang, state: ClusterState) -> PlacementResult: ...


def reads_attained_service(*policies: object) -> bool:
    """Whether any of these queue or preemption policies reads ``ctx.attained_gpu_s`` (their
    ``reads_attained_service`` attribute: LAS, Tiresias, finish-time fairness, preemption
    ranked by them). The extender derives attained service from every pod it tracks, work
    that grows with the cluster's pods, so it does that only for policies that read it."""
    return any(bool(getattr(p, "reads_attained_service", False)) for p in policies)
