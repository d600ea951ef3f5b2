"""The placement cost: one function that the fast path, the exact path and the reports share.

Terms, all in units of the normalised link-cost scale (H100 NVLink4 = 1, see
:mod:`topology.costs`):

- communication: the gang's bottleneck link (ring/tree collectives run at the speed of their
  slowest edge) times the gang's communication intensity;
- latency: a small charge per fabric level the gang's lowest common domain sits above the node;
- fragmentation: capacity the placement strands, i.e. nodes left partly used, and leftover GPUs
  whose links are worse than they need be;
- misalignment: members split across NUMA sockets, or multi-node members on different NIC rails.

Changing a weight changes every solver's notion of "best" at once.

:func:`placement_cost` runs the compiled terms of :mod:`scheduler.cost_kernels`; the Python
functions below (:func:`reference_placement_cost` and the per-term helpers, which
:func:`member_costs` also uses) are the reference they are tested against bit for bit.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence

import numpy as np
from phalanx.scheduler import cost_kernels
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

LATENCY_COST_PER_LEVEL = 0.1
"""Per fabric level climbed: small against any bandwidth step (NVLink -> leaf is 9)."""
NODE_LATENCY = LATENCY_COST_PER_LEVEL * 0
"""The latency term of a placement inside one node (level 0)."""
FRAGMENTATION_WEIGHT = 1.0
"""Per touched node left partly used, times the fraction of its GPU capacity left free."""
LEFTOVER_LINK_WEIGHT = 0.25
"""Per touched node, times how much worse (0..1) the leftover GPUs' worst link is than the best
set of the same size could have been; the NVSwitch-aware version of go-gpuallocator's idea."""
NUMA_SPLIT_PENALTY = 0.5
"""Per member whose GPUs span CPU sockets (Topology Manager alignment lost)."""
RAIL_MISALIGN_PENALTY = 1.0
"""Times the share of a multi-node gang's members not on the gang's main rail set."""


def lowest_common_domain(compiled: CompiledCluster, nodes: Sequence[int]) -> tuple[int, int]:
    """(level index, flat domain id) of the smallest domain holding all ``nodes``."""
    arr = np.asarray(nodes, dtype=np.int64)
    if arr.size == 0:
        raise IndexError("lowest_common_domain needs at least one node")
    level, domain = cost_kernels.lowest_common_level(compiled.node_domain, arr)
    return int(level), int(domain)


def reference_lowest_common_domain(
    compiled: CompiledCluster, nodes: Sequence[int]
) -> tuple[int, int]:
    """numpy reference of :func:`lowest_common_domain`."""
    cols = compiled.node_domain[:, np.unique(np.asarray(nodes, dtype=np.int64))]
    same = (cols == cols[:, :1]).all(axis=1)
    level = int(np.argmax(same))
    return level, int(cols[level, 0])


def communication_cost(
    compiled: CompiledCluster, members: Sequence[MemberPlacement], level: int
) -> float:
    """Bottleneck pair cost over every pair of GPUs the gang uses."""
    if level > 0:
        if compiled.level_is_nvlink[level]:
            return float(compiled.level_cost[level])
        nodes = np.unique([m.node_index for m in members])
        return float(max(compiled.level_cost[level], compiled.node_egress_cost[nodes].max()))
    gpus = sorted({g for m in members for g in m.gpus})
    if len(gpus) < 2:
        return 0.0
    node = members[0].node_index
    sub = compiled.pair_cost_matrix(node)[np.ix_(gpus, gpus)]
    return float(sub.max())


def bottleneck_comm_cost(compiled: CompiledCluster, members: Sequence[MemberPlacement]) -> float:
    """Bottleneck link cost of a whole placement (0 for a single GPU): what a data-parallel
    step waits on, the figure the slowdown model and the link hold compare."""
    if len({(m.node_index, g) for m in members for g in m.gpus}) < 2:
        return 0.0
    level, _ = lowest_common_domain(compiled, [m.node_index for m in members])
    return communication_cost(compiled, members, level)


