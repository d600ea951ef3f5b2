"""``phalanx place``: where would this gang go, and why (or why not)?

Exit status: 0 when the gang is placed, 1 when it does not fit now (the reason is printed),
2 for bad input (``error: ...`` on stderr).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

import click
from phalanx.scheduler.cluster_index import cluster_index
from phalanx.scheduler.cost import member_costs
from phalanx.scheduler.engine import SOLVERS, place
from phalanx.scheduler.gang import Gang, GangSpecError
from phalanx.scheduler.gangspec import load_gang_file
from phalanx.scheduler.kernels import warm_up
from phalanx.scheduler.placement import CostBreakdown, Placement, PlacementResult
from phalanx.scheduler.state import ClusterState
from phalanx.scheduler.statefile import StateFileError, load_state_file

EXIT_UNPLACEABLE = 1
EXIT_BAD_INPUT = 2
MS_PER_S = 1000.0


def _fail(message: str) -> NoReturn:
    for line in message.splitlines():
        click.echo(f"error: {line.strip()}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@click.command("place")
@click.option(
    "--cluster",
    "cluster_spec",
    required=True,
    metavar="PRESET|FILE",
    help="A cluster preset (superpod-h100:256) or a cluster file.",
)
@click.option(
    "--gang",
    "gang_file",
    required=True,
    metavar="GANG.json",
    help="The gang spec (JSON or YAML; see docs/gang-spec.md).",
)
@click.option(
    "--state",
    "state_file",
    metavar="STATE.json",
    help="Allocations to apply first (see docs/gang-spec.md).",
)
@click.option("--solver", type=click.Choice(SOLVERS), default="fast", show_default=True)
@click.option(
    "--time-limit",
    "time_limit_s",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Exact solver time limit, seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(
    cluster_spec: str,
    gang_file: str,
    state_file: str | None,
    solver: str,
    time_limit_s: float,
    as_json: bool,
) -> None:
    """Where would this gang go (per member node and GPUs, with the cost broken down by
    term), or why does it not fit (which constraint failed at which level)?"""
    from phalanx.topology.sources import load_cluster

    try:
        cluster = load_cluster(cluster_spec)
        state = ClusterState(cluster.compile())
        gang = load_gang_file(gang_file)
        if state_file:
            load_state_file(state_file, state)
        start = time.perf_counter()
        warm_up()
        cluster_index(state.compiled)
        placing = time.perf_counter()
        result = place(gang, state, solver=solver, time_limit_s=time_limit_s)
        elapsed_ms = (time.perf_counter() - placing) * MS_PER_S
        startup_ms = (placing - start) * MS_PER_S
    except (GangSpecError, StateFileError) as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    per_member = (
        member_costs(state.compiled, gang, result.members)
        if isinstance(result, Placement)
        else None
    )
    document = result_to_dict(result, gang, elapsed_ms, startup_ms, per_member)
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(format_result(document, cluster.name))
    if not isinstance(result, Placement):
        sys.exit(EXIT_UNPLACEABLE)


def result_to_dict(
    result: PlacementResult,
    gang: Gang,
    elapsed_ms: float,
    startup_ms: float = 0.0,
    per_member: Sequence[CostBreakdown] | None = None,
) -> dict:
    """The JSON form of a placement or of the reason there is none; ``elapsed_ms`` is the
    placement alone, ``startup_ms`` the one-time kernel loading and cluster indexing,
    ``per_member`` each member's cost terms (:func:`scheduler.cost.member_costs`), in the
    placement's member order."""
    head = {
        "gang": gang.name,
        "members_asked": len(gang.members),
        "elapsed_ms": elapsed_ms,
        "startup_ms": startup_ms,
    }
    if not isinstance(result, Placement):
        return {
            **head,
            "placed": False,
            "reason": result.reason,
            "constraint": result.constraint,
            "level": result.level,
            "proven": result.proven,
        }
    return {
        **head,
        "placed": True,
        "solver": result.solver,
        "optimal": result.optimal,
        "level": result.level,
        "domain": result.domain,
        "members": [
            {
                "rank": m.rank,
                "member": m.member,
                "node": m.node,
                "gpus": list(m.gpus),
                "gpu_milli": m.gpu_milli,
                "cpu_milli": m.cpu_milli,
                "memory_mib": m.memory_mib,
                **({"cost": per_member[i].as_dict()} if per_member is not None else {}),
            }
            for i, m in enumerate(result.members)
        ],
        "cost": result.cost.as_dict(),
        "comm_intensity": gang.comm_intensity,
    }


COST_NOTES = {
    "communication": "bottleneck link x comm_intensity",
    "fragmentation": "capacity left stranded on touched nodes",
    "misalignment": "NUMA splits and off-rail members",
    "latency": "fabric levels climbed",
}


MEMBER_COST_TERMS = ("communication", "fragmentation", "misalignment")
MEMBER_COST_HEADS = ("comm", "frag", "misalign")
"""Per-member columns; latency is the gang's alone."""


def format_result(doc: dict, cluster_name: str) -> str:
    """Human-readable form of :func:`result_to_dict`."""
    lines = [f"gang {doc['gang']} ({doc['members_asked']} members) on {cluster_name}"]
    if not doc["placed"]:
        where = f" at level {doc['level']}" if doc["level"] else ""
        lines += [
            "does not fit now",
            f"  constraint: {doc['constraint']}{where}",
            f"  reason: {doc['reason']}",
        ]
        return "\n".join(lines)
    optimal = {True: ", proven optimal", False: ", not proven optimal", None: ""}[doc["optimal"]]
    lines.append(
        f"placed in {doc['domain']} (level {doc['level']}), {len(doc['members'])} members, "
        f"solver {doc['solver']}{optimal}, {doc['elapsed_ms']:.1f} ms "
        f"(after {doc['startup_ms']:.0f} ms start-up)"
    )
    with_costs = all("cost" in m for m in doc["members"])
    rows = [("rank", "member", "node", *(MEMBER_COST_HEADS if with_costs else ()), "gpus")]
    for m in doc["members"]:
        gpus = _gpu_list(m["gpus"])
        if m["gpus"] and m["gpu_milli"] < 1000:
            gpus += f" ({m['gpu_milli']} milli)"
        terms = tuple(f"{m['cost'][t]:.3f}" for t in MEMBER_COST_TERMS) if with_costs else ()
        rows.append((str(m["rank"]), m["member"], m["node"], *terms, gpus or "-"))
    columns = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(columns)]
    for r in rows:
        cells = "  ".join(r[i].ljust(widths[i]) for i in range(columns))
        lines.append(f"  {cells}  {r[-1]}")
    lines.append("cost (lower is better):")
    for term, value in doc["cost"].items():
        note = f"  {COST_NOTES[term]}" if term in COST_NOTES else ""
        lines.append(f"  {term:14s} {value:8.3f}{note}")
    return "\n".join(lines)


def _gpu_list(gpus: list[int]) -> str:
    """``[0, 1, 2, 3, 6]`` -> ``"0-3,6"``."""
    runs: list[list[int]] = []
    for g in sorted(gpus):
        if runs and runs[-1][1] == g - 1:
            runs[-1][1] = g
        else:
            runs.append([g, g])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
