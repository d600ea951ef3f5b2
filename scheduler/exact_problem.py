"""The exact path's view of one placement problem, reduced to what CP-SAT needs to see.

- Members with equal requests are interchangeable: they form one class, and the model counts
  how many members of a class take each GPU set instead of naming them.
- Only nodes that pass the static filters and have room for some member are modelled, and
  among those a **symmetry reduction** keeps few copies of interchangeable subtrees: two sibling
  domains (or nodes) whose subtrees are identical (same node shapes, free state, eligibility,
  egress, rails and NUMA layout, capped cpu/memory) cost the same for any placement, so a
  placement in one maps to an equal-cost placement in the other. A placement touches at most
  ``b`` nodes of a domain (``b`` = members), so of a group of identical children the one it
  uses most holds at most ``b`` of its nodes, the second at most ``b // 2``, the ``i``-th at
  most ``b // i``; keeping the ``i``-th representative with budget ``b // i`` (recursively)
  keeps an isomorphic image of every placement. Nothing better is lost.
- Only domains that can hold the quorum are candidates for the gang's lowest common domain:
  at least two modelled children (else the domain cannot be *lowest*) and enough free GPUs,
  milli-GPU, cpu, memory and per-class member room. These are necessary conditions, so the
  pruning is sound.

:mod:`scheduler.exact_bounds` then drops domains that cannot beat a known placement (sound)
and, past a size budget, restricts the candidates (not exact, and said so); only after that
are the GPU sets of the remaining nodes enumerated (:func:`add_gpu_sets`).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from phalanx.scheduler.cluster_index import ClusterIndex, cluster_index
from phalanx.scheduler.eligibility import (
    FreeArrays,
    explain_no_node,
    member_capacity,
    request_key,
    static_mask,
)
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.compiled import CompiledCluster
from phalanx.topology.model import MILLI_PER_GPU

TIE_BREAK_STEPS = 100
"""Resolution of a scorer's node preference, used only between equal-cost placements."""
MAX_SETS_PER_NODE = 1024
"""GPU sets enumerated per member class and node (all of them up to 10 free GPUs for any
member size); beyond it, the first ones in index order, a restriction."""


@dataclass(frozen=True)
class MemberClass:
    """Members with one request: interchangeable for every cost term."""

    request: MemberRequest
    members: tuple[int, ...]
    """Indices into ``gang.members``, ascending."""
    eligible: np.ndarray
    """bool [nodes]: static filters passed and room for at least one such member now."""
    room: np.ndarray
    """int64 [nodes]: how many such members each node could take alone."""

    @property
    def milli_per_gpu(self) -> int:
        return self.request.gpu_milli if self.request.is_fractional else MILLI_PER_GPU


@dataclass(frozen=True)
class Pattern:
    """One way a member of ``member_class`` can sit on ``node``: the GPUs it takes."""

    member_class: int
    node: int
    gpus: tuple[int, ...]
    capacity: int
    """Members of the class that fit on this GPU set together (several fractional shares of
    one GPU, several CPU-only members of one node; 1 for whole GPUs)."""
    numa_split: bool
    rails: frozenset[int]
    unit: Hashable | None
    """The NVLink domain holding the GPUs (a node's NVSwitch or bridge group, or a multi-node
    clique), None where they share none."""


@dataclass(frozen=True)
class CandidateDomain:
    domain: int
    """Flat domain id (a node's own domain at level 0)."""
    level: int
    nodes: tuple[int, ...]
    children: tuple[int, ...]
    """Child domains (flat ids) with modelled nodes; empty at level 0."""


@dataclass(frozen=True)
class Prefix:
    """One admissible outcome of the quorum: the first ``placed`` members start."""

    placed: int
    class_counts: tuple[int, ...]
    group_counts: dict[tuple[int, ...], int]
    """NVLink group composition (members per class) -> how many such groups, for the groups
    that must share an NVLink domain; members of other groups are free."""