def _used_after(
    compiled: CompiledCluster, members: Sequence[MemberPlacement]
) -> dict[int, np.ndarray]:
    after: dict[int, np.ndarray] = {}
    for m in members:
        used = after.setdefault(m.node_index, compiled.gpu_used_milli[m.node_index].copy())
        for g in m.gpus:
            used[g] += m.gpu_milli
    return after


def best_leftover_link(pair_cost: np.ndarray, count: int) -> float:
    """Worst link inside the best-connected set of ``count`` GPUs of a node (greedy over the
    pair matrix: exact for NVSwitch and switch-pair layouts, where links are hierarchical)."""
    n = int(np.isfinite(np.diag(pair_cost)).sum())
    if count < 2 or n < count:
        return 0.0
    best = np.inf
    for seed in range(n):
        chosen = [seed]
        worst = 0.0
        while len(chosen) < count:
            rest = [g for g in range(n) if g not in chosen]
            link = pair_cost[np.ix_(rest, chosen)].max(axis=1)
            pick = int(np.argmin(link))
            worst = max(worst, float(link[pick]))
            chosen.append(rest[pick])
        best = min(best, worst)
    return float(best)


_IDEAL_TABLES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def ideal_leftover_table(compiled: CompiledCluster) -> np.ndarray:
    """``[shape, count]`` -> :func:`best_leftover_link`, computed once per node shape."""
    shapes = compiled.shape_pair_cost
    cached = _IDEAL_TABLES.get(id(shapes))
    if cached is not None and cached[0] is shapes:
        return cached[1]
    table = np.zeros((shapes.shape[0], shapes.shape[1] + 1))
    for s in range(shapes.shape[0]):
        for count in range(2, shapes.shape[1] + 1):
            table[s, count] = best_leftover_link(shapes[s], count)
    _IDEAL_TABLES[id(shapes)] = (shapes, table)
    return table


def fragmentation_cost(compiled: CompiledCluster, members: Sequence[MemberPlacement]) -> float:
    total = 0.0
    for stranded, leftover_link in _fragmentation_by_node(compiled, members).values():
        total += stranded
        total += leftover_link
    return float(total)


def _fragmentation_by_node(
    compiled: CompiledCluster, members: Sequence[MemberPlacement]
) -> dict[int, tuple[float, float]]:
    """Per node the members touch, the two parts of its fragmentation term: capacity left
    partly used, and leftover GPUs worse connected than they need be."""
    by_node: dict[int, tuple[float, float]] = {}
    ideal_table = ideal_leftover_table(compiled)
    for node, used in _used_after(compiled, members).items():
        stranded = leftover_link = 0.0
        usable = compiled.gpu_usable[node]
        capacity = int(usable.sum()) * MILLI_PER_GPU
        if capacity == 0:
            by_node[node] = (stranded, leftover_link)
            continue
        free_milli = int((MILLI_PER_GPU - used[usable]).sum())
        if 0 < free_milli < capacity:
            stranded = FRAGMENTATION_WEIGHT * free_milli / capacity
        free = np.flatnonzero((used == 0) & usable)
        if len(free) >= 2:
            pair = compiled.pair_cost_matrix(node)
            worst_node = float(pair[np.ix_(np.flatnonzero(usable), np.flatnonzero(usable))].max())
            left = float(pair[np.ix_(free, free)].max())
            ideal = ideal_table[compiled.node_shape[node], len(free)]
            if worst_node > 0 and np.isfinite(left):
                leftover_link = LEFTOVER_LINK_WEIGHT * (left - ideal) / worst_node
        by_node[node] = (stranded, leftover_link)
    return by_node


def misalignment_cost(
    compiled: CompiledCluster, members: Sequence[MemberPlacement], level: int
) -> float:
    split, off_rail, on_gpus = _misaligned(compiled, members, level)
    penalty = NUMA_SPLIT_PENALTY * sum(split)
    if off_rail:
        penalty += RAIL_MISALIGN_PENALTY * sum(off_rail) / on_gpus
    return penalty


def _misalignment_by_member(
    compiled: CompiledCluster, members: Sequence[MemberPlacement], level: int
) -> list[float]:
    """Each member's share of the misalignment term: its own NUMA split, and an equal share
    of the rail penalty if it is off the gang's main rail set."""
    split, off_rail, on_gpus = _misaligned(compiled, members, level)
    rail_share = RAIL_MISALIGN_PENALTY / on_gpus if on_gpus else 0.0
    return [
        NUMA_SPLIT_PENALTY * s + (rail_share if off_rail and off_rail[i] else 0.0)
        for i, s in enumerate(split)
    ]


