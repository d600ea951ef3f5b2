"""The cost terms of the CP-SAT placement model (:mod:`scheduler.exact_model`), each the
matching term of :func:`scheduler.cost.placement_cost` in integer units of ``1 / COST_SCALE``:
communication, fragmentation with leftover links, misalignment (NUMA splits, rail share), and
the scorer's tie-break below every cost difference."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from ortools.sat.python import cp_model
from phalanx.scheduler.cost import (
    FRAGMENTATION_WEIGHT,
    LEFTOVER_LINK_WEIGHT,
    NUMA_SPLIT_PENALTY,
    RAIL_MISALIGN_PENALTY,
    ideal_leftover_table,
)
from phalanx.scheduler.exact_model_vars import RANK_TIE, ModelVariables, scaled
from phalanx.scheduler.exact_problem import CandidateDomain, Prefix
from phalanx.topology.model import MILLI_PER_GPU


class CostTerms(ModelVariables):
    """Adds the cost terms to the model's variables (see :meth:`ModelVariables._add_cost`)."""

    def _communication(self) -> None:
        p = self.problem
        c = p.compiled
        intensity = p.gang.comm_intensity
        if intensity <= 0:
            return
        m = self.model
        weights = {}
        for dom in p.domains:
            if dom.level > 0:
                weights[dom.domain] = scaled(intensity * float(c.level_cost[dom.level]))
        egress = {n: scaled(intensity * float(c.node_egress_cost[n])) for n in p.nodes}
        pair_ub = 0
        for dom in p.domains:
            if dom.level == 0:
                pair_ub = max(pair_ub, self._pair_upper(dom.domain, intensity))
        upper = max([0, pair_ub, *weights.values(), *egress.values()])
        comm = m.new_int_var(0, upper, "comm")
        for dom_id, w in weights.items():
            m.add(comm >= w * self.d[dom_id])
        network = [d for d in p.domains if d.level > 0 and not c.level_is_nvlink[d.level]]
        if network:
            floor = min(weights[d.domain] for d in network)
            local = [
                self.d[d.domain] for d in p.domains if d.level == 0 or c.level_is_nvlink[d.level]
            ]
            local_sum = sum(local) if local else 0
            for n, e in egress.items():
                if e > floor:
                    m.add(comm >= e * self.used[n] - e * local_sum)
        for dom in p.domains:
            if dom.level == 0:
                self._single_node_communication(comm, dom, intensity)
        self._add_cost(comm, upper)

    def _touchable_gpus(self, n: int) -> list[int]:
        return sorted(self.touchable[n])

    def _pair_upper(self, n: int, intensity: float) -> int:
        gpus = self._touchable_gpus(n)
        if len(gpus) < 2:
            return 0
        pair = self.problem.compiled.pair_cost_matrix(n)[np.ix_(gpus, gpus)]
        return scaled(intensity * float(pair[np.isfinite(pair)].max()))

    def _single_node_communication(
        self, comm: cp_model.IntVar, dom: CandidateDomain, intensity: float
    ) -> None:
        """Worst link between two GPUs the gang uses, when the gang sits on this one node."""
        m = self.model
        n = dom.domain
        gpus = self._touchable_gpus(n)
        if len(gpus) < 2:
            return
        pair = self.problem.compiled.pair_cost_matrix(n)
        costs = {
            (g, h): scaled(intensity * float(pair[g, h]))
            for i, g in enumerate(gpus)
            for h in gpus[i + 1 :]
        }
        here = self.d[dom.domain]
        if len(set(costs.values())) == 1:
            cost = next(iter(costs.values()))
            several = m.new_bool_var(f"several{n}")
            m.add(sum(self.taken(n, g) for g in gpus) <= 1 + (len(gpus) - 1) * several)
            m.add(comm >= cost * (several + here - 1))
            return
        for (g, h), cost in costs.items():
            m.add(comm >= cost * (self.taken(n, g) + self.taken(n, h) + here - 2))

    def _fragmentation(self) -> None:
        p = self.problem
        c = p.compiled
        m = self.model
        weight = scaled(FRAGMENTATION_WEIGHT)
        ideal_table = ideal_leftover_table(c)
        for n in p.nodes:
            usable = c.gpu_usable[n]
            capacity = int(usable.sum()) * MILLI_PER_GPU
            if capacity == 0:
                continue
            free = int((MILLI_PER_GPU - c.gpu_used_milli[n][usable]).sum())
            pats = [i for i in self.by_node[n] if p.patterns[i].gpus]
            taken = self.milli_taken(n)
            if 0 < free < capacity:
                touch = self.used[n]
            elif free == capacity and pats:
                touch = m.new_bool_var(f"gputouch{n}")
            else:
                touch = None
            if touch is not None:
                m.add(taken <= self._most_taken(n, free) * touch)
                frag = m.new_int_var(0, weight, f"frag{n}")
                m.add(capacity * frag >= weight * (free - taken)).only_enforce_if(touch)
                self._add_cost(frag, weight)
            self._leftover_links(n, ideal_table[c.node_shape[n]])

    def _most_taken(self, n: int, free: int) -> int:
        """Most GPU milli the gang's members can take on node ``n`` together: a subset sum of
        their whole-GPU counts within the node's free GPUs (the free milli when fractional
        members could fill the gaps). As a cut, ``taken <= most * used`` keeps the LP from
        filling a node with fractions of members that cannot fill it."""
        p = self.problem
        classes = {p.patterns[i].member_class for i in self.by_node[n] if p.patterns[i].gpus}
        if any(p.classes[c].request.is_fractional for c in classes):
            return free
        whole = int(p.compiled.free_gpu_count[n])
        reachable = np.zeros(whole + 1, dtype=bool)
        reachable[0] = True
        for c in classes:
            k = p.classes[c].request.gpus
            copies = min(max(pre.class_counts[c] for pre in p.prefixes), int(p.classes[c].room[n]))
            for _ in range(copies):
                shifted = np.zeros_like(reachable)
                shifted[k:] = reachable[:-k] if k else reachable
                reachable |= shifted
        return int(np.flatnonzero(reachable).max()) * MILLI_PER_GPU

    def _leftover_links(self, n: int, ideal: np.ndarray) -> None:
        """The leftover-link term: worst link among the GPUs left wholly free, less the best
        a set of that size could have had, scaled by the node's worst link."""
        p = self.problem
        c = p.compiled
        m = self.model
        usable = np.flatnonzero(c.gpu_usable[n])
        free = c.free_gpus(n)
        if len(free) < 2:
            return
        pair = c.pair_cost_matrix(n)
        worst_node = float(pair[np.ix_(usable, usable)].max())
        if worst_node <= 0:
            return
        scale = LEFTOVER_LINK_WEIGHT / worst_node
        q = {
            (g, h): scaled(scale * float(pair[g, h]))
            for i, g in enumerate(free)
            for h in free[i + 1 :]
        }
        table = [scaled(scale * float(ideal[k])) if k >= 2 else 0 for k in range(len(free) + 1)]
        if len(set(q.values())) == 1 and all(v == next(iter(q.values())) for v in table[2:]):
            return
        touchable = self.touchable[n]
        stays = {g: (1 - self.taken(n, g)) if g in touchable else 1 for g in free}
        if all(isinstance(v, int) for v in stays.values()):
            constant = max(q.values()) - table[len(free)]
            if constant:
                self._add_cost(constant * self.used[n], constant, constant)
            return
        top = max(q.values())
        left = m.new_int_var(0, top, f"left{n}")
        for (g, h), cost in q.items():
            m.add(left >= cost * (stays[g] + stays[h] - 1))
        count = m.new_int_var(0, len(free), f"freecount{n}")
        m.add(count == sum(stays.values()))
        best = m.new_int_var(min(table), max(table), f"ideal{n}")
        m.add_element(count, table, best)
        term = m.new_int_var(-max(table), top, f"leftover{n}")
        m.add(term == left - best).only_enforce_if(self.used[n])
        m.add(term == 0).only_enforce_if(self.used[n].Not())
        self._add_cost(term, top, -max(table))

    def _misalignment(self) -> None:
        p = self.problem
        m = self.model
        numa = scaled(NUMA_SPLIT_PENALTY)
        split = [i for i, pat in enumerate(p.patterns) if pat.numa_split]
        if split:
            most = max(pre.placed for pre in p.prefixes)
            self._add_cost(sum(numa * self.y[i] for i in split), numa * most)
        gpu_members = [self._gpu_members(pre) for pre in p.prefixes]
        if max(gpu_members) < 2 or not any(dom.level > 0 for dom in p.domains):
            return
        rail_weight = scaled(RAIL_MISALIGN_PENALTY)
        by_rails: dict[frozenset[int], list[int]] = defaultdict(list)
        for i, pat in enumerate(p.patterns):
            if pat.gpus:
                by_rails[pat.rails].append(i)
        most = max(gpu_members)
        pick, shares = [], []
        for r, pats in enumerate(by_rails.values()):
            chosen = m.new_bool_var(f"rails{r}")
            share = m.new_int_var(0, most, f"rail_share{r}")
            m.add(share <= sum(self.y[i] for i in pats))
            m.add(share <= most * chosen)
            pick.append(chosen)
            shares.append(share)
        m.add_exactly_one(pick)
        main = sum(shares)
        rail = m.new_int_var(0, rail_weight, "rail")
        spread = m.new_bool_var("multi_node")
        m.add(spread + self.single_node == 1)
        for j, members in enumerate(gpu_members):
            if members < 2:
                continue
            lits = [spread] if self.z is None else [spread, self.z[j]]
            m.add(members * rail >= rail_weight * (members - main)).only_enforce_if(lits)
        self._add_cost(rail, rail_weight)

    def _gpu_members(self, prefix: Prefix) -> int:
        """Members of the prefix that use a GPU: only they count for rail alignment."""
        classes = self.problem.classes
        return sum(
            n
            for n, cls in zip(prefix.class_counts, classes, strict=True)
            if cls.request.gpu_milli_total
        )

    def _tie_break(self, penalties: dict[tuple[int, int], int]) -> None:
        """Below every cost difference: prefer the nodes a scorer ranks higher."""
        terms = [
            penalties.get((pat.member_class, pat.node), 0) * self.y[i]
            for i, pat in enumerate(self.problem.patterns)
        ]
        most = max(pre.placed for pre in self.problem.prefixes)
        largest = max(penalties.values(), default=0) * most
        if largest:
            self._lexicographic.append((RANK_TIE, sum(terms), largest))
