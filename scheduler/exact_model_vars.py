"""The variables of the CP-SAT placement model (:mod:`scheduler.exact_model`) and the hard
constraints that tie them together: members per GPU set and quorum prefix, used nodes (twins
ordered by use), GPU, cpu and memory capacity, the chosen lowest common domain with its level
preference, and binding groups per NVLink domain.

The cost terms are added by :mod:`scheduler.exact_model_costs`, the objective and solving by
:mod:`scheduler.exact_model`; :class:`ModelVariables` holds the shared state they build on.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

from ortools.sat.python import cp_model
from phalanx.scheduler.cost import LATENCY_COST_PER_LEVEL
from phalanx.scheduler.exact_problem import ExactProblem
from phalanx.topology.model import MILLI_PER_GPU

COST_SCALE = 100_000
"""Objective units per unit of placement cost."""
RANK_TIE = 0
RANK_COST = 1
RANK_LEVEL = 2
RANK_MEMBERS = 3


def scaled(cost: float) -> int:
    return round(cost * COST_SCALE)


class ModelVariables:
    """A model under construction: the problem, the CP-SAT model, and the objective's parts
    collected so far (cost terms, and lexicographic terms with their ranks)."""

    def __init__(self, problem: ExactProblem) -> None:
        self.problem = problem
        self.model = cp_model.CpModel()
        self._lexicographic: list[tuple[int, cp_model.LinearExprT, int]] = []
        """(rank, expression, its largest value): higher ranks dominate lower ones."""
        self._cost_terms: list[cp_model.LinearExprT] = []
        self._cost_span = 0
        """Largest minus smallest value the cost part can take (weights the ranks above)."""

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

    def _add_cost(self, expr: cp_model.LinearExprT, upper: int, lower: int = 0) -> None:
        """Add a cost term whose values lie within ``lower..upper``."""
        self._cost_terms.append(expr)
        self._cost_span += max(0, upper) - min(0, lower)