def _misaligned(
    compiled: CompiledCluster, members: Sequence[MemberPlacement], level: int
) -> tuple[list[bool], list[bool], int]:
    """Per member: are its GPUs split across CPU sockets, and (for a multi-node gang of
    several GPU members, else an empty list) is it off the gang's main rail set; and how
    many members use GPUs."""
    split = []
    for m in members:
        numa = compiled.gpu_numa[m.node_index]
        if len(m.gpus) < 2:
            split.append(False)
            continue
        socket_size = np.bincount(numa[compiled.gpu_usable[m.node_index]]).max()
        split.append(bool(len(m.gpus) <= socket_size and len(set(numa[list(m.gpus)].tolist())) > 1))
    on_gpus = [i for i, m in enumerate(members) if m.gpus]  # CPU-only members use no GPU rail
    off_rail: list[bool] = []
    if level > 0 and len(on_gpus) > 1:
        rails = {
            i: frozenset(compiled.gpu_rail[members[i].node_index, list(members[i].gpus)].tolist())
            for i in on_gpus
        }
        main = Counter(rails.values()).most_common(1)[0][0]
        off_rail = [i in rails and rails[i] != main for i in range(len(members))]
    return split, off_rail, len(on_gpus)


def member_costs(
    compiled: CompiledCluster, gang: Gang, members: Sequence[MemberPlacement]
) -> list[CostBreakdown]:
    """Each member's part of :func:`placement_cost` (the cluster as it is *before* the
    placement), so a user can see which member sits on the slow link or strands capacity.

    ``fragmentation`` (each touched node's term, split evenly among the members on it) and
    ``misalignment`` add up to the gang's terms. ``communication`` is the worst link the
    member takes part in (inside one node: its GPUs to the gang's; across nodes: the fabric
    level the gang spans or its own node's network egress, whichever is slower), and
    ``latency`` the levels the gang climbs; the gang's terms are their largest values (a
    collective runs at its slowest edge).
    """
    if not members:
        return []
    nodes = [m.node_index for m in members]
    gang_level, _ = lowest_common_domain(compiled, nodes)
    on_node = Counter(nodes)
    fragmentation = _fragmentation_by_node(compiled, members)
    misalignment = _misalignment_by_member(compiled, members, gang_level)
    costs = []
    for i, m in enumerate(members):
        if gang_level > 0:
            comm = float(compiled.level_cost[gang_level])
            if not compiled.level_is_nvlink[gang_level]:
                comm = max(comm, float(compiled.node_egress_cost[m.node_index]))
        else:
            comm = _node_link(compiled, m, members)
        costs.append(
            CostBreakdown(
                communication=gang.comm_intensity * comm,
                fragmentation=sum(fragmentation[m.node_index]) / on_node[m.node_index],
                misalignment=misalignment[i],
                latency=LATENCY_COST_PER_LEVEL * gang_level,
            )
        )
    return costs


def _node_link(
    compiled: CompiledCluster, member: MemberPlacement, members: Sequence[MemberPlacement]
) -> float:
    """Worst link between the member's GPUs and the gang's GPUs, all on one node."""
    own = sorted(set(member.gpus))
    every = sorted({g for m in members for g in m.gpus})
    if len(every) < 2 or not own:
        return 0.0
    pair = compiled.pair_cost_matrix(member.node_index)[np.ix_(own, every)]
    mask = np.not_equal.outer(own, every)
    return float(pair[mask].max()) if mask.any() else 0.0


def member_table(members: Sequence[MemberPlacement]) -> np.ndarray:
    """uint64 [m, 3]: each member's node, GPU share and GPUs as a bitmask, the table the
    compiled cost terms read (three numbers a member: converting Python numbers to an array
    costs tens of nanoseconds each)."""
    flat: list[int] = []
    for x in members:
        flat += (x.node_index, x.gpu_milli, gpus_mask(x.gpus))
    return np.array(flat, dtype=np.uint64).reshape(len(members), 3)


