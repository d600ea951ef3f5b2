"""How far the fast placement path is from the exact (CP-SAT) optimum.

``python -m phalanx.bench.optimality [--instances N] [--time-limit S] [--json PATH]`` places every
instance of :mod:`bench.instances` with ``scheduler.engine.place(..., solver="fast")`` and
with :func:`scheduler.exact.solve_detailed` (given the fast answer as a hint, as the engine
does), checks both answers against the constraints, and reports:

- the relative gap ``(fast - best) / best`` per instance where both placed the same members,
  ``best`` being the CP-SAT optimum when proven, else the cheaper of the two answers; a best
  cost of 0 is replaced by ``COST_FLOOR`` in the denominator;
- the gap against CP-SAT's lower bound as well (the gap can be no larger than this);
- instances where the fast path places but CP-SAT proves that no placement exists (must be 0);
- instances where the exact path places more members than the fast path, or places where the
  fast path fails;
- how many were proven optimal or infeasible, and the largest gaps by name.

It prints a table and writes the per-instance records and the summary as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from phalanx.bench.instances import DEFAULT_INSTANCES, Instance, generate
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.cost import LATENCY_COST_PER_LEVEL, lowest_common_domain
from phalanx.scheduler.eligibility import static_mask
from phalanx.scheduler.engine import place
from phalanx.scheduler.exact import ExactResult, solve_detailed
from phalanx.scheduler.placement import Placement, PlacementResult

DEFAULT_TIME_LIMIT_S = 5.0
DEFAULT_JSON = "out/optimality.json"
COST_FLOOR = LATENCY_COST_PER_LEVEL
"""Denominator for a gap when the best cost is 0: the smallest step of the cost scale."""
GAP_TOLERANCE = 1e-6
"""Gaps below this are rounding (the CP-SAT objective is scaled to integers)."""
GAP_TARGET = 0.03
PERCENTILES = (50, 90, 95, 99)
LARGEST_SHOWN = 15
HISTOGRAM_EDGES = (0.0, 0.01, GAP_TARGET, 0.1, 0.3, 1.0, math.inf)


@dataclass(frozen=True)
class InstanceRecord:
    name: str
    seed: int
    nodes: int
    fast_members: int
    exact_members: int
    fast_cost: float | None
    exact_cost: float | None
    exact_bound: float
    exact_status: str
    proven_optimal: bool
    proven_infeasible: bool
    restricted: bool
    gap: float | None
    """(fast - best) / best, None when not comparable (a side failed or placed fewer)."""
    gap_to_bound: float | None
    fast_s: float
    exact_s: float
    violations: tuple[str, ...]


def placement_violations(inst: Instance, result: PlacementResult) -> list[str]:
    """Every constraint ``result`` breaks on ``inst`` (empty for a valid placement)."""
    if not isinstance(result, Placement):
        return []
    gang = inst.gang
    compiled = inst.state.compiled
    problems = []
    placed = [m.member for m in result.members]
    allowed = {len(gang.members), gang.quorum}
    expected = [m.name for m in gang.members[: len(placed)]]
    if len(placed) not in allowed or sorted(placed) != sorted(expected):
        problems.append(f"placed members {placed} are not the gang or its quorum prefix")
    trial = inst.state.copy()
    try:
        trial.reserve(result, now_s=0.0)
    except ValueError as err:
        problems.append(f"capacity: {err}")
    index = cluster_index(compiled)
    requests = {m.name: m.request for m in gang.members}
    for m in result.members:
        req = requests.get(m.member)
        if req is None:
            continue
        if not static_mask(compiled, index, req)[m.node_index]:
            problems.append(f"{m.member} on {m.node} fails the static filters")
        want = (1,) if req.is_fractional else (req.gpus,)
        if len(m.gpus) not in want or (req.is_fractional and m.gpu_milli != req.gpu_milli):
            problems.append(f"{m.member} got GPUs {m.gpus} at {m.gpu_milli} milli for {req}")
    level, _ = lowest_common_domain(compiled, [m.node_index for m in result.members])
    if gang.required_level and level > compiled.level_index(gang.required_level):
        problems.append(f"lowest common level {compiled.level_names[level]} above required")
    problems.extend(_nvlink_violations(inst, result))
    return problems


def _nvlink_violations(inst: Instance, result: Placement) -> list[str]:
    gang = inst.gang
    k = gang.nvlink_group
    if not k:
        return []
    compiled = inst.state.compiled
    index = cluster_index(compiled)
    by_name = {m.member: m for m in result.members}
    out = []
    names = [m.name for m in gang.members[: len(result.members)]]
    for start in range(0, len(names), k):
        group = [by_name[n] for n in names[start : start + k] if n in by_name]
        if sum(len(m.gpus) for m in group) < 2:
            continue
        nodes = {m.node_index for m in group}
        if index.nvlink_level and len(nodes) > 1:
            cliques = {int(compiled.node_domain[index.nvlink_level, n]) for n in nodes}
            if len(cliques) == 1 and all(index.nvlink_node[n] for n in nodes):
                continue
        if len(nodes) == 1:
            node = nodes.pop()
            mask = sum(1 << g for m in group for g in m.gpus)
            if any(mask & int(d) == mask for d in index.nvlink_masks[node].tolist() if d):
                continue
        out.append(f"NVLink group at {names[start]} is not inside one NVLink domain")
    return out


def measure(inst: Instance, time_limit_s: float) -> InstanceRecord:
    before = inst.state.compiled.mutable_state_bytes()
    start = time.perf_counter()
    fast = place(inst.gang, inst.state, solver="fast")
    fast_s = time.perf_counter() - start
    hint = fast if isinstance(fast, Placement) else None
    exact = solve_detailed(inst.gang, inst.state, time_limit_s=time_limit_s, hint=hint)
    violations = placement_violations(inst, fast) + placement_violations(inst, exact.result)
    if inst.state.compiled.mutable_state_bytes() != before:
        violations.append("the cluster state changed")
    fast_cost = fast.cost.total if isinstance(fast, Placement) else None
    gap, gap_bound = _gaps(fast, exact)
    return InstanceRecord(
        name=inst.name,
        seed=inst.seed,
        nodes=inst.n_nodes,
        fast_members=len(fast.members) if isinstance(fast, Placement) else 0,
        exact_members=len(exact.result.members) if isinstance(exact.result, Placement) else 0,
        fast_cost=fast_cost,
        exact_cost=exact.cost,
        exact_bound=exact.bound,
        exact_status=exact.status,
        proven_optimal=exact.optimal,
        proven_infeasible=exact.proven_infeasible,
        restricted=exact.restricted,
        gap=gap,
        gap_to_bound=gap_bound,
        fast_s=fast_s,
        exact_s=exact.wall_s,
        violations=tuple(violations),
    )


def _gaps(fast: PlacementResult, exact: ExactResult) -> tuple[float | None, float | None]:
    if not isinstance(fast, Placement):
        return None, None
    fast_cost = fast.cost.total
    if isinstance(exact.result, Placement):
        if len(exact.result.members) != len(fast.members):
            return None, None
        best = exact.cost if exact.optimal else min(exact.cost, fast_cost)
    else:
        best = fast_cost
    bound = max(exact.bound, 0.0) if math.isfinite(exact.bound) else 0.0
    return _relative(fast_cost, best), _relative(fast_cost, min(bound, best))


def _relative(cost: float, best: float) -> float:
    gap = (cost - best) / max(best, COST_FLOOR)
    return 0.0 if abs(gap) < GAP_TOLERANCE else gap


def summarise(records: Sequence[InstanceRecord]) -> dict[str, Any]:
    gaps = [r.gap for r in records if r.gap is not None]
    bound_gaps = [r.gap_to_bound for r in records if r.gap_to_bound is not None]
    exact_times = [r.exact_s for r in records]
    fast_times = [r.fast_s for r in records]
    summary: dict[str, Any] = {
        "instances": len(records),
        "compared": len(gaps),
        "mean_gap": statistics.fmean(gaps) if gaps else 0.0,
        "mean_gap_to_bound": statistics.fmean(bound_gaps) if bound_gaps else 0.0,
        "gap_percentiles": {
            f"p{q}": float(np.percentile(gaps, q)) if gaps else 0.0 for q in PERCENTILES
        },
        "max_gap": max(gaps, default=0.0),
        "fast_optimal": sum(1 for g in gaps if g <= 0.0),
        "gap_histogram": _histogram(gaps),
        "proven_optimal": sum(r.proven_optimal for r in records),
        "proven_infeasible": sum(r.proven_infeasible for r in records),
        "exact_no_answer": sum(r.exact_members == 0 and not r.proven_infeasible for r in records),
        "fast_places_proven_infeasible": sum(
            r.fast_members > 0 and r.proven_infeasible for r in records
        ),
        "exact_places_fast_fails": sum(
            r.exact_members > 0 and r.fast_members == 0 for r in records
        ),
        "exact_places_more_members": sum(
            r.fast_members > 0 and r.exact_members > r.fast_members for r in records
        ),
        "both_fail": sum(r.exact_members == 0 and r.fast_members == 0 for r in records),
        "placed": sum(r.exact_members > 0 or r.fast_members > 0 for r in records),
        "restricted_models": sum(r.restricted for r in records),
        "violations": sum(bool(r.violations) for r in records),
        "fast_median_s": statistics.median(fast_times) if fast_times else 0.0,
        "exact_median_s": statistics.median(exact_times) if exact_times else 0.0,
        "exact_max_s": max(exact_times, default=0.0),
        "largest_gaps": [
            {
                "name": r.name,
                "seed": r.seed,
                "gap": r.gap,
                "fast": r.fast_cost,
                "exact": r.exact_cost,
            }
            for r in sorted(
                (r for r in records if r.gap is not None), key=lambda r: -(r.gap or 0.0)
            )[:LARGEST_SHOWN]
        ],
    }
    return summary


def _histogram(gaps: Sequence[float]) -> dict[str, int]:
    out = {"0": sum(1 for g in gaps if g <= 0.0)}
    for lo, hi in itertools.pairwise(HISTOGRAM_EDGES):
        label = f"({lo:g}, {hi:g}]" if math.isfinite(hi) else f"> {lo:g}"
        out[label] = sum(1 for g in gaps if lo < g <= hi)
    return out


def run(count: int, time_limit_s: float, progress: bool = False) -> list[InstanceRecord]:
    records = []
    for inst in generate(count):
        record = measure(inst, time_limit_s)
        records.append(record)
        if progress:
            print(_row(record), file=sys.stderr, flush=True)
    return records


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(r: InstanceRecord) -> str:
    flag = " VIOLATION" if r.violations else ""
    return (
        f"{r.name:<48} {r.exact_status:<10} fast {_fmt(r.fast_cost):>8} ({r.fast_members:>2}) "
        f"exact {_fmt(r.exact_cost):>8} ({r.exact_members:>2}) bound {_fmt(r.exact_bound):>8} "
        f"gap {_fmt(r.gap, 4):>7} {r.exact_s:5.2f}s{flag}"
    )


def format_summary(summary: dict[str, Any]) -> str:
    pct = summary["gap_percentiles"]
    lines = [
        "fast path vs CP-SAT",
        f"  instances                         {summary['instances']}",
        f"  compared (both placed, same size) {summary['compared']}",
        f"  mean gap                          {summary['mean_gap']:.4f}  (target {GAP_TARGET})",
        f"  mean gap to CP-SAT bound          {summary['mean_gap_to_bound']:.4f}",
        "  gap percentiles                   " + "  ".join(f"{k} {v:.4f}" for k, v in pct.items()),
        f"  max gap                           {summary['max_gap']:.4f}",
        f"  fast path optimal                 {summary['fast_optimal']}",
        f"  proven optimal (CP-SAT)           {summary['proven_optimal']} of {summary['placed']} "
        "placeable",
        f"  proven infeasible                 {summary['proven_infeasible']}",
        f"  fast places, proven infeasible    {summary['fast_places_proven_infeasible']}",
        f"  exact places, fast fails          {summary['exact_places_fast_fails']}",
        f"  exact places more members         {summary['exact_places_more_members']}",
        f"  exact without answer (time limit) {summary['exact_no_answer']}",
        f"  restricted models                 {summary['restricted_models']}",
        f"  constraint violations             {summary['violations']}",
        f"  median time fast / exact          {summary['fast_median_s']:.4f} s / "
        f"{summary['exact_median_s']:.3f} s (max {summary['exact_max_s']:.2f} s)",
        "  gap histogram",
    ]
    lines += [f"    {label:<14} {count}" for label, count in summary["gap_histogram"].items()]
    lines.append("  largest gaps")
    lines += [
        f"    {g['name']:<48} gap {g['gap']:.4f}  fast {g['fast']:.4f}  exact {_fmt(g['exact'], 4)}"
        for g in summary["largest_gaps"]
        if g["gap"] > 0
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phalanx.bench.optimality", description=__doc__)
    parser.add_argument("--instances", type=int, default=DEFAULT_INSTANCES)
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S)
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--quiet", action="store_true", help="no per-instance lines")
    args = parser.parse_args(argv)
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    if args.time_limit <= 0:
        parser.error("--time-limit must be positive")
    records = run(args.instances, args.time_limit, progress=not args.quiet)
    summary = summarise(records)
    print(format_summary(summary))
    payload = {
        "time_limit_s": args.time_limit,
        "summary": summary,
        "instances": [asdict(r) for r in records],
    }
    target = Path(args.json)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(_finite(payload), indent=1))
    print(f"wrote {args.json}")
    return 0


def _finite(value: Any) -> Any:
    """Infinite bounds as strings: JSON has no infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