@dataclass
class ExactProblem:
    compiled: CompiledCluster
    index: ClusterIndex
    gang: Gang
    classes: list[MemberClass]
    member_class: list[int]
    prefixes: list[Prefix]
    """Most members first."""
    nodes: list[int]
    patterns: list[Pattern]
    domains: list[CandidateDomain]
    candidate_nodes: int
    """Nodes passing the filters with room, before the symmetry reduction."""
    node_keys: dict[int, int] = field(default_factory=dict)
    """Interned node keys: equal keys (and positions) make nodes interchangeable."""
    tie_penalty: dict[tuple[int, int], int] = field(default_factory=dict)
    """(member class, node) -> a scorer's dislike of the node, for breaking cost ties."""
    restricted: bool = False
    """Some reduction was not exact: the model is a restriction of the problem."""
    notes: list[str] = field(default_factory=list)
    """What the reductions did, the inexact ones first said so."""
    twins: list[list[int]] = field(default_factory=list)
    """Groups of modelled nodes that are interchangeable: equal keys, same parent domain.
    Any placement can be permuted among a group's nodes, so the model may order them."""

    @property
    def grouped(self) -> bool:
        """Some NVLink group binds its members to one NVLink domain."""
        return any(pre.group_counts for pre in self.prefixes)

    @property
    def all_grouped(self) -> bool:
        """Every placed member is in a binding NVLink group, so a GPU set outside every
        NVLink domain is of no use."""
        return self.grouped and all(
            sum(n * sum(k) for k, n in pre.group_counts.items()) == pre.placed
            for pre in self.prefixes
        )


class NoCandidate(Exception):
    """No node or domain can hold the gang; ``constraint`` names the failing condition and
    ``level`` where it failed (None when no node passes the gang's filters)."""

    def __init__(self, constraint: str, reason: str, level: str | None = None) -> None:
        super().__init__(reason)
        self.constraint = constraint
        self.reason = reason
        self.level = level


def build_problem(
    gang: Gang,
    state: ClusterState,
    hint: Placement | None = None,
    scorer: PlacementScorer | None = None,
) -> ExactProblem:
    """The reduced problem; raises :class:`NoCandidate` when the reductions alone prove that
    no placement exists (they are sound, so this is a proof). A ``scorer``'s node preference
    becomes part of every node's key, so nodes it tells apart are never merged."""
    compiled = state.compiled
    index = cluster_index(compiled)
    classes, member_class = _member_classes(compiled, index, gang)
    prefixes = _prefixes(gang, classes, member_class)
    for c, cls in enumerate(classes):
        if not cls.eligible.any() and prefixes[-1].class_counts[c]:
            who = gang.members[cls.members[0]].name
            if not static_mask(compiled, index, cls.request).any():
                constraint, why = explain_no_node(compiled, index, cls.request)
                raise NoCandidate(constraint, f"member {who!r}: {why}")
            raise NoCandidate(
                "capacity", f"no node has room for member {who!r} now", compiled.level_names[-1]
            )
    any_room = np.zeros(compiled.n_nodes, dtype=bool)
    for cls in classes:
        any_room |= cls.eligible
    candidates = np.flatnonzero(any_room)
    hint_nodes = {m.node_index for m in hint.members} if hint is not None else set()
    budget = len(gang.members)
    tie = _tie_penalties(compiled, classes, candidates, scorer) if scorer is not None else {}
    keys = _node_keys(compiled, index, classes, candidates, gang, tie)
    nodes = reduce_symmetric(compiled, candidates, keys, budget, hint_nodes)
    max_level = _max_level(compiled, gang)
    domains = _candidate_domains(compiled, classes, prefixes[-1], nodes, max_level)
    if not domains:
        raise NoCandidate(
            "required_level" if gang.required_level else "capacity",
            _no_domain_reason(compiled, gang, max_level),
            compiled.level_names[max_level],
        )
    return ExactProblem(
        compiled=compiled,
        index=index,
        gang=gang,
        classes=classes,
        member_class=member_class,
        prefixes=prefixes,
        nodes=[],
        patterns=[],
        domains=domains,
        candidate_nodes=int(candidates.size),
        node_keys=keys,
        tie_penalty=tie,
    )


def _tie_penalties(
    compiled: CompiledCluster,
    classes: list[MemberClass],
    nodes: np.ndarray,
    scorer: PlacementScorer,
) -> dict[tuple[int, int], int]:
    """Per (member class, node): 0 for the scorer's best node up to ``TIE_BREAK_STEPS``."""
    out: dict[tuple[int, int], int] = {}
    if nodes.size == 0:
        return out
    for c, cls in enumerate(classes):
        score = np.asarray(scorer.score(compiled, cls.request, nodes), dtype=np.float64)
        span = float(score.max() - score.min())
        if span <= 0:
            continue
        steps = np.rint((score.max() - score) / span * TIE_BREAK_STEPS).astype(np.int64)
        for n, step in zip(nodes.tolist(), steps.tolist(), strict=True):
            out[(c, n)] = step
    return out


