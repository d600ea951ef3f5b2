"""The CP-SAT model of a reduced placement problem (:mod:`scheduler.exact_problem`).

Its objective is :func:`scheduler.cost.placement_cost`, term by term, on the modelled nodes
and GPU sets, in integer units of ``1 / COST_SCALE``:

- **lowest common domain**: one candidate domain is chosen; every used node lies in it and,
  above the node level, at least two of its children are used, so it *is* the lowest common
  domain (no monotonicity of level costs is assumed);
- **communication**: the chosen level's cost, or, for a network level, the larger of it and the
  egress cost of every used node; inside one node, the worst link between any two GPUs used;
  times the gang's communication intensity;
- **latency**: the chosen level times ``LATENCY_COST_PER_LEVEL``;
- **fragmentation**: for every touched node, the GPU capacity it is left with partly free, and
  the leftover-link term from the exact set of GPUs still wholly free (its worst pair against
  the tabulated ideal for that count);
- **misalignment**: NUMA splits per GPU set, and the share of GPU members off the most common
  rail set (the most common set is a chosen variable; the member count of the whole gang and
  of its quorum are both exact).

Every constraint of the fast path holds: GPU milli per GPU, cpu and memory per node, static
eligibility (by construction of the GPU sets), all-or-nothing with the engine's quorum rule
(the whole gang, else exactly its first ``min_members``; the whole gang wins over any cost),
``required_level`` (candidate domains), ``preferred_level`` (lexicographic: the smallest
feasible container level at or above it first) and ``nvlink_group`` (binding groups counted
per NVLink domain). Interchangeable sibling nodes are ordered by use, which removes their
symmetric copies from the search.

Float costs are rounded to integers per coefficient, and quotients (fragmentation, rail share)
are rounded up; a solution reported optimal is optimal to within that rounding, a few units of
``1 / COST_SCALE``.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model
from phalanx.scheduler.cost import (
    FRAGMENTATION_WEIGHT,
    LATENCY_COST_PER_LEVEL,
    LEFTOVER_LINK_WEIGHT,
    NUMA_SPLIT_PENALTY,
    RAIL_MISALIGN_PENALTY,
    ideal_leftover_table,
)
from phalanx.scheduler.exact_problem import CandidateDomain, ExactProblem, Prefix
from phalanx.topology.model import MILLI_PER_GPU

COST_SCALE = 100_000
"""Objective units per unit of placement cost."""
DEFAULT_NUM_WORKERS = 2
SOLVER_SEED = 7
"""Fixed so that a run with one worker is reproducible."""

RANK_TIE = 0
RANK_COST = 1
RANK_LEVEL = 2
RANK_MEMBERS = 3

HINT_EVALUATION_SHARE = 0.25
"""Share of the time limit that evaluating a hint in the model may take."""
HINT_STATUS = "HINT"
"""Status of an answer that is the hint itself: CP-SAT found nothing better in time."""

STATUS_NAMES = {
    cp_model.OPTIMAL: "OPTIMAL",
    cp_model.FEASIBLE: "FEASIBLE",
    cp_model.INFEASIBLE: "INFEASIBLE",
    cp_model.MODEL_INVALID: "MODEL_INVALID",
    cp_model.UNKNOWN: "UNKNOWN",
}


def scaled(cost: float) -> int:
    return round(cost * COST_SCALE)


@dataclass(frozen=True)
class ModelSolution:
    status: str
    counts: dict[int, int]
    """Pattern index -> members on it (nonzero only)."""
    placed: int
    """Members started (a quorum prefix)."""
    domain: int
    """Flat id of the chosen lowest common domain, -1 without a solution."""
    groups: dict[object, dict[tuple[int, ...], int]]
    """NVLink domain -> binding group composition -> groups it holds."""
    objective_cost: float
    """The model's cost of the solution (objective less its lexicographic parts), NaN
    without one."""
    bound_cost: float
    """Lower bound on the cost of any placement of the same member count and level
    preference, valid for the model (``-inf`` when unknown)."""
    objective_units: int
    """The full objective (lexicographic parts included) in model units."""
    solve_s: float


class PlacementModel:
    """Builds the model once; :meth:`solve` may be called with a hint."""

    def __init__(self, problem: ExactProblem) -> None:
        self.problem = problem
        self.model = cp_model.CpModel()
        self._lexicographic: list[tuple[int, cp_model.LinearExprT, int]] = []
        """(rank, expression, its largest value): higher ranks dominate lower ones."""
        self._cost_terms: list[cp_model.LinearExprT] = []
        self._cost_span = 0
        """Largest minus smallest value the cost part can take (weights the ranks above)."""
        self._index_patterns()
        self._pattern_vars()
        self._prefix_vars()
        self._node_vars()
        self._capacity()
        self._domain_vars()
        self._nvlink_groups()
        self._communication()
        self._fragmentation()
        self._misalignment()
        if problem.tie_penalty:
            self._tie_break(problem.tie_penalty)
        self._objective()

    # ------------------------------------------------------------------ structure
    def _index_patterns(self) -> None:
        p = self.problem
        self.by_node: dict[int, list[int]] = defaultdict(list)
        self.by_class: dict[int, list[int]] = defaultdict(list)
        self.by_gpu: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.touchable: dict[int, set[int]] = defaultdict(set)
        """GPUs of each node that some GPU set uses."""
        for i, pat in enumerate(p.patterns):
            self.by_node[pat.node].append(i)
            self.by_class[pat.member_class].append(i)
            self.touchable[pat.node].update(pat.gpus)
            for g in pat.gpus:
                self.by_gpu[(pat.node, g)].append(i)

    def _pattern_vars(self) -> None:
        m = self.model
        self.y = [
            m.new_bool_var(f"y{i}")
            if pat.capacity == 1
            else m.new_int_var(0, pat.capacity, f"y{i}")
            for i, pat in enumerate(self.problem.patterns)
        ]

    def _prefix_vars(self) -> None:
        p = self.problem
        m = self.model
        n = len(p.gang.members)
        if len(p.prefixes) == 1:
            self.z = None
        else:
            self.z = [m.new_bool_var(f"prefix{pre.placed}") for pre in p.prefixes]
            m.add_exactly_one(self.z)
            left_out = sum(z * (n - pre.placed) for z, pre in zip(self.z, p.prefixes, strict=True))
            self._lexicographic.append((RANK_MEMBERS, left_out, n - p.gang.quorum))
        for c in range(len(p.classes)):
            counts = [pre.class_counts[c] for pre in p.prefixes]
            m.add(sum(self.y[i] for i in self.by_class[c]) == self._by_prefix(counts))

    def _by_prefix(self, values: Sequence[int]) -> cp_model.LinearExprT:
        """``values[j]`` for the chosen prefix ``j`` as a linear expression."""
        if self.z is None:
            return values[0]
        return sum(v * z for v, z in zip(values, self.z, strict=True))

    def _node_vars(self) -> None:
        m = self.model
        self.used = {}
        for n in self.problem.nodes:
            used = m.new_bool_var(f"used{n}")
            pats = self.by_node[n]
            self._link_or(used, pats)
            self.used[n] = used
        self.gpu_taken: dict[tuple[int, int], cp_model.IntVar] = {}
        for twins in self.problem.twins:
            for a, b in itertools.pairwise(twins):
                m.add(self.used[a] >= self.used[b])
                m.add(self.milli_taken(a) >= self.milli_taken(b))

    def milli_taken(self, n: int) -> cp_model.LinearExprT:
        """GPU milli the gang takes on node ``n``."""
        p = self.problem
        return sum(
            self._milli(i) * len(p.patterns[i].gpus) * self.y[i]
            for i in self.by_node[n]
            if p.patterns[i].gpus
        )

    def _link_or(self, flag: cp_model.IntVar, pats: Sequence[int]) -> None:
        """``flag`` == (some pattern of ``pats`` is used)."""
        m = self.model
        for i in pats:
            cap = self.problem.patterns[i].capacity
            if cap == 1:
                m.add_implication(self.y[i], flag)
            else:
                m.add(self.y[i] <= cap * flag)
        m.add(sum(self.y[i] for i in pats) >= flag)

    def taken(self, n: int, g: int) -> cp_model.IntVar:
        """Bool: the gang takes some share of GPU ``g`` of node ``n``."""
        key = (n, g)
        var = self.gpu_taken.get(key)
        if var is None:
            var = self.model.new_bool_var(f"gpu{n}_{g}")
            self._link_or(var, self.by_gpu[key])
            self.gpu_taken[key] = var
        return var

    def _capacity(self) -> None:
        p = self.problem
        c = p.compiled
        m = self.model
        for (n, g), pats in self.by_gpu.items():
            room = MILLI_PER_GPU - int(c.gpu_used_milli[n, g])
            terms = [(self._milli(i), i) for i in pats]
            if sum(milli * p.patterns[i].capacity for milli, i in terms) > room:
                m.add(sum(milli * self.y[i] for milli, i in terms) <= room)
        for n in p.nodes:
            pats = self.by_node[n]
            for attr, free in (
                ("cpu_milli", int(c.cpu_free_milli[n])),
                ("memory_mib", int(c.memory_free_mib[n])),
            ):
                need = [getattr(p.classes[p.patterns[i].member_class].request, attr) for i in pats]
                if sum(q * p.patterns[i].capacity for q, i in zip(need, pats, strict=True)) > free:
                    m.add(sum(q * self.y[i] for q, i in zip(need, pats, strict=True)) <= free)

    def _milli(self, i: int) -> int:
        pat = self.problem.patterns[i]
        return self.problem.classes[pat.member_class].milli_per_gpu

    def _domain_vars(self) -> None:
        p = self.problem
        c = p.compiled
        m = self.model
        self.d = {dom.domain: m.new_bool_var(f"dom{dom.domain}") for dom in p.domains}
        m.add_exactly_one(self.d.values())
        covering: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for dom in p.domains:
            for n in dom.nodes:
                covering[n].append(self.d[dom.domain])
        for n in p.nodes:
            m.add(self.used[n] <= sum(covering[n]))
        child_used: dict[int, cp_model.IntVar] = {}
        for dom in p.domains:
            if dom.level == 0:
                continue
            flags = []
            for child in dom.children:
                if dom.level == 1:
                    flags.append(self.used[child])
                    continue
                flag = child_used.get(child)
                if flag is None:
                    flag = m.new_bool_var(f"child{child}")
                    inside = [
                        self.used[n] for n in dom.nodes if c.node_domain[dom.level - 1, n] == child
                    ]
                    m.add(sum(inside) >= flag)
                    child_used[child] = flag
                flags.append(flag)
            m.add(sum(flags) >= 2).only_enforce_if(self.d[dom.domain])
        node_level = [self.d[dom.domain] for dom in p.domains if dom.level == 0]
        self.single_node = sum(node_level) if node_level else 0
        latency = sum(
            scaled(LATENCY_COST_PER_LEVEL * dom.level) * self.d[dom.domain] for dom in p.domains
        )
        self._add_cost(latency, scaled(LATENCY_COST_PER_LEVEL * (c.n_levels - 1)))
        pref = p.gang.preferred_level
        if pref is not None:
            pl = c.level_index(pref)
            above = [(dom.level - pl) * self.d[dom.domain] for dom in p.domains if dom.level > pl]
            if above:
                self._lexicographic.append((RANK_LEVEL, sum(above), c.n_levels - 1 - pl))

    def _nvlink_groups(self) -> None:
        """Per NVLink domain, the members of each class it holds are whole binding groups
        (``groups`` of each composition) plus, where the gang has members outside binding
        groups, any number of those."""
        p = self.problem
        self.unit_groups: dict[object, dict[tuple[int, ...], cp_model.IntVar]] = {}
        if not p.grouped:
            return
        m = self.model
        kinds = sorted({k for pre in p.prefixes for k in pre.group_counts})
        loose = [
            any(
                pre.class_counts[c] > sum(n * k[c] for k, n in pre.group_counts.items())
                for pre in p.prefixes
            )
            for c in range(len(p.classes))
        ]
        units: dict[object, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, pat in enumerate(p.patterns):
            if pat.unit is not None:
                units[pat.unit][pat.member_class].append(i)
        per_kind: dict[tuple[int, ...], list[cp_model.IntVar]] = defaultdict(list)
        for u, (unit, by_class) in enumerate(units.items()):
            groups = {}
            for kind in kinds:
                most = max(pre.group_counts.get(kind, 0) for pre in p.prefixes)
                groups[kind] = m.new_int_var(0, most, f"groups{u}_{len(groups)}")
                per_kind[kind].append(groups[kind])
            self.unit_groups[unit] = groups
            for cls in range(len(p.classes)):
                slots = sum(self.y[i] for i in by_class.get(cls, []))
                bound = sum(groups[kind] * kind[cls] for kind in kinds)
                m.add(slots >= bound if loose[cls] else slots == bound)
        for kind in kinds:
            wanted = [pre.group_counts.get(kind, 0) for pre in p.prefixes]
            m.add(sum(per_kind[kind]) == self._by_prefix(wanted))

    # ------------------------------------------------------------------ cost terms
    def _add_cost(self, expr: cp_model.LinearExprT, upper: int, lower: int = 0) -> None:
        """Add a cost term whose values lie within ``lower..upper``."""
        self._cost_terms.append(expr)
        self._cost_span += max(0, upper) - min(0, lower)

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

    def _objective(self) -> None:
        """Each term weighted above the largest value of every term of lower rank: scorer
        tie-break, then cost, then (dominating it) the level preference, then the members
        left out."""
        self._cost_expr = sum(self._cost_terms)
        ranked = sorted(
            [*self._lexicographic, (RANK_COST, self._cost_expr, self._cost_span)],
            key=lambda t: t[0],
        )
        objective: cp_model.LinearExprT = 0
        weight = 1
        self._weights: dict[int, int] = {}
        self._below_cost = 0
        for rank, expr, largest in ranked:
            objective = objective + weight * expr
            self._weights[rank] = weight
            if rank < RANK_COST:
                self._below_cost += weight * largest
            weight *= largest + 1
        self._ranked = ranked
        self._objective_expr = objective
        self.model.minimize(objective)

    # ------------------------------------------------------------------ solving
    def evaluate(self, counts: dict[int, int], time_limit_s: float) -> ModelSolution | None:
        """The model's solution with the GPU-set counts fixed to ``counts`` (a hint's), or None
        when they are infeasible in the model or time runs out."""
        trial = self.model.clone()
        for i, var in enumerate(self.y):
            trial.add(trial.get_int_var_from_proto_index(var.index) == counts.get(i, 0))
        solver = _solver(time_limit_s, 1)
        start = time.perf_counter()
        status = solver.solve(trial)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        return self._read(solver, HINT_STATUS, time.perf_counter() - start)

    def solve(
        self, time_limit_s: float, num_workers: int, incumbent: ModelSolution | None = None
    ) -> ModelSolution:
        """Minimise within ``time_limit_s``. With an ``incumbent`` (an evaluated hint) the
        search is told its GPU sets (hinting the domain choice as well slows CP-SAT's presolve
        by seconds on large models) and the incumbent is the answer unless something at least
        as good is found."""
        m = self.model
        if incumbent is not None:
            for i, var in enumerate(self.y):
                m.add_hint(var, incumbent.counts.get(i, 0))
            if self.z is not None:
                for z, pre in zip(self.z, self.problem.prefixes, strict=True):
                    m.add_hint(z, int(pre.placed == incumbent.placed))
        solver = _solver(time_limit_s, num_workers)
        start = time.perf_counter()
        status = solver.solve(m)
        elapsed = time.perf_counter() - start
        name = STATUS_NAMES.get(status, "UNKNOWN")
        found = None
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            found = self._read(solver, name, elapsed)
        if incumbent is not None and (
            found is None or found.objective_units > incumbent.objective_units
        ):
            return dataclasses.replace(incumbent, solve_s=elapsed)
        if found is not None:
            return found
        return ModelSolution(name, {}, 0, -1, {}, float("nan"), -float("inf"), 0, elapsed)

    def _read(self, solver: cp_model.CpSolver, status: str, elapsed: float) -> ModelSolution:
        counts = {i: v for i, var in enumerate(self.y) if (v := int(solver.value(var)))}
        placed = self.problem.prefixes[0].placed
        if self.z is not None:
            for z, pre in zip(self.z, self.problem.prefixes, strict=True):
                if solver.boolean_value(z):
                    placed = pre.placed
        domain = next(d for d, var in self.d.items() if solver.boolean_value(var))
        groups = {
            unit: {kind: v for kind, var in kinds.items() if (v := int(solver.value(var)))}
            for unit, kinds in self.unit_groups.items()
        }
        cost_weight = self._weights[RANK_COST]
        above = sum(
            self._weights[rank] * int(solver.value(expr))
            for rank, expr, _ in self._ranked
            if rank > RANK_COST
        )
        bound = -float("inf")
        if status != HINT_STATUS:
            bound_units = (solver.best_objective_bound - above - self._below_cost) / cost_weight
            bound = bound_units / COST_SCALE
        return ModelSolution(
            status=status,
            counts=counts,
            placed=placed,
            domain=domain,
            groups=groups,
            objective_cost=int(solver.value(self._cost_expr)) / COST_SCALE,
            bound_cost=bound,
            objective_units=int(solver.value(self._objective_expr)),
            solve_s=elapsed,
        )


def _solver(time_limit_s: float, num_workers: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit_s, 0.0)
    solver.parameters.num_workers = num_workers
    solver.parameters.random_seed = SOLVER_SEED
    return solver
