"""The fast path: hierarchical best-fit search for a gang's placement.

1. Members are grouped into *units*: ``nvlink_group`` consecutive members that must share an
   NVLink domain (one member each without NVLink groups), and units of equal request and size
   into *classes*.
2. Every node's capacity in members (and units) comes from one kernel pass over the free
   arrays; summing it up the domain tree gives every domain's capacity in member-sized chunks
   (on first use: a gang that fits on one node never needs the sums).
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
   that prices each exactly as the cost function would for one member, keeping the best few
   in the same pass (:func:`scheduler.kernels.best_fitting_nodes`). The first few
   (``CANDIDATES_SCORED``, fewer for big gangs) are filled and priced with
   :func:`scheduler.cost.placement_cost`, and the cheapest over all levels and tiers wins.
6. Inside a domain, children are filled touching the fewest of them: the largest first until
   the remainder fits in one child, which is then the best-fitting one (nodes of equal room
   told apart by what their GPU sets would cost; :mod:`scheduler.spread`); recursively down
   to nodes, where :mod:`scheduler.gpu_choice` picks the GPUs.

One member of whole GPUs skips all of this: the node ranked first in step 5 is read from the
nodes grouped by free state (:mod:`scheduler.free_state_buckets`), with no pass over every
node; with a scorer that has ``best_nodes_in_groups`` (the topology scorer's groups,
:mod:`policies.scoring.room_groups`), from its groups. With a scorer (kube-scheduler's score
phase), single nodes are ranked by its score (a one-class gang's by its one-pass
``best_nodes`` where it has one) and a domain's nodes are filled in its order; domain choice
above the node stays with the topology search.

Unit classes live in :mod:`scheduler.unit_classes`, scratch state in :mod:`scheduler.scratch`,
failure reasons in :mod:`scheduler.why_unplaced`; pricing is in :mod:`scheduler.cost_kernels`.
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
    gpus_mask,
    priced_domain,
)
from phalanx.scheduler.eligibility import FreeArrays, static_key, static_mask
from phalanx.scheduler.free_state_buckets import best_single_node
from phalanx.scheduler.gang import Gang, Member, MemberRequest
from phalanx.scheduler.gpu_choice import (
    TABLE_MAX_GPUS,
    choose_fractional_gpu,
    choose_whole_gpus,
    rail_mask,
    stacked_tables,
)
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.kernels import best_fitting_nodes, single_node_costs
from phalanx.scheduler.placement import MemberPlacement, Placement, PlacementResult, Unplaceable
from phalanx.scheduler.scratch import Scratch
from phalanx.scheduler.spread import Spread, smallest
from phalanx.scheduler.unit_classes import ClassCapacity, UnitClass, class_capacity, unit_classes
from phalanx.scheduler.why_unplaced import WhyUnplaced
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

CANDIDATES_SCORED = 3
"""Candidate domains (or nodes) at the winning level that are filled and priced in full."""
SCORED_MEMBERS_BUDGET = 64
"""Fewer candidates are priced for big gangs (128 members: one); best fit ranks them well."""
CANDIDATES_TRIED = 16
"""Most candidates tried at one level when fills fail (classes of a mixed gang competing for
the same nodes); a single-class fill never fails once the capacity check passed."""


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
class Search:
    compiled: CompiledCluster
    index: ClusterIndex
    gang: Gang
    members: Sequence[Member]
    classes: list[UnitClass]
    scorer: PlacementScorer | None

    def run(self) -> PlacementResult:
        single = self._single_member_by_groups()
        if single is not None:
            return single
        c = self.compiled
        caps = self._capacities(None)
        top = c.n_levels - 1
        stop = c.level_index(self.gang.required_level) if self.gang.required_level else top
        first, candidates = 0, self._ranked_nodes(caps)
        while candidates.size == 0 and first < stop:
            first += 1
            candidates = self._fitting(first, caps)
        if candidates.size == 0:
            return self._explain(caps, stop)
        preferred = self.gang.preferred_level
        ceiling = max(first, c.level_index(preferred)) if preferred else stop
        best = None
        if first == 0:
            best = self._best_of(0, candidates, caps, None)
        if len(self.members) > 1:
            for tier in self._tiers(caps):
                best = self._climb(tier, max(first, 1), ceiling, stop, best)
        return best if best is not None else self._explain(caps, stop)

    def _single_member_by_groups(self) -> Placement | None:
        """One member of whole GPUs on the node :meth:`_ranked_nodes` ranks first, read from
        nodes grouped by free state: :mod:`scheduler.free_state_buckets` without a scorer,
        else the scorer's ``best_nodes_in_groups`` (tie order as :meth:`_best_scored_nodes`).
        None when that does not apply or finds nothing (the full search then runs)."""
        (cls,) = self.classes if len(self.members) == 1 else (None,)
        if cls is None or cls.nvlink or cls.request.gpu_milli or not cls.request.gpus:
            return None
        c, request = self.compiled, cls.request
        eligible = static_mask(c, self.index, request)
        if self.scorer is None:
            tables = self._whole_gang_tables()
            node = best_single_node(
                c, self.index, request, eligible, tables, self.gang.comm_intensity
            )
        else:
            in_groups = getattr(self.scorer, "best_nodes_in_groups", None)
            best = None if in_groups is None else in_groups(c, request, eligible, CANDIDATES_TRIED)
            if best is not None and best.size > 1:
                best = best[np.lexsort((best, self._proxy(best)))]
            node = int(best[0]) if best is not None and best.size else None
        if node is None:
            return None
        slots: dict[int, MemberPlacement] = {}
        self._place_parts([(node, 1)], cls, False, Scratch(c), slots, multi_node=False)
        return self._placement([slots[0]])

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
            room = cap.node_units if level == 0 else cap.unit_cap[lo:hi]
            fits &= room >= cls.units
        return lo + np.flatnonzero(fits)

    def _ranked_nodes(self, caps: list[ClassCapacity]) -> np.ndarray:
        """The best ``CANDIDATES_TRIED`` nodes with room for the whole gang, best first (empty
        when none has): without a scorer one compiled pass over the nodes
        (:func:`scheduler.kernels.best_fitting_nodes`), else, or where a proxy cost is NaN,
        the fitting nodes ranked by :meth:`_rank_nodes`."""
        if self.scorer is None:
            c = self.compiled
            node_units = (
                caps[0].node_units.reshape(1, -1)
                if len(caps) == 1
                else np.stack([cap.node_units for cap in caps])
            )
            ranked, _, saw_nan = best_fitting_nodes(
                node_units,
                np.array([cls.units for cls in self.classes], dtype=np.int64),
                # one member: the first fitting node is the answer (its fill cannot fail)
                1 if len(self.members) == 1 else CANDIDATES_TRIED,
                self._gang_milli(),
                c.gpu_used_milli,
                c.gpu_usable,
                FRAGMENTATION_WEIGHT,
                self.index.choice_shape,
                c.free_gpu_mask,
                *self._whole_gang_tables(),
                self.gang.comm_intensity,
            )
            if not saw_nan:
                return ranked
        best = self._best_scored_nodes(caps)
        if best is not None:
            return best
        candidates = self._fitting(0, caps)
        return self._rank_nodes(candidates) if candidates.size else candidates

    def _best_scored_nodes(self, caps: list[ClassCapacity]) -> np.ndarray | None:
        """One class fills any node with room, so only the first node ranked is taken: the
        nodes :meth:`_rank_nodes` ranks first, from the scorer's one-pass ``best_nodes``."""
        best_nodes = getattr(self.scorer, "best_nodes", None)
        if best_nodes is None or len(self.classes) != 1:
            return None
        cls, units = self.classes[0], caps[0].node_units
        best = best_nodes(self.compiled, cls.request, units, cls.units, CANDIDATES_TRIED)
        if best is None or best.size <= 1:
            return best
        return best[np.lexsort((best, self._proxy(best)))]

    def _gang_milli(self) -> int:
        return sum(cls.unit_milli * cls.units for cls in self.classes)

    def _tiers(self, caps: list[ClassCapacity]) -> list[_EgressTier]:
        """The egress tiers of the nodes the gang may use, cheapest first, the last one
        unrestricted. Without communication egress costs nothing: one tier. The distinct
        egress costs are static per cluster and filters, so kept in the cluster index."""
        c = self.compiled
        key = ("egress tiers", *sorted({static_key(cls.request) for cls in self.classes}))
        egress = self.index.derived.get(key)
        if egress is None:
            eligible = np.zeros(c.n_nodes, dtype=bool)
            for cls in self.classes:
                eligible |= static_mask(c, self.index, cls.request)
            egress = self.index.derived[key] = np.unique(c.node_egress_cost[eligible])
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
        if self.scorer is None:
            key = self._proxy(nodes)
            keep = smallest(key, CANDIDATES_TRIED)
            proxy = key[keep]
        else:
            score = self.scorer.score(c, self.classes[0].request, nodes)
            key = -np.asarray(score, dtype=np.float64)
            keep = smallest(key, CANDIDATES_TRIED)
            proxy = self._proxy(nodes[keep])  # only the kept nodes' ties need it
        order = np.lexsort((nodes[keep], proxy, key[keep]))
        return nodes[keep[order]]

    def _proxy(self, nodes: np.ndarray) -> np.ndarray:
        """The single-node proxy cost of each of ``nodes`` (:func:`single_node_costs`)."""
        c = self.compiled
        return single_node_costs(
            nodes,
            self._gang_milli(),
            c.gpu_used_milli,
            c.gpu_usable,
            FRAGMENTATION_WEIGHT,
            self.index.choice_shape,
            c.free_gpu_mask,
            *self._whole_gang_tables(),
            self.gang.comm_intensity,
        )

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
        level, domain, cost = priced_domain(c, self.gang, members)
        return Placement(
            gang=self.gang.name,
            members=tuple(members),
            level=c.level_names[level],
            domain=c.domain_names[domain],
            cost=cost,
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
            if cap.units_in(domain) < cls.units:
                return None
            parts = self._parts(domain, level, cls, cap, scratch)
            self._place_parts(parts, cls, cap.member_total is not None, scratch, slots, multi_node)
        return [slots[pos] for pos in range(len(self.members))]

    def _parts(
        self, domain: int, level: int, cls: UnitClass, cap: ClassCapacity, scratch: Scratch
    ) -> list[tuple[int, int]]:
        """(node, count) in rank order: units per node, or members per node for units that
        span the nodes of an NVLink clique."""
        g = cls.unit_members
        if level == 0:  # one node holds them all (what the spread below returns for a node)
            return [(domain, cls.units if cap.member_total is None else cls.units * g)]
        spread = Spread(self, cls, scratch)
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
        clique_spanning: bool,
        scratch: Scratch,
        slots: dict[int, MemberPlacement],
        multi_node: bool,
    ) -> None:
        """Give the members of each part their GPUs. Members sharing a node draw from one
        pool chosen for all of them together (the gang's links on that node are the pool's),
        or, for NVLink units inside nodes, one pool per unit inside one NVLink domain."""
        per_part = 1 if clique_spanning else cls.unit_members
        unit_pools = cls.nvlink and not clique_spanning
        positions = iter(cls.members)
        rail_penalty = RAIL_MISALIGN_PENALTY / len(self.members) if multi_node else 0.0
        target = 0
        # Whole-GPU members of the last class draw only from their part's pool, chosen before
        # any of them: their takes are read by no one unless a node has several pools.
        unread = (
            cls is self.classes[-1]
            and not cls.request.gpu_milli
            and not unit_pools
            and len({node for node, _ in parts}) == len(parts)
        )
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
                        record=not unread and len(slots) < len(self.members) - 1,
                    )
                    if cls.request.gpus:
                        pool &= ~gpus_mask(placed.gpus)
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
        record: bool = True,
    ) -> MemberPlacement:
        """Place one member; ``record`` its take in ``scratch`` unless it is the fill's last
        member, after which nothing reads the scratch state."""
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
        if record:
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
        return WhyUnplaced(self.compiled, self.index, self.gang, self.classes).explain(caps, stop)


def search_placement(
    gang: Gang,
    members: Sequence[Member],
    compiled: CompiledCluster,
    scorer: PlacementScorer | None = None,
) -> PlacementResult:
    """Place ``members`` (the whole gang, or its quorum) by hierarchical best fit."""
    index = cluster_index(compiled)
    classes = unit_classes(members, gang.nvlink_group)
    return Search(compiled, index, gang, members, classes, scorer).run()


__all__ = ["search_placement"]
