"""Lower bounds on the placement cost inside one candidate domain: they drop domains that
cannot beat a known placement (a sound reduction) and rank domains when a large cluster's model
must be restricted.

The bound of a domain at level ``l`` is what every placement whose lowest common domain it is
must pay: the communication cost of level ``l`` (for a network level, at least the cheapest
egress among the domain's nodes, since some node is used), the latency of ``l`` and, for a
single node, the exact fragmentation of putting the whole gang there. Every other term is
non-negative (the leftover-link term only where the tabulated ideal is the true best, which
:func:`leftover_never_negative` checks per node layout; pruning is skipped otherwise).

A domain is pruned only when its bound reaches the cost of a *valid* hint that places every
member (nothing in it can beat the hint, which stays in the model, so the model's optimum is
still the problem's), and only if the gang has no preferred level or the domain is no
narrower than the hint's container: the lexicographic parts of the objective (members placed,
level preference) then cannot make a pruned domain better than the hint.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
from phalanx.scheduler.cost import (
    FRAGMENTATION_WEIGHT,
    LATENCY_COST_PER_LEVEL,
    ideal_leftover_table,
    lowest_common_domain,
    placement_cost,
)
from phalanx.scheduler.eligibility import static_mask
from phalanx.scheduler.exact_problem import (
    MAX_SETS_PER_NODE,
    CandidateDomain,
    ExactProblem,
    gpu_units,
    needs_nvlink,
    unit_of,
)
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

PRUNE_TOLERANCE = 1e-9
"""Float slack in comparing bounds, far below the cost's integer resolution."""
MAX_MODEL_GPU_SETS = 8_000
"""GPU-set variables beyond which the candidate domains are restricted (a model of this size
builds in about a second and leaves CP-SAT time to search within the default limit)."""
LEFTOVER_CHECK_MAX_GPUS = 12
"""Node layouts up to this many usable GPUs are checked subset by subset (4,083 subsets)."""

_LEFTOVER_SAFE: dict[tuple[bytes, bytes, bytes], bool] = {}


def domain_lower_bound(problem: ExactProblem, domain: CandidateDomain) -> float:
    c = problem.compiled
    gang = problem.gang
    intensity = gang.comm_intensity
    full = problem.prefixes[0]
    level = domain.level
    latency = LATENCY_COST_PER_LEVEL * level
    if level == 0:
        node = domain.domain
        whole = sum(
            n * cls.request.gpus for n, cls in zip(full.class_counts, problem.classes, strict=True)
        )
        comm = intensity * _min_pair(c, node) if whole >= 2 else 0.0
        return comm + _single_node_fragmentation(problem, node)
    if c.level_is_nvlink[level]:
        return intensity * float(c.level_cost[level]) + latency
    egress = min(float(c.node_egress_cost[n]) for n in domain.nodes)
    return intensity * max(float(c.level_cost[level]), egress) + latency


def _min_pair(c: CompiledCluster, node: int) -> float:
    usable = np.flatnonzero(c.gpu_usable[node])
    if usable.size < 2:
        return 0.0
    pair = c.pair_cost_matrix(node)[np.ix_(usable, usable)]
    return float(pair[~np.eye(usable.size, dtype=bool)].min())


def _single_node_fragmentation(problem: ExactProblem, node: int) -> float:
    c = problem.compiled
    usable = c.gpu_usable[node]
    capacity = int(usable.sum()) * MILLI_PER_GPU
    if capacity == 0:
        return 0.0
    free = int((MILLI_PER_GPU - c.gpu_used_milli[node][usable]).sum())
    taken = sum(
        n * cls.request.gpu_milli_total
        for n, cls in zip(problem.prefixes[0].class_counts, problem.classes, strict=True)
    )
    left = free - taken
    return FRAGMENTATION_WEIGHT * left / capacity if 0 < left < capacity else 0.0


def leftover_never_negative(compiled: CompiledCluster, nodes: list[int]) -> bool:
    """Whether, on every node layout among ``nodes``, no set of free GPUs has a worst link
    below the tabulated ideal for its size (so the leftover-link term is never negative)."""
    table = ideal_leftover_table(compiled)
    for node in nodes:
        usable = np.flatnonzero(compiled.gpu_usable[node])
        pair = compiled.pair_cost_matrix(node)
        key = (pair.tobytes(), usable.tobytes(), table[compiled.node_shape[node]].tobytes())
        safe = _LEFTOVER_SAFE.get(key)
        if safe is None:
            safe = _layout_safe(pair, usable, table[compiled.node_shape[node]])
            _LEFTOVER_SAFE[key] = safe
        if not safe:
            return False
    return True


def _layout_safe(pair: np.ndarray, usable: np.ndarray, ideal: np.ndarray) -> bool:
    if usable.size > LEFTOVER_CHECK_MAX_GPUS:
        return False
    for size in range(2, usable.size + 1):
        for subset in itertools.combinations(usable.tolist(), size):
            if float(pair[np.ix_(subset, subset)].max()) < float(ideal[size]) - PRUNE_TOLERANCE:
                return False
    return True