def add_gpu_sets(problem: ExactProblem) -> None:
    """Fix the modelled nodes (those of the remaining candidate domains), enumerate their GPU
    sets and find their twins."""
    problem.nodes = sorted({n for d in problem.domains for n in d.nodes})
    problem.patterns = _patterns(problem)
    problem.twins = _twins(problem.compiled, problem.nodes, problem.node_keys)


def _twins(
    compiled: CompiledCluster, nodes: Sequence[int], keys: dict[int, int]
) -> list[list[int]]:
    parent_level = 1 if compiled.n_levels > 1 else 0
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for n in nodes:
        groups[(int(compiled.node_domain[parent_level, n]), keys[n])].append(n)
    return [g for g in groups.values() if len(g) > 1]


# ---------------------------------------------------------------------------- classes
def _member_classes(
    compiled: CompiledCluster, index: ClusterIndex, gang: Gang
) -> tuple[list[MemberClass], list[int]]:
    by_key: dict[tuple, list[int]] = defaultdict(list)
    for i, m in enumerate(gang.members):
        by_key[request_key(m.request)].append(i)
    free = FreeArrays.of(compiled)
    classes = []
    member_class = [0] * len(gang.members)
    for c, members in enumerate(by_key.values()):
        request = gang.members[members[0]].request
        room = member_capacity(compiled, request, static_mask(compiled, index, request), free)
        room = np.minimum(room, len(members))
        classes.append(MemberClass(request, tuple(members), room > 0, room))
        for i in members:
            member_class[i] = c
    return classes, member_class


def _prefixes(gang: Gang, classes: list[MemberClass], member_class: list[int]) -> list[Prefix]:
    """The whole gang, then (when smaller) the quorum alone: the engine's semantics, where
    members beyond the quorum start only if the whole gang fits."""
    out = []
    sizes = [len(gang.members)]
    if gang.quorum < sizes[0]:
        sizes.append(gang.quorum)
    for placed in sizes:
        counts = [0] * len(classes)
        for i in range(placed):
            counts[member_class[i]] += 1
        groups: Counter[tuple[int, ...]] = Counter()
        for group in groups_of_prefix(gang, placed):
            comp = [0] * len(classes)
            for i in group:
                comp[member_class[i]] += 1
            if needs_nvlink(comp, classes):
                groups[tuple(comp)] += 1
        out.append(Prefix(placed, tuple(counts), dict(groups)))
    return out


def needs_nvlink(composition: Sequence[int], classes: list[MemberClass]) -> bool:
    """An NVLink group binds only when it spans two or more GPUs (as in the fast path)."""
    return sum(n * cls.request.gpus for n, cls in zip(composition, classes, strict=True)) >= 2


def groups_of_prefix(gang: Gang, placed: int) -> list[range]:
    """Member index ranges of the NVLink groups among the first ``placed`` members (none
    without ``nvlink_group``)."""
    k = gang.nvlink_group
    if not k:
        return []
    return [range(s, min(s + k, placed)) for s in range(0, placed, k)]


# ---------------------------------------------------------------------------- symmetry
def _node_keys(
    compiled: CompiledCluster,
    index: ClusterIndex,
    classes: list[MemberClass],
    nodes: np.ndarray,
    gang: Gang,
    tie: dict[tuple[int, int], int],
) -> dict[int, int]:
    """Everything about a node that a cost term or constraint reads; equal keys (with equal
    positions in the tree) make nodes interchangeable. cpu and memory are capped at the gang's
    total demand, beyond which more makes no difference."""
    cpu_cap = sum(m.request.cpu_milli for m in gang.members)
    mem_cap = sum(m.request.memory_mib for m in gang.members)
    interned: dict[tuple, int] = {}
    keys = {}
    for n in nodes.tolist():
        key = (
            int(compiled.node_shape[n]),
            int(index.choice_shape[n]),
            int(compiled.node_product[n]),
            float(compiled.node_egress_cost[n]),
            compiled.gpu_usable[n].tobytes(),
            compiled.gpu_used_milli[n].tobytes(),
            index.nvlink_masks[n].tobytes(),
            min(int(compiled.cpu_free_milli[n]), cpu_cap),
            min(int(compiled.memory_free_mib[n]), mem_cap),
            tuple(int(c.room[n]) for c in classes),
            tuple(tie.get((c, n), 0) for c in range(len(classes))),
        )
        keys[n] = interned.setdefault(key, len(interned))
    return keys


