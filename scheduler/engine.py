"""The placement engine's entry point: validate the gang, then place it with the fast
hierarchical search, the exact CP-SAT model, or both.

``min_members``: the whole gang is tried first; if it does not fit, its first ``min_members``
members (the quorum) are placed alone, and the members beyond the quorum are optional extras
that simply do not start. The placement then lists only the placed members.

``solver="auto"`` runs the fast path and then the exact one when it can pay off:

- the fast path found nothing, unless it found that the whole cluster is short of the
  capacity the gang needs (then no solver can place it);
- the gang is hard for a greedy search: NVLink groups, or more than one kind of member;
- the gang is large, at least ``AUTO_EXACT_MIN_GPUS`` GPUs, where a better placement is worth
  the solver's time.

The exact solver gets the fast placement as its hint (and the scorer, for ties) and ``auto``
returns whichever answer costs less (the fast one on ties, or when the exact one timed out
without a placement).
"""

from __future__ import annotations

from dataclasses import replace

from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.placement import Placement, PlacementResult, Unplaceable
from phalanx.scheduler.search import search_placement
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.unit_classes import unit_classes
from phalanx.scheduler.validation import validate_gang_for_cluster
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

SOLVERS = ("fast", "exact", "auto")
AUTO_EXACT_MIN_GPUS = 64
"""``auto`` calls the exact solver for gangs of at least this many GPUs."""
DEFINITIVE_CONSTRAINTS = frozenset(
    {"capacity", "fragmented", "cpu_memory", "gpu", "gpu_product", "node_selector", "taints"}
)
"""Fast-path failures that hold for any solver when they concern the whole cluster."""


def place(
    gang: Gang,
    state: ClusterState,
    *,
    solver: str = "fast",
    scorer: PlacementScorer | None = None,
    time_limit_s: float = 2.0,
) -> PlacementResult:
    """Where ``gang`` would go on ``state`` now, or why it does not fit. Never mutates
    ``state``; raises :class:`~scheduler.gang.GangSpecError` for specs no state could fit."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    compiled = state.compiled
    validate_gang_for_cluster(gang, compiled)
    fast = place_fast(gang, compiled, scorer)
    if solver == "fast":
        return fast
    if solver == "auto" and not _exact_pays_off(gang, fast, compiled):
        return fast
    from phalanx.scheduler.exact import solve

    hint = fast if isinstance(fast, Placement) else None
    exact = solve(gang, state, time_limit_s=time_limit_s, hint=hint, scorer=scorer)
    if solver == "exact":
        return exact
    return _cheaper(fast, exact)


def place_fast(
    gang: Gang, compiled: CompiledCluster, scorer: PlacementScorer | None = None
) -> PlacementResult:
    """The fast path alone, on a gang already validated: whole gang, else the quorum."""
    whole = search_placement(gang, gang.members, compiled, scorer)
    if isinstance(whole, Placement) or gang.quorum == len(gang.members):
        return whole
    quorum = search_placement(gang, gang.members[: gang.quorum], compiled, scorer)
    if isinstance(quorum, Placement):
        return quorum
    return Unplaceable(
        gang.name,
        f"{whole.reason}; the quorum of {gang.quorum} members does not fit either: {quorum.reason}",
        quorum.constraint,
        quorum.level,
    )


def _exact_pays_off(gang: Gang, fast: PlacementResult, compiled: CompiledCluster) -> bool:
    if isinstance(fast, Unplaceable):
        root = compiled.level_names[-1]
        whole_cluster = fast.level in (root, None)
        return not (whole_cluster and fast.constraint in DEFINITIVE_CONSTRAINTS)
    if gang.nvlink_group or len(unit_classes(gang.members, gang.nvlink_group)) > 1:
        return True
    return gang.gpu_milli_total >= AUTO_EXACT_MIN_GPUS * MILLI_PER_GPU


def _cheaper(fast: PlacementResult, exact: PlacementResult) -> PlacementResult:
    """The cheaper answer; a fast placement no dearer than a proven optimum is marked optimal."""
    if isinstance(exact, Placement) and (
        not isinstance(fast, Placement) or exact.cost.total < fast.cost.total
    ):
        return exact
    if isinstance(fast, Placement) and isinstance(exact, Placement) and exact.optimal:
        return replace(fast, optimal=True)
    if isinstance(fast, Unplaceable) and isinstance(exact, Unplaceable) and exact.proven:
        return exact
    return fast
