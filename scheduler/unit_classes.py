"""Members grouped for the search, and how many of each group every node and domain can hold.

A gang's members are split into *units* (``nvlink_group`` consecutive members that must share
an NVLink domain, else one member each) and units of equal request and size into *classes*;
a class's capacity is one kernel pass over the free arrays per node, summed up the domain tree.
The domain sums are computed on first use: a one-member gang that fits on a node never reads
them, and on a large cluster they are most of its capacity pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from phalanx.scheduler.cluster_index import ClusterIndex
from phalanx.scheduler.eligibility import FreeArrays, member_capacity, request_key, static_mask
from phalanx.scheduler.gang import Member, MemberRequest
from phalanx.scheduler.kernels import domain_totals, nvlink_unit_capacity
from phalanx.topology.compiled import CompiledCluster


@dataclass(frozen=True)
class UnitClass:
    """Units of one request and size; ``members`` are positions in the placed member list."""

    request: MemberRequest
    unit_members: int
    members: tuple[int, ...]
    nvlink: bool
    """Each unit's GPUs must share one NVLink domain."""

    @property
    def units(self) -> int:
        return len(self.members) // self.unit_members

    @property
    def unit_gpus(self) -> int:
        return self.request.gpus * self.unit_members

    @property
    def unit_milli(self) -> int:
        return self.request.gpu_milli_total * self.unit_members


def unit_classes(members: Sequence[Member], nvlink_group: int) -> list[UnitClass]:
    """Split members into units and classes, biggest units first (they are hardest to fit)."""
    if not members:
        return []
    first = members[0].request
    if len(members) == 1:  # most gangs: what the grouping below gives for one member
        return [UnitClass(first, 1, (0,), nvlink_group > 0 and first.gpus >= 2)]
    if nvlink_group <= 0 and all(m.request is first for m in members):
        return [UnitClass(first, 1, tuple(range(len(members))), False)]  # one request, no groups
    size = max(1, nvlink_group)
    groups: dict[tuple, list[int]] = {}
    requests: dict[tuple, MemberRequest] = {}
    keys: dict[int, tuple] = {}  # by request object: a gang's members mostly share one
    for start in range(0, len(members), size):
        unit = list(range(start, min(start + size, len(members))))
        request = members[start].request
        identity = keys.get(id(request))
        if identity is None:
            identity = keys[id(request)] = request_key(request)
        key = (identity, len(unit))
        groups.setdefault(key, []).extend(unit)
        requests[key] = request
    classes = [
        UnitClass(
            requests[key],
            key[1],
            tuple(positions),
            nvlink_group > 0 and requests[key].gpus * key[1] >= 2,
        )
        for key, positions in groups.items()
    ]
    classes.sort(key=lambda c: -c.unit_milli)
    return classes


@dataclass
class ClassCapacity:
    """Capacity of every node and domain for one class, under one free state."""

    member_cap: np.ndarray  # int64 [nodes]
    node_units: np.ndarray  # int64 [nodes], units each node can hold
    member_total: np.ndarray | None  # int64 [domains], members (clique-spanning units only)
    container_level: int
    """Units may spread over the nodes of one domain of this level (an NVLink clique); 0 when a
    unit stays on one node."""
    node_domain: np.ndarray = field(repr=False)
    n_domains: int = 0
    domain_units: np.ndarray | None = field(default=None, repr=False)
    """int64 [domains]: units each domain can hold; summed from ``node_units`` on first use
    when not given."""

    @property
    def unit_cap(self) -> np.ndarray:
        """int64 [domains], units each domain can hold (nodes first: a node's domain id is its
        index)."""
        if self.domain_units is None:
            self.domain_units = domain_totals(self.node_domain, self.node_units, self.n_domains)
        return self.domain_units

    def units_in(self, domain: int) -> int:
        """Units ``domain`` can hold, without summing the tree for a node."""
        if self.domain_units is None and domain < self.node_units.shape[0]:
            return int(self.node_units[domain])
        return int(self.unit_cap[domain])


def class_capacity(
    compiled: CompiledCluster,
    index: ClusterIndex,
    cls: UnitClass,
    free: FreeArrays,
    allowed: np.ndarray | None = None,
) -> ClassCapacity:
    """Capacity for ``cls`` on the eligible nodes, only those in ``allowed`` when given."""
    eligible = static_mask(compiled, index, cls.request)
    if allowed is not None:
        eligible = eligible & allowed
        eligible.flags.writeable = False  # the kernels' compiled signature takes read-only masks
    mcap = member_capacity(compiled, cls.request, eligible, free)
    n_domains = len(compiled.domain_names)
    g = cls.unit_members
    if cls.nvlink and g > 1 and index.nvlink_level:
        mcap = mcap * index.nvlink_node
        total = domain_totals(compiled.node_domain, mcap, n_domains)
        ucap = total // g
        c = index.nvlink_level
        lo, hi = compiled.level_domain_range[c]
        per_clique = total[lo:hi] // g
        for level in range(c + 1, compiled.n_levels):
            first, end = compiled.level_domain_range[level]
            parent = compiled.node_domain[level, index.rep_node[lo:hi]] - first
            ucap[first:end] = np.bincount(parent, weights=per_clique, minlength=end - first).astype(
                np.int64
            )
        node_units = ucap[: compiled.n_nodes]
        return ClassCapacity(mcap, node_units, total, c, compiled.node_domain, n_domains, ucap)
    if cls.nvlink:
        unode = nvlink_unit_capacity(mcap, free.free_gpu_mask, index.nvlink_masks, cls.unit_gpus, g)
    else:
        unode = mcap
    return ClassCapacity(mcap, unode, None, 0, compiled.node_domain, n_domains)