def reduce_symmetric(
    compiled: CompiledCluster,
    nodes: np.ndarray,
    keys: dict[int, int],
    budget: int,
    prefer: set[int] | None = None,
) -> list[int]:
    """The nodes of ``nodes`` to keep: representatives of identical subtrees with the budgets
    of the module docstring. Nodes in ``prefer`` (a hint's) are kept whenever the budget
    allows, which it always does for a valid placement of at most ``budget`` nodes."""
    prefer = prefer or set()
    n_levels = compiled.n_levels
    if n_levels == 1 or nodes.size == 0:
        return sorted(nodes.tolist())
    intern: dict[Hashable, int] = {}

    def sig_id(value: Hashable) -> int:
        return intern.setdefault(value, len(intern))

    sig: dict[tuple[int, int], int] = {(0, n): sig_id(("node", keys[n])) for n in nodes.tolist()}
    children: dict[tuple[int, int], list[int]] = {}
    preferred: Counter[tuple[int, int]] = Counter((0, n) for n in prefer)
    for level in range(1, n_levels):
        members: dict[int, set[int]] = defaultdict(set)
        for n in nodes.tolist():
            members[int(compiled.node_domain[level, n])].add(
                int(compiled.node_domain[level - 1, n])
            )
        for dom, kids in members.items():
            ordered = sorted(kids)
            children[(level, dom)] = ordered
            counts = Counter(sig[(level - 1, c)] for c in ordered)
            sig[(level, dom)] = sig_id((level, tuple(sorted(counts.items()))))
            preferred[(level, dom)] = sum(preferred[(level - 1, c)] for c in ordered)

    kept: list[int] = []

    def keep(level: int, dom: int, room: int) -> None:
        if level == 0:
            kept.append(dom)
            return
        groups: dict[int, list[int]] = defaultdict(list)
        for child in children[(level, dom)]:
            groups[sig[(level - 1, child)]].append(child)
        for group in groups.values():
            group.sort(key=lambda c: (-preferred[(level - 1, c)], c))
            for i, child in enumerate(group[:room]):
                keep(level - 1, child, room // (i + 1))

    top = n_levels - 1
    for root in sorted({int(d) for d in compiled.node_domain[top, nodes]}):
        keep(top, root, budget)
    return sorted(kept)


# ---------------------------------------------------------------------------- domains
def _max_level(compiled: CompiledCluster, gang: Gang) -> int:
    if gang.required_level is None:
        return compiled.n_levels - 1
    return compiled.level_index(gang.required_level)


def _candidate_domains(
    compiled: CompiledCluster,
    classes: list[MemberClass],
    quorum: Prefix,
    nodes: Sequence[int],
    max_level: int,
) -> list[CandidateDomain]:
    """Domains up to ``max_level`` that pass the necessary capacity checks for the quorum."""
    node_arr = np.asarray(nodes, dtype=np.int64)
    if node_arr.size == 0:
        return []
    whole_need = sum(
        cnt * cls.request.gpus for cnt, cls in zip(quorum.class_counts, classes, strict=True)
    )
    milli_need = sum(
        cnt * cls.request.gpu_milli_total
        for cnt, cls in zip(quorum.class_counts, classes, strict=True)
    )
    cpu_need = sum(
        cnt * cls.request.cpu_milli for cnt, cls in zip(quorum.class_counts, classes, strict=True)
    )
    mem_need = sum(
        cnt * cls.request.memory_mib for cnt, cls in zip(quorum.class_counts, classes, strict=True)
    )
    free_whole = compiled.free_gpu_count[node_arr].astype(np.int64)
    usable = compiled.gpu_usable[node_arr]
    free_milli = np.where(usable, MILLI_PER_GPU - compiled.gpu_used_milli[node_arr], 0).sum(axis=1)
    cpu = compiled.cpu_free_milli[node_arr]
    mem = compiled.memory_free_mib[node_arr]
    rooms = [cls.room[node_arr] for cls in classes]
    out = []
    for level in range(max_level + 1):
        dom_of = compiled.node_domain[level, node_arr]
        order = np.argsort(dom_of, kind="stable")
        bounds = np.flatnonzero(np.diff(dom_of[order])) + 1
        for part in np.split(order, bounds):
            if (
                free_whole[part].sum() < whole_need
                or free_milli[part].sum() < milli_need
                or cpu[part].sum() < cpu_need
                or mem[part].sum() < mem_need
                or any(
                    r[part].sum() < cnt for r, cnt in zip(rooms, quorum.class_counts, strict=True)
                )
            ):
                continue
            dom_nodes = tuple(int(n) for n in node_arr[part])
            kids: tuple[int, ...] = ()
            if level > 0:
                kids = tuple(sorted({int(compiled.node_domain[level - 1, n]) for n in dom_nodes}))
                if len(kids) < 2:
                    continue
            out.append(CandidateDomain(int(dom_of[part[0]]), level, dom_nodes, kids))
    return out


def _no_domain_reason(compiled: CompiledCluster, gang: Gang, max_level: int) -> str:
    where = compiled.level_names[max_level]
    if gang.required_level:
        return f"no single {where} domain has room for the quorum of {gang.quorum} members"
    return f"the free capacity cannot hold the quorum of {gang.quorum} members"


# ---------------------------------------------------------------------------- GPU sets
def _patterns(problem: ExactProblem) -> list[Pattern]:
    compiled, index = problem.compiled, problem.index
    out: list[Pattern] = []
    grouped = problem.all_grouped
    for n in problem.nodes:
        units = gpu_units(compiled, index, n)
        for c, cls in enumerate(problem.classes):
            if not cls.eligible[n]:
                continue
            req = cls.request
            for gpus, capacity in _gpu_sets(problem, cls, n):
                unit = unit_of(units, gpus, n)
                if grouped and unit is None:
                    continue
                out.append(
                    Pattern(
                        member_class=c,
                        node=n,
                        gpus=gpus,
                        capacity=min(capacity, int(cls.room[n])),
                        numa_split=_numa_split(compiled, n, gpus),
                        rails=frozenset(int(r) for r in compiled.gpu_rail[n, list(gpus)]),
                        unit=unit,
                    )
                )
            if req.gpus > 1 and math.comb(int(compiled.free_gpu_count[n]), req.gpus) > (
                MAX_SETS_PER_NODE
            ):
                problem.restricted = True
                problem.notes.append(
                    f"node {compiled.node_names[n]}: GPU sets limited to {MAX_SETS_PER_NODE}"
                )
    return out


def _gpu_sets(problem: ExactProblem, cls: MemberClass, n: int) -> list[tuple[tuple[int, ...], int]]:
    compiled = problem.compiled
    req = cls.request
    if req.gpu_milli_total == 0:
        return [((), len(cls.members))]
    usable = compiled.gpu_usable[n]
    if req.is_fractional:
        room = (MILLI_PER_GPU - compiled.gpu_used_milli[n].astype(np.int64)) // req.gpu_milli
        return [((int(g),), int(room[g])) for g in np.flatnonzero(usable & (room > 0))]
    free = compiled.free_gpus(n)
    combos = itertools.islice(itertools.combinations(free, req.gpus), MAX_SETS_PER_NODE)
    return [(tuple(int(g) for g in s), 1) for s in combos]


def gpu_units(compiled: CompiledCluster, index: ClusterIndex, n: int) -> list[tuple[int, object]]:
    """(GPU bitmask, unit key) of the node's NVLink domains."""
    out = []
    for s, mask in enumerate(index.nvlink_masks[n].tolist()):
        if not mask:
            continue
        if index.nvlink_level:
            key: object = ("clique", int(compiled.node_domain[index.nvlink_level, n]))
        else:
            key = ("node", n, s)
        out.append((int(mask), key))
    return out


def unit_of(units: list[tuple[int, object]], gpus: tuple[int, ...], n: int) -> Hashable | None:
    if not units:
        return None
    if not gpus:
        return units[0][1]
    mask = sum(1 << g for g in gpus)
    for unit_mask, key in units:
        if mask & unit_mask == mask:
            return key
    return None


def _numa_split(compiled: CompiledCluster, n: int, gpus: tuple[int, ...]) -> bool:
    """The NUMA term of :func:`scheduler.cost.misalignment_cost` for one member."""
    if len(gpus) < 2:
        return False
    numa = compiled.gpu_numa[n]
    socket_gpus = int(np.bincount(numa[compiled.gpu_usable[n]]).max())
    return len(gpus) <= socket_gpus and len({int(numa[g]) for g in gpus}) > 1
