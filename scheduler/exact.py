"""The exact placement path: an OR-Tools CP-SAT model of the placement problem with a time
limit. The engine uses it for large or hard gangs and when the fast path fails, and the
optimality benchmark uses it as the reference for the fast path's gap.

What is exact (see :mod:`scheduler.exact_model` and :mod:`scheduler.exact_problem`): member to
node assignment, the GPU set of every member (every set of free GPUs of the requested size is
a variable), and every term of :func:`scheduler.cost.placement_cost` on them, with float
costs scaled to integers (``COST_SCALE``). The reductions (node filters, symmetric subtrees,
domains that can hold the quorum) lose no better placement. ``optimal=True`` is reported only
when CP-SAT proves OPTIMAL on an unrestricted model. On a cluster too large for the model
budget the candidate domains are restricted: the answer is still a valid placement, but
``optimal`` is False, infeasibility is not claimed, and the bound holds only for the
restricted model (``ExactResult.bound_scope``).

The answer's cost is always recomputed with :func:`scheduler.cost.placement_cost`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass

from phalanx.scheduler.cost import lowest_common_domain, placement_cost
from phalanx.scheduler.exact_bounds import prune_by_bound, restrict_to_budget, valid_hint_cost
from phalanx.scheduler.exact_model import (
    DEFAULT_NUM_WORKERS,
    HINT_EVALUATION_SHARE,
    HINT_STATUS,
    ModelSolution,
    PlacementModel,
)
from phalanx.scheduler.exact_problem import (
    ExactProblem,
    NoCandidate,
    add_gpu_sets,
    build_problem,
    groups_of_prefix,
)
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import PlacementScorer
from phalanx.scheduler.placement import MemberPlacement, Placement, PlacementResult, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.validation import validate_gang_for_cluster
from phalanx.topology.model import MILLI_PER_GPU

MIN_SOLVE_S = 0.01
"""Solver time left even when building the model used up the limit."""
SOLVER = "exact"
HINT_COST_TOLERANCE = 1e-9
"""Costs closer than this are equal: both sides are summed from the same cost terms."""


@dataclass(frozen=True)
class ExactResult:
    """The answer plus what the benchmark and reports need to judge it."""

    result: PlacementResult
    status: str
    """CP-SAT status; ``PRUNED`` when the sound reductions alone proved infeasibility;
    ``HINT`` when CP-SAT found nothing better than the hint within the limit (the answer is
    then the hint's GPU sets)."""
    cost: float | None
    """``placement_cost(...).total`` of the answer, None without a placement."""
    bound: float
    """Lower bound on the cost of a placement with as many members (and, with a preferred
    level, no wider container), ``-inf`` when unknown."""
    restricted: bool
    model_cost: float = float("nan")
    """The CP-SAT objective's cost part for the answer: equal to ``cost`` up to the integer
    rounding when the solution is optimal, never below it otherwise (auxiliary variables
    may still have slack)."""
    notes: tuple[str, ...] = ()
    build_s: float = 0.0
    solve_s: float = 0.0
    wall_s: float = 0.0
    candidate_nodes: int = 0
    model_nodes: int = 0
    gpu_sets: int = 0

    @property
    def optimal(self) -> bool:
        return isinstance(self.result, Placement) and bool(self.result.optimal)

    @property
    def proven_infeasible(self) -> bool:
        return isinstance(self.result, Unplaceable) and self.result.proven

    @property
    def bound_scope(self) -> str:
        """``full`` when the bound holds for the whole problem, ``restricted`` when only for
        the restricted model."""
        return "restricted" if self.restricted else "full"


def solve(
    gang: Gang,
    state: ClusterState,
    *,
    time_limit_s: float = 2.0,
    hint: Placement | None = None,
    scorer: PlacementScorer | None = None,
    num_workers: int = DEFAULT_NUM_WORKERS,
) -> PlacementResult:
    """Best placement CP-SAT finds within ``time_limit_s`` (``optimal`` says whether it is
    proven), or :class:`Unplaceable` (``proven`` when infeasibility is proven). ``hint``
    seeds the search; ``scorer`` only breaks ties between equal-cost placements. Never
    mutates ``state``."""
    return solve_detailed(
        gang, state, time_limit_s=time_limit_s, hint=hint, scorer=scorer, num_workers=num_workers
    ).result


def solve_detailed(
    gang: Gang,
    state: ClusterState,
    *,
    time_limit_s: float = 2.0,
    hint: Placement | None = None,
    scorer: PlacementScorer | None = None,
    num_workers: int = DEFAULT_NUM_WORKERS,
) -> ExactResult:
    """:func:`solve` with the solver status, bound, timings and model size."""
    start = time.perf_counter()
    compiled = state.compiled
    validate_gang_for_cluster(gang, compiled)
    try:
        problem = build_problem(gang, state, hint, scorer)
        prune_by_bound(problem, state, hint, strict=scorer is not None)
        restrict_to_budget(problem, hint)
        add_gpu_sets(problem)
    except NoCandidate as why:
        wall = time.perf_counter() - start
        result = Unplaceable(gang.name, why.reason, why.constraint, why.level, proven=True)
        return ExactResult(result, "PRUNED", None, float("inf"), False, wall_s=wall, build_s=wall)
    model = PlacementModel(problem)
    incumbent = None
    if hint is not None:
        incumbent = model.evaluate(
            _hint_counts(problem, hint), HINT_EVALUATION_SHARE * time_limit_s
        )
    build_s = time.perf_counter() - start
    solution = model.solve(max(time_limit_s - build_s, MIN_SOLVE_S), num_workers, incumbent)
    result = _result(problem, solution, time_limit_s)
    status = solution.status
    hint_cost = valid_hint_cost(problem, state, hint) if hint is not None else None
    if hint_cost is not None and _hint_is_better(result, hint_cost):
        result = _as_exact(problem, hint)
        status = HINT_STATUS
    cost = result.cost.total if isinstance(result, Placement) else None
    return ExactResult(
        result=result,
        status=status,
        cost=cost,
        bound=solution.bound_cost if cost is not None else _infeasible_bound(solution),
        model_cost=solution.objective_cost if status != HINT_STATUS else float("nan"),
        restricted=problem.restricted,
        notes=tuple(problem.notes),
        build_s=build_s,
        solve_s=solution.solve_s,
        wall_s=time.perf_counter() - start,
        candidate_nodes=problem.candidate_nodes,
        model_nodes=len(problem.nodes),
        gpu_sets=len(problem.patterns),
    )


def _hint_is_better(result: PlacementResult, hint_cost: float) -> bool:
    """A valid hint beats no answer and beats a dearer one (a time-limited search may stop on
    a worse solution when the hint could not be loaded as its incumbent in time)."""
    if not isinstance(result, Placement):
        return True
    return result.cost.total > hint_cost + HINT_COST_TOLERANCE


def _infeasible_bound(solution: ModelSolution) -> float:
    return float("inf") if solution.status == "INFEASIBLE" else -float("inf")


# ---------------------------------------------------------------------------- answers
def _result(problem: ExactProblem, solution: ModelSolution, time_limit_s: float) -> PlacementResult:
    gang = problem.gang
    if solution.status == "INFEASIBLE":
        proven = not problem.restricted
        scope = "" if proven else " among the candidate domains modelled"
        return Unplaceable(
            gang.name,
            f"CP-SAT proved that no placement of the gang exists{scope}",
            _infeasible_constraint(gang),
            gang.required_level or problem.compiled.level_names[-1],
            proven=proven,
        )
    if solution.domain < 0:
        return Unplaceable(
            gang.name,
            f"CP-SAT found no placement within {time_limit_s:g} s ({solution.status})",
            "time_limit",
        )
    members = decode(problem, solution)
    compiled = problem.compiled
    level, domain = lowest_common_domain(compiled, [m.node_index for m in members])
    return Placement(
        gang=gang.name,
        members=tuple(members),
        level=compiled.level_names[level],
        domain=compiled.domain_names[domain],
        cost=placement_cost(compiled, gang, members),
        solver=SOLVER,
        optimal=solution.status == "OPTIMAL" and not problem.restricted,
    )


def _as_exact(problem: ExactProblem, hint: Placement) -> Placement:
    """The hint as this solver's answer, when the model could not even be evaluated in time."""
    cost = placement_cost(problem.compiled, problem.gang, hint.members)
    return dataclasses.replace(hint, cost=cost, solver=SOLVER, optimal=False)


def _infeasible_constraint(gang: Gang) -> str:
    if gang.nvlink_group:
        return "nvlink_group"
    if gang.required_level:
        return "required_level"
    return "capacity"


def decode(problem: ExactProblem, solution: ModelSolution) -> list[MemberPlacement]:
    """Members of the solution's prefix on the GPU sets it chose: NVLink groups into the
    domains holding their composition, everyone else into any set of their class."""
    gang = problem.gang
    slots: dict[tuple[object, int], list[int]] = defaultdict(list)
    for i, count in sorted(solution.counts.items(), key=lambda t: _slot_order(problem, t[0])):
        pat = problem.patterns[i]
        unit = pat.unit if problem.grouped else None
        slots[(unit, pat.member_class)].extend([i] * count)
    chosen: dict[int, int] = {}
    bound_members: set[int] = set()
    remaining = {u: dict(kinds) for u, kinds in solution.groups.items()}
    for group in groups_of_prefix(gang, solution.placed):
        kind = [0] * len(problem.classes)
        for i in group:
            kind[problem.member_class[i]] += 1
        key = tuple(kind)
        unit = next((u for u, kinds in remaining.items() if kinds.get(key, 0) > 0), None)
        if unit is None:
            continue
        remaining[unit][key] -= 1
        for i in group:
            chosen[i] = slots[(unit, problem.member_class[i])].pop(0)
            bound_members.add(i)
    loose = defaultdict(list)
    for (_, cls), pats in sorted(slots.items(), key=lambda t: repr(t[0][0])):
        loose[cls].extend(pats)
    for i in range(solution.placed):
        if i not in bound_members:
            chosen[i] = loose[problem.member_class[i]].pop(0)
    return [_member_placement(problem, i, chosen[i]) for i in range(solution.placed)]


def _slot_order(problem: ExactProblem, i: int) -> tuple:
    pat = problem.patterns[i]
    return (pat.node, pat.gpus)


def _member_placement(problem: ExactProblem, member: int, pattern: int) -> MemberPlacement:
    pat = problem.patterns[pattern]
    request = problem.gang.members[member].request
    if request.is_fractional:
        milli = request.gpu_milli
    elif request.gpus:
        milli = MILLI_PER_GPU
    else:
        milli = 0
    return MemberPlacement(
        member=problem.gang.members[member].name,
        node=problem.compiled.node_names[pat.node],
        node_index=pat.node,
        gpus=pat.gpus,
        gpu_milli=milli,
        cpu_milli=request.cpu_milli,
        memory_mib=request.memory_mib,
        rank=member,
    )


# ---------------------------------------------------------------------------- inputs
def _hint_counts(problem: ExactProblem, hint: Placement) -> dict[int, int]:
    """GPU-set counts of a hint placement, its nodes permuted among twins into the order the
    model imposes."""
    index = {(pat.member_class, pat.node, pat.gpus): i for i, pat in enumerate(problem.patterns)}
    by_name = {m.name: i for i, m in enumerate(problem.gang.members)}
    on_node: dict[int, list[tuple[int, tuple[int, ...]]]] = defaultdict(list)
    for m in hint.members:
        member = by_name.get(m.member)
        if member is not None:
            on_node[m.node_index].append((problem.member_class[member], tuple(sorted(m.gpus))))
    moved = dict(on_node)
    for twins in problem.twins:
        loads = sorted(
            (on_node.get(n, []) for n in twins),
            key=lambda load: (not load, -sum(_milli_of(problem, c, g) for c, g in load)),
        )
        for n, load in zip(twins, loads, strict=True):
            moved[n] = load
    counts: dict[int, int] = defaultdict(int)
    for node, load in moved.items():
        for cls, gpus in load:
            key = (cls, node, gpus)
            if key in index:
                counts[index[key]] += 1
    return dict(counts)


def _milli_of(problem: ExactProblem, cls: int, gpus: tuple[int, ...]) -> int:
    return problem.classes[cls].milli_per_gpu * len(gpus)
