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

The model is built in layers: its variables and hard constraints in
:mod:`scheduler.exact_model_vars`, its cost terms in :mod:`scheduler.exact_model_costs`; this
module weighs them into the lexicographic objective, solves and reads the solution.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from ortools.sat.python import cp_model
from phalanx.scheduler.exact_model_costs import CostTerms
from phalanx.scheduler.exact_model_vars import COST_SCALE, RANK_COST
from phalanx.scheduler.exact_problem import ExactProblem

DEFAULT_NUM_WORKERS = 2
SOLVER_SEED = 7
"""Fixed so that a run with one worker is reproducible."""

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


class PlacementModel(CostTerms):
    """Builds the model once; :meth:`solve` may be called with a hint."""

    def __init__(self, problem: ExactProblem) -> None:
        super().__init__(problem)
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
