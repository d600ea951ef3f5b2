"""The fast path: hierarchical best-fit search for a gang's placement.

1. Members are grouped into *units*: ``nvlink_group`` consecutive members that must share an
   NVLink domain (one member each without NVLink groups), and units of equal request and size
   into *classes*.
2. Every node's capacity in members (and units) comes from one kernel pass over the free
   arrays; summing it up the domain tree gives every domain's capacity in member-sized chunks.
3. Levels are tried finest first (node, then NVLink clique, scalable unit, ...), from the first
   level with a domain that holds the whole gang up to ``required_level`` (or the root), or,
   with a ``preferred_level``, up to the higher of it and that first level: the levels it
   ranks equal (Kueue's semantics, and the exact model's). A level is skipped once its cost
   floor (latency plus the level's link) cannot beat the cheapest placement found so far.
4. A multi-node gang pays the egress cost of its dearest node on every link, so one slow node
   type (PCIe cards behind two NICs) prices the whole gang. Its levels above the node are
   therefore searched once per *egress tier*: only the nodes whose egress costs at most each
   distinct value among the eligible nodes, cheapest tier first, all nodes last. A tier whose
   egress alone prices it above the best placement so far is skipped.
5. Among a level's candidates, best fit: the least capacity left over (so large domains stay
   whole for large jobs), busier domains first on ties; single nodes are ranked by a kernel
   that prices each exactly as the cost function would for one member. The first few
   (``CANDIDATES_SCORED``, fewer for big gangs) are filled and priced with
   :func:`scheduler.cost.placement_cost`, and the cheapest over all levels and tiers wins.
6. Inside a domain, children are filled touching the fewest of them: the largest first until
   the remainder fits in one child, which is then the best-fitting one (nodes of equal room
   told apart by what their GPU sets would cost); recursively down to nodes, where
   :mod:`scheduler.gpu_choice` picks the GPUs.

With a scorer, node choice follows the scorer (kube-scheduler's score phase): single-node
candidates are ranked by its score and nodes inside a domain are filled in its order; domain
choice above the node stays with the topology search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from phalanx.scheduler.cluster_index import ClusterIndex, cluster_index
from phalanx.scheduler.cost import (
    FRAGMENTATION_WEIGHT,
    LATENCY_COST_PER_LEVEL,
    RAIL_MISALIGN_PENALTY,
    lowest_common_domain,
    placement_cost,
)
from phalanx.scheduler.eligibility import (
    FreeArrays,
    explain_no_node,
    member_capacity,
    request_key,
    static_mask,
)
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.gpu_choice import (
    TABLE_MAX_GPUS,
    choose_fractional_gpu,
    choose_whole_gpus,
    rail_mask,
    stacked_tables,
)
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.kernels import domain_totals, nvlink_unit_capacity, single_node_costs
from phalanx.scheduler.placement import MemberPlacement, Placement, PlacementResult, Unplaceable
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

CANDIDATES_SCORED = 3
"""Candidate domains (or nodes) at the winning level that are filled and priced in full."""
SCORED_MEMBERS_BUDGET = 64
"""Fewer candidates are priced for big gangs (128 members: one), whose fill and pricing
cost grows with their size; best fit already ranks their candidates well."""
CANDIDATES_TRIED = 16
"""Most candidates tried at one level when fills fail (classes of a mixed gang competing for
the same nodes); a single-class fill never fails once the capacity check passed."""


# ---------------------------------------------------------------------------- units and classes
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
    size = max(1, nvlink_group)
    groups: dict[tuple, list[int]] = {}
    requests: dict[tuple, MemberRequest] = {}
    for start in range(0, len(members), size):
        unit = list(range(start, min(start + size, len(members))))
        request = members[start].request
        key = (request_key(request), len(unit))
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
    unit_cap: np.ndarray  # int64 [domains], units each domain can hold
    member_total: np.ndarray | None  # int64 [domains], members (clique-spanning units only)
    container_level: int
    """Units may spread over the nodes of one domain of this level (an NVLink clique); 0 when a
    unit stays on one node."""


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
        return ClassCapacity(mcap, ucap, total, c)
    if cls.nvlink:
        unode = nvlink_unit_capacity(mcap, free.free_gpu_mask, index.nvlink_masks, cls.unit_gpus, g)
    else:
        unode = mcap
    return ClassCapacity(mcap, domain_totals(compiled.node_domain, unode, n_domains), None, 0)


# ---------------------------------------------------------------------------- scratch state
class Scratch:
    """Free capacity as the gang's own earlier members leave it, layered over the untouched
    compiled arrays (the search never writes to the cluster state)."""

    def __init__(self, compiled: CompiledCluster) -> None:
        self.compiled = compiled
        self.used: dict[int, np.ndarray] = {}
        self.cpu: dict[int, int] = {}
        self.memory: dict[int, int] = {}
        self.gang_gpus: dict[int, set[int]] = {}
        """GPUs the gang's earlier members took, by node."""

    def used_row(self, node: int) -> np.ndarray:
        row = self.used.get(node)
        return self.compiled.gpu_used_milli[node] if row is None else row

    def free_mask(self, node: int) -> int:
        row = self.used.get(node)
        if row is None:
            return int(self.compiled.free_gpu_mask[node])
        free = np.flatnonzero((row == 0) & self.compiled.gpu_usable[node])
        return sum(1 << int(g) for g in free)

    def take(
        self, node: int, gpus: tuple[int, ...], gpu_milli: int, request: MemberRequest
    ) -> None:
        row = self.used.get(node)
        if row is None:
            row = self.used[node] = self.compiled.gpu_used_milli[node].copy()
        row[list(gpus)] += gpu_milli
        self.gang_gpus.setdefault(node, set()).update(gpus)
        c = self.compiled
        self.cpu[node] = self.cpu.get(node, int(c.cpu_free_milli[node])) - request.cpu_milli
        self.memory[node] = self.memory.get(node, int(c.memory_free_mib[node])) - request.memory_mib

    def arrays(self) -> FreeArrays:
        c = self.compiled
        if not (self.used or self.cpu):
            return FreeArrays.of(c)
        used = c.gpu_used_milli.copy()
        mask = c.free_gpu_mask.copy()
        count = c.free_gpu_count.copy()
        cpu = c.cpu_free_milli.copy()
        memory = c.memory_free_mib.copy()
        for node, row in self.used.items():
            used[node] = row
            node_mask = self.free_mask(node)
            mask[node] = np.uint64(node_mask)
            count[node] = node_mask.bit_count()
        for node, value in self.cpu.items():
            cpu[node] = value
        for node, value in self.memory.items():
            memory[node] = value
        return FreeArrays(used, mask, count, cpu, memory)