MASK_CACHE_SIZE = 1 << 14
"""GPU tuples whose bitmask is remembered (every set of a node of up to 14 GPUs): the
conversion runs for every member of every priced candidate."""


@functools.lru_cache(maxsize=MASK_CACHE_SIZE)
def gpus_mask(gpus: tuple[int, ...]) -> int:
    """The mask with the bits of ``gpus`` set, remembered."""
    return sum(1 << g for g in gpus)


_RAILS_FIT: dict[int, tuple[np.ndarray, bool]] = {}
_WEIGHTS = np.array(
    [FRAGMENTATION_WEIGHT, LEFTOVER_LINK_WEIGHT, NUMA_SPLIT_PENALTY, RAIL_MISALIGN_PENALTY]
)
"""The weights as the compiled terms take them (``placement_terms``)."""


def _rails_fit(compiled: CompiledCluster) -> bool:
    """Whether every rail id fits the kernels' rail bitmasks (checked once per cluster)."""
    rails = compiled.gpu_rail
    cached = _RAILS_FIT.get(id(rails))
    if cached is None or cached[0] is not rails:
        fits = rails.size == 0 or int(rails.max()) < cost_kernels.RAIL_BITS
        cached = _RAILS_FIT[id(rails)] = (rails, fits)
    return cached[1]


def priced_domain(
    compiled: CompiledCluster, gang: Gang, members: Sequence[MemberPlacement]
) -> tuple[int, int, CostBreakdown]:
    """(level, flat domain id, cost) of a non-empty placement: what the fast path records for
    each candidate, from one conversion of the members to arrays."""
    if len(members) == 1:  # level 0, its own node: rails are not read
        only = members[0]
        node = only.node_index
        comm, fragmentation, misalignment = cost_kernels.single_member_terms(
            compiled.node_shape,
            compiled.shape_pair_cost,
            compiled.gpu_used_milli,
            compiled.gpu_usable,
            compiled.gpu_numa,
            ideal_leftover_table(compiled),
            node,
            only.gpu_milli,
            gpus_mask(only.gpus),
            _WEIGHTS,
        )
        intensity = gang.comm_intensity
        cost = CostBreakdown.of(intensity * comm, fragmentation, misalignment, NODE_LATENCY)
        return 0, node, cost  # level 0's domains are the nodes, in node order
    if not _rails_fit(compiled):
        level, domain = reference_lowest_common_domain(compiled, [m.node_index for m in members])
        return level, domain, reference_placement_cost(compiled, gang, members)
    c = compiled
    level, domain, comm, fragmentation, misalignment = cost_kernels.placement_terms(
        c.node_domain,
        c.level_cost,
        c.level_is_nvlink,
        c.node_egress_cost,
        c.node_shape,
        c.shape_pair_cost,
        c.gpu_used_milli,
        c.gpu_usable,
        c.gpu_numa,
        c.gpu_rail,
        ideal_leftover_table(c),
        member_table(members),
        _WEIGHTS,
    )
    cost = CostBreakdown.of(
        gang.comm_intensity * comm, fragmentation, misalignment, LATENCY_COST_PER_LEVEL * level
    )
    return int(level), int(domain), cost


def placement_cost(
    compiled: CompiledCluster, gang: Gang, members: Sequence[MemberPlacement]
) -> CostBreakdown:
    """Cost of placing ``members`` of ``gang`` on the cluster as it is *before* the placement."""
    if not members:
        return CostBreakdown()
    return priced_domain(compiled, gang, members)[2]


def reference_placement_cost(
    compiled: CompiledCluster, gang: Gang, members: Sequence[MemberPlacement]
) -> CostBreakdown:
    """Python reference of :func:`placement_cost`, term by term."""
    if not members:
        return CostBreakdown()
    level, _ = reference_lowest_common_domain(compiled, [m.node_index for m in members])
    return CostBreakdown(
        communication=gang.comm_intensity * communication_cost(compiled, members, level),
        fragmentation=fragmentation_cost(compiled, members),
        misalignment=misalignment_cost(compiled, members, level),
        latency=LATENCY_COST_PER_LEVEL * level,
    )