def valid_hint_cost(problem: ExactProblem, state: ClusterState, hint: Placement) -> float | None:
    """The cost of ``hint`` if it places every member validly, else None."""
    gang = problem.gang
    c = problem.compiled
    names = [m.name for m in gang.members]
    if [m.member for m in hint.members] != names:
        return None
    index = problem.index
    for i, m in enumerate(hint.members):
        request = gang.members[i].request
        if not 0 <= m.node_index < c.n_nodes or not static_mask(c, index, request)[m.node_index]:
            return None
        want = (1, request.gpu_milli) if request.is_fractional else (request.gpus, MILLI_PER_GPU)
        if request.gpu_milli_total and (len(m.gpus), m.gpu_milli) != want:
            return None
        if not request.gpu_milli_total and m.gpus:
            return None
    trial = state.copy()
    try:
        trial.reserve(hint, now_s=0.0)
    except ValueError:
        return None
    nodes = [m.node_index for m in hint.members]
    level, _ = lowest_common_domain(c, nodes)
    if gang.required_level and level > c.level_index(gang.required_level):
        return None
    if not _groups_hold(problem, hint):
        return None
    return placement_cost(c, gang, hint.members).total


def _groups_hold(problem: ExactProblem, hint: Placement) -> bool:
    k = problem.gang.nvlink_group
    if not k:
        return True
    c = problem.compiled
    members = hint.members
    for start in range(0, len(members), k):
        group = members[start : start + k]
        composition = Counter(problem.member_class[i] for i in range(start, start + len(group)))
        kind = [composition.get(cls, 0) for cls in range(len(problem.classes))]
        if not needs_nvlink(kind, problem.classes):
            continue
        units = {
            unit_of(gpu_units(c, problem.index, m.node_index), m.gpus, m.node_index) for m in group
        }
        if len(units) != 1 or None in units:
            return False
    return True


def prune_by_bound(
    problem: ExactProblem, state: ClusterState, hint: Placement | None, strict: bool = False
) -> None:
    """Drop candidate domains whose lower bound reaches a valid hint's cost (``strict``:
    exceeds it, keeping equal-cost alternatives for a scorer's tie-break)."""
    if hint is None:
        return
    upper = valid_hint_cost(problem, state, hint)
    if upper is None:
        return
    nodes = sorted({n for d in problem.domains for n in d.nodes})
    if not leftover_never_negative(problem.compiled, nodes):
        return
    c = problem.compiled
    hint_level, hint_domain = lowest_common_domain(c, [m.node_index for m in hint.members])
    preferred = problem.gang.preferred_level
    floor = c.level_index(preferred) if preferred else 0
    kept = []
    for d in problem.domains:
        narrower = preferred is not None and max(d.level, floor) < max(hint_level, floor)
        if (
            d.domain != hint_domain
            and not narrower
            and _beaten(domain_lower_bound(problem, d), upper, strict)
        ):
            continue
        kept.append(d)
    if len(kept) < len(problem.domains):
        problem.notes.append(
            f"{len(problem.domains) - len(kept)} candidate domains pruned: their lower bound "
            f"reaches the hint's cost {upper:.4f} (sound)"
        )
        problem.domains = kept


def _beaten(bound: float, upper: float, strict: bool) -> bool:
    if strict:
        return bound > upper + PRUNE_TOLERANCE
    return bound >= upper - PRUNE_TOLERANCE


def gpu_set_count(problem: ExactProblem, node: int) -> int:
    """GPU-set variables a node will bring to the model (counted before enumerating)."""
    c = problem.compiled
    total = 0
    for cls in problem.classes:
        if not cls.eligible[node]:
            continue
        if cls.request.is_fractional or cls.request.gpus == 0:
            total += int(c.gpu_count[node]) + 1
        else:
            total += min(
                MAX_SETS_PER_NODE, math.comb(int(c.free_gpu_count[node]), cls.request.gpus)
            )
    return total


def restrict_to_budget(
    problem: ExactProblem, hint: Placement | None, max_gpu_sets: int | None = None
) -> None:
    """Keep whole candidate domains, best first (the hint's, then lowest bound, then the
    tightest fit), while the GPU-set count stays within ``max_gpu_sets`` (default
    ``MAX_MODEL_GPU_SETS``); marks the problem restricted when anything is left out."""
    if max_gpu_sets is None:
        max_gpu_sets = MAX_MODEL_GPU_SETS
    nodes = sorted({n for d in problem.domains for n in d.nodes})
    sets = {n: gpu_set_count(problem, n) for n in nodes}
    if sum(sets.values()) <= max_gpu_sets:
        return
    c = problem.compiled
    hint_domain = -1
    if hint is not None and hint.members:
        _, hint_domain = lowest_common_domain(c, [m.node_index for m in hint.members])
    demand = problem.gang.gpu_milli_total
    bounds = {d.domain: domain_lower_bound(problem, d) for d in problem.domains}

    def rank(d: CandidateDomain) -> tuple:
        spare = int(c.domain_free_gpus[d.domain]) * MILLI_PER_GPU - demand
        return (d.domain != hint_domain, bounds[d.domain], abs(spare), d.domain)

    chosen: set[int] = set()
    used = 0
    for d in sorted(problem.domains, key=rank):
        extra = sum(sets[n] for n in d.nodes if n not in chosen)
        if used + extra > max_gpu_sets and chosen:
            continue
        chosen.update(d.nodes)
        used += extra
    problem.domains = [d for d in problem.domains if chosen.issuperset(d.nodes)]
    problem.restricted = True
    problem.notes.insert(
        0,
        f"restricted to {len(chosen)} of {len(nodes)} nodes left by the sound reductions "
        f"({used} GPU sets, budget {max_gpu_sets}): not a proof of optimality",
    )