# ---------------------------------------------------------------------------- the search
@dataclass
class _EgressTier:
    """Nodes whose network egress costs at most ``egress``: a multi-node gang pays its
    dearest node's egress on every link, so its placement is searched once per tier."""

    egress: float
    allowed: np.ndarray | None
    """bool [nodes]; None for the last tier, every eligible node."""
    caps: list[ClassCapacity] | None
    """Filled on first use: a tier pruned by its cost floor never computes them."""


@dataclass
class _Search:
    compiled: CompiledCluster
    index: ClusterIndex
    gang: Gang
    members: Sequence[Member]
    classes: list[UnitClass]
    scorer: PlacementScorer | None

    def run(self) -> PlacementResult:
        c = self.compiled
        caps = self._capacities(None)
        top = c.n_levels - 1
        stop = c.level_index(self.gang.required_level) if self.gang.required_level else top
        first, candidates = 0, self._fitting(0, caps)
        while candidates.size == 0 and first < stop:
            first += 1
            candidates = self._fitting(first, caps)
        if candidates.size == 0:
            return self._explain(caps, stop)
        preferred = self.gang.preferred_level
        ceiling = max(first, c.level_index(preferred)) if preferred else stop
        best = None
        if first == 0:
            best = self._best_of(0, self._rank(0, candidates, caps), caps, None)
        if len(self.members) > 1:
            for tier in self._tiers(caps):
                best = self._climb(tier, max(first, 1), ceiling, stop, best)
        return best if best is not None else self._explain(caps, stop)

    def _capacities(self, allowed: np.ndarray | None) -> list[ClassCapacity]:
        free = FreeArrays.of(self.compiled)
        return [
            class_capacity(self.compiled, self.index, cls, free, allowed) for cls in self.classes
        ]

    def _fitting(self, level: int, caps: list[ClassCapacity]) -> np.ndarray:
        """Domains of ``level`` with room for every class."""
        lo, hi = self.compiled.level_domain_range[level]
        fits = np.ones(hi - lo, dtype=bool)
        for cls, cap in zip(self.classes, caps, strict=True):
            fits &= cap.unit_cap[lo:hi] >= cls.units
        return lo + np.flatnonzero(fits)

    def _tiers(self, caps: list[ClassCapacity]) -> list[_EgressTier]:
        """The egress tiers of the nodes the gang may use, cheapest first, the last one
        unrestricted. Without communication egress costs nothing: one tier."""
        c = self.compiled
        eligible = np.zeros(c.n_nodes, dtype=bool)
        for cls in self.classes:
            eligible |= static_mask(c, self.index, cls.request)
        egress = np.unique(c.node_egress_cost[eligible])
        tiers = [_EgressTier(float(egress[-1]), None, caps)]
        if self.gang.comm_intensity > 0:
            tiers[:0] = [_EgressTier(float(e), c.node_egress_cost <= e, None) for e in egress[:-1]]
        return tiers

    def _climb(
        self, tier: _EgressTier, start: int, ceiling: int, stop: int, best: Placement | None
    ) -> Placement | None:
        """The cheapest of ``best`` and the placements this tier finds at levels ``start`` to
        ``ceiling`` (the levels a preferred level ranks equal; further up while nothing is
        found, for the unrestricted tier), skipping levels whose cost floor cannot beat
        ``best``."""
        if best is not None:
            floors = [self._cost_floor(lv, tier.egress) for lv in range(start, ceiling + 1)]
            if min(floors, default=np.inf) >= best.cost.total:
                return best
        if tier.caps is None:
            tier.caps = self._capacities(tier.allowed)
        for level in range(start, stop + 1):
            if level > ceiling and (best is not None or tier.allowed is not None):
                break
            if best is not None and self._cost_floor(level, tier.egress) >= best.cost.total:
                continue
            candidates = self._fitting(level, tier.caps)
            if candidates.size == 0:
                continue
            ranked = self._rank(level, candidates, tier.caps)
            found = self._best_of(level, ranked, tier.caps, tier.allowed)
            if found is not None and (best is None or found.cost.total < best.cost.total):
                best = found
        return best

    def _cost_floor(self, level: int, egress: float) -> float:
        """What any placement spanning a domain of ``level`` pays for communication and
        latency when it touches a node of the tier's highest ``egress`` (the nodes a tier adds
        over the one below are those; a placement without them is that tier's)."""
        c = self.compiled
        link = float(c.level_cost[level])
        if not c.level_is_nvlink[level]:
            link = max(link, egress)
        return LATENCY_COST_PER_LEVEL * level + self.gang.comm_intensity * link

    # -------------------------------------------------------------- ranking candidates
    def _rank(self, level: int, candidates: np.ndarray, caps: list[ClassCapacity]) -> np.ndarray:
        c = self.compiled
        if level == 0:
            return self._rank_nodes(candidates)
        leftover = np.zeros(candidates.size, dtype=np.int64)
        for cls, cap in zip(self.classes, caps, strict=True):
            weight = max(cls.unit_milli, 1)
            leftover += (cap.unit_cap[candidates] - cls.units) * weight
        order = np.lexsort((candidates, c.domain_free_gpus[candidates], leftover))
        return candidates[order]

    def _rank_nodes(self, nodes: np.ndarray) -> np.ndarray:
        """The best ``CANDIDATES_TRIED`` fitting nodes, best first: by the scorer's score when
        there is one, else by the single-node proxy cost, then by node index."""
        c = self.compiled
        proxy = single_node_costs(
            nodes,
            sum(cls.unit_milli * cls.units for cls in self.classes),
            c.gpu_used_milli,
            c.gpu_usable,
            FRAGMENTATION_WEIGHT,
            self.index.choice_shape,
            c.free_gpu_mask,
            *self._whole_gang_tables(),
            self.gang.comm_intensity,
        )
        if self.scorer is None:
            key = proxy
        else:
            score = self.scorer.score(c, self.classes[0].request, nodes)
            key = -np.asarray(score, dtype=np.float64)
        keep = _smallest(key, CANDIDATES_TRIED)
        order = np.lexsort((nodes[keep], proxy[keep], key[keep]))
        return nodes[keep[order]]

    def _whole_gang_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """GPU-choice tables for the whole gang on one node, when one class asks for GPUs
        (the others, if any, CPU only)."""
        gpu_classes = [c for c in self.classes if c.request.gpu_milli_total]
        if len(gpu_classes) != 1:
            return self.tables(0, 0)
        only = gpu_classes[0]
        return self.tables(only.request.gpus * len(only.members), only.request.gpus)

    def tables(self, gpus: int, member_gpus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """GPU-choice tables for a set of ``gpus`` whole GPUs (members of ``member_gpus``) on
        one node; none (every node priced by fit alone) for shares, CPU-only requests or sets
        beyond the tables."""
        if 0 < gpus <= TABLE_MAX_GPUS:
            return stacked_tables(self.index, gpus, member_gpus)
        n_shapes = max(1, len(self.index.choice_shapes))
        empty = np.zeros((n_shapes, 1))
        return empty, empty, np.zeros(n_shapes, dtype=bool)

    # -------------------------------------------------------------- filling and pricing
    def _best_of(
        self,
        level: int,
        ranked: np.ndarray,
        caps: list[ClassCapacity],
        allowed: np.ndarray | None,
    ) -> Placement | None:
        """Fill the best-ranked candidates and keep the cheapest by :func:`placement_cost`.
        A single member on one node is priced exactly by the ranking proxy, and a scorer's
        order is the policy's choice, so those take the first candidate that fills."""
        exact_rank = level == 0 and (len(self.members) == 1 or self.scorer is not None)
        affordable = max(1, SCORED_MEMBERS_BUDGET // len(self.members))
        wanted = 1 if exact_rank else min(CANDIDATES_SCORED, affordable)
        if level == 0 and not exact_rank and self.classes[0].request.gpu_milli:
            wanted = CANDIDATES_TRIED  # the proxy cannot see the links between shared GPUs
        best: Placement | None = None
        filled = 0
        for domain in ranked[:CANDIDATES_TRIED].tolist():
            members = self._fill(domain, level, caps, allowed)
            if members is None:
                continue
            placement = self._placement(members)
            if best is None or placement.cost.total < best.cost.total:
                best = placement
            filled += 1
            if filled == wanted:
                break
        return best

    def _placement(self, members: list[MemberPlacement]) -> Placement:
        c = self.compiled
        level, domain = lowest_common_domain(c, [m.node_index for m in members])
        return Placement(
            gang=self.gang.name,
            members=tuple(members),
            level=c.level_names[level],
            domain=c.domain_names[domain],
            cost=placement_cost(c, self.gang, members),
            solver="fast",
        )

    def _fill(
        self, domain: int, level: int, caps: list[ClassCapacity], allowed: np.ndarray | None
    ) -> list[MemberPlacement] | None:
        scratch = Scratch(self.compiled)
        slots: dict[int, MemberPlacement] = {}
        multi_node = level > 0
        for i, cls in enumerate(self.classes):
            cap = (
                caps[i]
                if i == 0
                else class_capacity(self.compiled, self.index, cls, scratch.arrays(), allowed)
            )
            if cap.unit_cap[domain] < cls.units:
                return None
            parts = self._parts(domain, level, cls, cap, scratch)
            self._place_parts(parts, cls, cap, scratch, slots, multi_node)
        return [slots[pos] for pos in range(len(self.members))]

    def _parts(
        self, domain: int, level: int, cls: UnitClass, cap: ClassCapacity, scratch: Scratch
    ) -> list[tuple[int, int]]:
        """(node, count) in rank order: units per node, or members per node for units that
        span the nodes of an NVLink clique."""
        g = cls.unit_members
        spread = _Spread(self, cls, scratch)
        if cap.member_total is None:
            return spread(domain, level, cls.units, cap.unit_cap, 0, g)
        c_level = cap.container_level
        if level <= c_level:
            return spread(domain, level, cls.units * g, cap.member_total, 0, 1)
        parts: list[tuple[int, int]] = []
        for clique, units in spread(domain, level, cls.units, cap.unit_cap, c_level, g):
            parts.extend(spread(clique, c_level, units * g, cap.member_total, 0, 1))
        return parts

    def _place_parts(
        self,
        parts: list[tuple[int, int]],
        cls: UnitClass,
        cap: ClassCapacity,
        scratch: Scratch,
        slots: dict[int, MemberPlacement],
        multi_node: bool,
    ) -> None:
        """Give the members of each part their GPUs. Members sharing a node draw from one
        pool chosen for all of them together (the gang's links on that node are the pool's),
        or, for NVLink units inside nodes, one pool per unit inside one NVLink domain."""
        per_part = cls.unit_members if cap.member_total is None else 1
        unit_pools = cls.nvlink and cap.member_total is None
        positions = iter(cls.members)
        rail_penalty = RAIL_MISALIGN_PENALTY / len(self.members) if multi_node else 0.0
        target = 0
        for node, count in parts:
            shape = int(self.index.choice_shape[node])
            for size in [per_part] * count if unit_pools else [per_part * count]:
                pool = self._gpu_pool(node, cls, scratch, size, unit_pools)
                for _ in range(size):
                    pos = next(positions)
                    alone = size == 1
                    placed = self._place_member(
                        pos,
                        node,
                        cls.request,
                        scratch,
                        pool,
                        target if alone else 0,
                        rail_penalty if alone else 0.0,
                    )
                    if cls.request.gpus:
                        pool &= ~sum(1 << g for g in placed.gpus)
                    if not target and cls.request.gpus:
                        target = rail_mask(self.index.choice_shapes[shape], placed.gpus)
                    slots[pos] = placed

    def _gpu_pool(
        self, node: int, cls: UnitClass, scratch: Scratch, members: int, in_nvlink_domain: bool
    ) -> int:
        """GPUs (a mask) that ``members`` members of ``cls`` placed together on ``node`` draw
        from: the best set of all their GPUs at once (inside the best-fitting NVLink domain of
        the node for a node-local NVLink unit), or for GPU shares the best-linked GPUs with
        room for all of them."""
        if cls.request.gpu_milli:
            return self._share_pool(node, cls.request, scratch, members)
        free = scratch.free_mask(node)
        if in_nvlink_domain:
            free &= self._nvlink_domain(node, cls, free)
        need = members * cls.request.gpus
        if members == 1 or not need or free.bit_count() == need:
            return free
        shape = int(self.index.choice_shape[node])
        gpus = cls.request.gpus
        return sum(1 << g for g in choose_whole_gpus(self.index, shape, free, need, 0, 0.0, gpus))

    def _share_pool(self, node: int, request: MemberRequest, scratch: Scratch, members: int) -> int:
        """The GPUs ``members`` shares will use: grown from each seed GPU by the best link
        until they have room for all, keeping the set whose worst link is lowest (then the
        fewest and busiest GPUs). All usable GPUs when one share, or links do not matter."""
        used = scratch.used_row(node)
        usable = self.compiled.gpu_usable[node]
        room = np.where(usable, (MILLI_PER_GPU - used) // request.gpu_milli, 0)
        gpus = np.flatnonzero(room > 0)
        if members == 1 or self.gang.comm_intensity == 0 or gpus.size <= 1:
            return sum(1 << int(g) for g in gpus)
        pair = self.compiled.pair_cost_matrix(node)
        best_key, best = None, gpus
        for seed in gpus.tolist():
            chosen, total = [seed], int(room[seed])
            while total < members:
                rest = np.array([g for g in gpus.tolist() if g not in chosen])
                link = pair[np.ix_(rest, chosen)].max(axis=1)
                pick = int(rest[np.lexsort((rest, -used[rest], link))[0]])
                chosen.append(pick)
                total += int(room[pick])
            worst = float(pair[np.ix_(chosen, chosen)].max()) if len(chosen) > 1 else 0.0
            key = (worst, len(chosen), -int(used[chosen].sum()))
            if best_key is None or key < best_key:
                best_key, best = key, np.array(chosen)
        return sum(1 << int(g) for g in best)

    def _nvlink_domain(self, node: int, cls: UnitClass, free: int) -> int:
        """The best-fitting NVLink domain of the node with room for one unit."""
        best, best_free = 0, 0
        for dom in self.index.nvlink_masks[node].tolist():
            room = (free & dom).bit_count()
            if room >= cls.unit_gpus and (not best or room < best_free):
                best, best_free = dom, room
        return best

    def _place_member(
        self,
        pos: int,
        node: int,
        request: MemberRequest,
        scratch: Scratch,
        pool: int,
        target_rails: int,
        rail_penalty: float,
    ) -> MemberPlacement:
        c = self.compiled
        if request.gpus:
            gpus = choose_whole_gpus(
                self.index,
                int(self.index.choice_shape[node]),
                pool,
                request.gpus,
                target_rails,
                rail_penalty,
            )
            milli = MILLI_PER_GPU
        elif request.gpu_milli:
            gpus = (self._fractional_gpu(node, request, scratch, pool),)
            milli = request.gpu_milli
        else:
            gpus, milli = (), 0
        scratch.take(node, gpus, milli, request)
        member = self.members[pos]
        return MemberPlacement(
            member=member.name,
            node=c.node_names[node],
            node_index=node,
            gpus=gpus,
            gpu_milli=milli,
            cpu_milli=request.cpu_milli,
            memory_mib=request.memory_mib,
            rank=pos,
        )

    def _fractional_gpu(
        self, node: int, request: MemberRequest, scratch: Scratch, pool: int
    ) -> int:
        used = scratch.used_row(node)
        usable = self.compiled.gpu_usable[node]
        if self.scorer is not None:
            pick = self.scorer.pick_gpu(self.compiled, request, node)
            if (
                pick is not None
                and 0 <= pick < used.size
                and usable[pick]
                and used[pick] + request.gpu_milli <= MILLI_PER_GPU
            ):
                return int(pick)
        near = sorted(scratch.gang_gpus.get(node, ()))
        pair = self.compiled.pair_cost_matrix(node) if self.gang.comm_intensity > 0 else None
        in_pool = usable & (np.left_shift(1, np.arange(usable.size)) & pool > 0)
        return choose_fractional_gpu(used, in_pool, request.gpu_milli, pair, near)

    # -------------------------------------------------------------- why not
    def _explain(self, caps: list[ClassCapacity], stop: int) -> Unplaceable:
        c = self.compiled
        top = c.n_levels - 1
        for cls in self.classes:
            if not static_mask(c, self.index, cls.request).any():
                constraint, why = explain_no_node(c, self.index, cls.request)
                return self._unplaceable(f"{_describe(cls)}: {why}", constraint, None)
        for cls, cap in zip(self.classes, caps, strict=True):
            lo, hi = c.level_domain_range[top]
            room = int(cap.unit_cap[lo:hi].max())
            if room < cls.units:
                return self._short_everywhere(cls, cap, room)
        for cls, cap in zip(self.classes, caps, strict=True):
            lo, hi = c.level_domain_range[stop]
            room = int(cap.unit_cap[lo:hi].max())
            if room < cls.units:
                level = c.level_names[stop]
                return self._unplaceable(
                    f"required_level {level}: no {level} domain has "
                    f"{self._amount(cls, cls.units)}; best {level} has "
                    f"{self._amount(cls, room, short=True)}",
                    "required_level",
                    level,
                )
        level = c.level_names[stop]
        return self._unplaceable(
            f"the member classes ({'; '.join(_describe(k) for k in self.classes)}) each fit "
            f"but the fast path packed them together in no {level} domain it tried",
            "packing",
            level,
        )

    def _short_everywhere(self, cls: UnitClass, cap: ClassCapacity, room: int) -> Unplaceable:
        """The whole cluster lacks room for a class: say whether NVLink grouping, cpu/memory
        or GPUs are what is short."""
        c = self.compiled
        root = c.level_names[-1]
        members = int(cap.member_cap.sum())
        need_members = len(cls.members)
        if cls.nvlink and members >= need_members:
            where = c.level_names[cap.container_level] if cap.container_level else "node"
            return self._unplaceable(
                f"nvlink_group {cls.unit_members}: the cluster has room for {members} members of "
                f"{_describe(cls)} but only {room} of the {cls.units} NVLink groups fit inside "
                f"one NVLink domain ({where})",
                "nvlink_group",
                where,
            )
        request = cls.request
        eligible = static_mask(c, self.index, request)
        if request.cpu_milli or request.memory_mib:
            gpu_only = MemberRequest(
                gpus=request.gpus,
                gpu_milli=request.gpu_milli,
                gpu_products=request.gpu_products,
                node_selector=request.node_selector,
                tolerations=request.tolerations,
            )
            gpu_room = int(member_capacity(c, gpu_only, eligible, FreeArrays.of(c)).sum())
            if gpu_room >= need_members and request.gpu_milli_total:
                return self._unplaceable(
                    f"cpu/memory: nodes have free GPUs for {gpu_room} members of "
                    f"{_describe(cls)} but cpu or memory for only {members}",
                    "cpu_memory",
                    root,
                )
        scattered = fragmented_reason(c, self.index, cls, room, FreeArrays.of(c))
        if scattered is not None:
            return self._unplaceable(scattered, "fragmented", root)
        filtered = "" if eligible.all() else f" on the {int(eligible.sum())} nodes it may use"
        return self._unplaceable(
            f"capacity: the cluster has {self._amount(cls, room, short=True)}{filtered}; the "
            f"gang needs {self._amount(cls, cls.units)}",
            "capacity",
            root,
        )

    def _amount(self, cls: UnitClass, units: int, short: bool = False) -> str:
        eligible = static_mask(self.compiled, self.index, cls.request)
        whole_node_gpus = int(self.compiled.gpu_usable[eligible].sum(axis=1).max())
        return _amount(cls, units, whole_node_gpus, short)

    def _unplaceable(self, reason: str, constraint: str, level: str | None) -> Unplaceable:
        return Unplaceable(self.gang.name, reason, constraint, level)


@dataclass
class _Spread:
    """Splits a count of units (or members) of one class over a domain's subtree."""

    search: _Search
    cls: UnitClass
    scratch: Scratch

    def __call__(
        self,
        domain: int,
        level: int,
        need: int,
        caps: np.ndarray,
        stop_level: int,
        item_members: int,
    ) -> list[tuple[int, int]]:
        """Split ``need`` items (of ``item_members`` members each) over ``domain``'s
        descendants at ``stop_level``."""
        if level == stop_level:
            return [(domain, need)]
        s = self.search
        kids = s.index.children(domain)
        kid_caps = caps[kids]
        if s.scorer is not None and level == 1:
            fitting = np.flatnonzero(kid_caps > 0)
            score = np.asarray(
                s.scorer.score(s.compiled, self.cls.request, kids[fitting]), dtype=np.float64
            )
            order = fitting[np.lexsort((kids[fitting], -kid_caps[fitting], -score))]
            picks = _take_in_order(kid_caps, order, need)
        elif level == 1:
            tie = self._node_costs(kids, item_members)
            if not self.cls.request.gpu_milli_total:
                # room for cpu is not what the cost function prices: among the nodes with room
                # for all of it, the one the placement leaves least stranded wins
                kid_caps = np.minimum(kid_caps, need)
            picks = _fewest_children(kid_caps, tie, kids, need)
        else:
            picks = _fewest_children(kid_caps, s.compiled.domain_free_gpus[kids], kids, need)
        out: list[tuple[int, int]] = []
        for pos, count in picks:
            out.extend(self(int(kids[pos]), level - 1, count, caps, stop_level, item_members))
        return out

    def _node_costs(self, nodes: np.ndarray, item_members: int) -> np.ndarray:
        """Single-node proxy cost of one item on each node: best fit, then the NUMA and
        leftover-link penalties of its GPU set, so that nodes of equal room are told apart by
        what taking them would cost (links between nodes are the level's, whichever node).
        A node the gang already uses costs a CPU-only member nothing more."""
        s = self.search
        c = s.compiled
        request = self.cls.request
        cost = single_node_costs(
            nodes,
            request.gpu_milli_total * item_members,
            c.gpu_used_milli,
            c.gpu_usable,
            FRAGMENTATION_WEIGHT,
            s.index.choice_shape,
            c.free_gpu_mask,
            *s.tables(request.gpus * item_members, request.gpus),
            0.0,
        )
        if not request.gpu_milli_total and self.scratch.used:
            cost[np.isin(nodes, list(self.scratch.used))] = 0.0
        return cost


def fragmented_reason(
    compiled: CompiledCluster, index: ClusterIndex, cls: UnitClass, room: int, free: FreeArrays
) -> str | None:
    """Why ``cls`` does not fit although its GPUs are free, or None: the nodes it may use have
    at least the free GPUs (or milli-GPU) all its members need, but scattered, so that only
    ``room`` members fit (a full cluster is short of capacity; this one is fragmented, and
    moving or finishing small jobs would help). Not for NVLink groups, which have a reason of
    their own."""
    request = cls.request
    if cls.nvlink or not request.gpu_milli_total:
        return None
    eligible = static_mask(compiled, index, request)
    members = len(cls.members)
    if request.gpus:
        counts = free.free_gpu_count[eligible]
        have, need = int(counts.sum()), request.gpus * members
        most = f"the most on one node is {int(counts.max(initial=0))}"
        unit = "GPUs"
    else:
        used = free.gpu_used_milli[eligible]
        spare = np.where(compiled.gpu_usable[eligible], MILLI_PER_GPU - used, 0).clip(0)
        have, need = int(spare.sum()), request.gpu_milli * members
        most = f"the most on one GPU is {int(spare.max(initial=0))}"
        unit = "milli-GPU"
    if have < need:
        return None
    return (
        f"fragmented: {have} {unit} are free on the nodes it may use, enough for the {need} "
        f"its {members} members of {_describe(cls)} need, but scattered: room for {room} of "
        f"them ({most})"
    )


def _smallest(key: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` smallest keys (lowest positions among equal keys), in
    position order; linear time, unlike sorting every fitting node."""
    if key.size <= count:
        return np.arange(key.size)
    cut = np.partition(key, count - 1)[count - 1]
    below = np.flatnonzero(key < cut)
    equal = np.flatnonzero(key == cut)[: count - below.size]
    return np.sort(np.concatenate([below, equal]))


def _fewest_children(
    caps: np.ndarray, busy: np.ndarray, ids: np.ndarray, need: int
) -> list[tuple[int, int]]:
    """Positions and counts covering ``need`` with the fewest children: the largest first
    until the rest fits in one, then the best-fitting child for the rest (busier ones first
    on ties, then lower ids). Vectorised: flat domains may have thousands of children."""
    order = np.lexsort((ids, busy, -caps))
    ranked = caps[order]
    before = np.concatenate(([0], np.cumsum(ranked)[:-1]))
    remaining = need - before
    stop = int(np.flatnonzero(ranked >= remaining)[0])
    rest = remaining[stop]
    tail = -ranked[stop:]
    fitting_end = stop + int(np.searchsorted(tail, -rest, side="right"))
    tightest = ranked[fitting_end - 1]
    pick = stop + int(np.searchsorted(tail, -tightest, side="left"))
    picks = [(int(order[i]), int(ranked[i])) for i in range(stop)]
    picks.append((int(order[pick]), int(rest)))
    return picks


def _take_in_order(caps: np.ndarray, order: np.ndarray, need: int) -> list[tuple[int, int]]:
    """Fill children in the given order, each as far as it goes."""
    ranked = caps[order]
    before = np.concatenate(([0], np.cumsum(ranked)[:-1]))
    take = np.clip(np.minimum(ranked, need - before), 0, None)
    return [(int(order[i]), int(take[i])) for i in np.flatnonzero(take)]


def _describe(cls: UnitClass) -> str:
    """What one member asks for: "8 NVIDIA-H100-80GB-HBM3 GPUs", "250 milli-GPU", ..."""
    r = cls.request
    products = f" {'/'.join(r.gpu_products)}" if r.gpu_products else ""
    if r.gpus:
        return f"{r.gpus}{products} GPU{'s' if r.gpus > 1 else ''}"
    if r.gpu_milli:
        return f"{r.gpu_milli} milli-GPU{products}"
    return f"cpu {r.cpu_milli}m, memory {r.memory_mib}Mi"


def _amount(cls: UnitClass, units: int, whole_node_gpus: int, short: bool = False) -> str:
    """ "16 free nodes of 8 GPUs" when a member takes a whole node (``whole_node_gpus``, the
    GPU count of the largest node it may use), else "room for 3 members of 2 GPUs"."""
    if cls.unit_members > 1:
        return f"room for {units} NVLink groups of {cls.unit_members} x {_describe(cls)}"
    if cls.request.gpus and cls.request.gpus == whole_node_gpus:
        return f"{units} free nodes" if short else f"{units} free nodes of {_describe(cls)}"
    if short:
        return f"room for {units}"
    return f"room for {units} members of {_describe(cls)}"


def search_placement(
    gang: Gang,
    members: Sequence[Member],
    compiled: CompiledCluster,
    scorer: PlacementScorer | None = None,
) -> PlacementResult:
    """Place ``members`` (the whole gang, or its quorum) by hierarchical best fit."""
    index = cluster_index(compiled)
    classes = unit_classes(members, gang.nvlink_group)
    return _Search(compiled, index, gang, members, classes, scorer).run()


__all__ = [
    "Scratch",
    "UnitClass",
    "class_capacity",
    "fragmented_reason",
    "search_placement",
    "unit_classes",
]
