"""Recorded decisions: every placement taken on the ledger during fixed replays, and the fast
path's answer to fixed placement instances, so that a change meant only to make placement
faster can be checked to change no decision (``tests/test_placement_regression.py``).

A record is the gang name, its members' node index, GPU indices, GPU share, cpu and memory,
and the placement's cost total rounded to ``COST_DECIMALS`` (compiled and numpy arithmetic may
differ in the last bits of a float; they must not differ in any decision).

Regenerate the fixture only when a change is *meant* to alter decisions, and say so in the
commit: ``python tests/placement_replay.py`` (scenarios whose data is absent are left as they
were in the fixture).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from phalanx.bench.instances import generate
from phalanx.bench.placement_report import fragmented_state
from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement, PlacementResult
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.data import SAMPLE_CLUSTER, SAMPLE_TRACE
from phalanx.simulator.fill import FGD_DEMAND
from phalanx.simulator.run import simulate
from phalanx.simulator.traces import load_trace
from phalanx.simulator.traces.openb import flat_cluster

FIXTURE = Path(__file__).parent / "data" / "placement_regression.json.gz"
COST_DECIMALS = 9
PHILLY_JOBS = 3_000
OPENB_NODES = 150
INSTANCES = 200
FRAGMENTED_NODES = 2_000
FRAGMENTED_GANGS = ((1, 1), (1, 2), (1, 4), (1, 8), (16, 4), (32, 2), (8, 8), (128, 8), (512, 1))
"""(members, GPUs per member) placed alone on the fragmented cluster."""

Record = list[Any]


def placement_record(name: str, result: PlacementResult) -> Record:
    """One decision as plain JSON values: where every member went, or why nothing fits."""
    if not isinstance(result, Placement):
        return [name, None, result.constraint]
    members = [
        [m.node_index, list(m.gpus), m.gpu_milli, m.cpu_milli, m.memory_mib] for m in result.members
    ]
    return [name, members, round(result.cost.total, COST_DECIMALS)]


@contextmanager
def recording_reserves() -> Iterator[list[Record]]:
    """Every placement any ledger reserves while the block runs, in order."""
    records: list[Record] = []
    original = ClusterState.reserve

    def reserve(self: ClusterState, placement: Placement, *args: Any, **kwargs: Any) -> Any:
        records.append(placement_record(placement.gang, placement))
        return original(self, placement, *args, **kwargs)

    ClusterState.reserve = reserve  # type: ignore[method-assign]
    try:
        yield records
    finally:
        ClusterState.reserve = original  # type: ignore[method-assign]


def sample_replay() -> list[Record]:
    """The bundled 300-job sample on 12 DGX H100 nodes, FIFO."""
    with recording_reserves() as records:
        simulate(load_trace(SAMPLE_TRACE), resolve_cluster(SAMPLE_CLUSTER), SimulationConfig())
    return records


def sample_backfill_replay() -> list[Record]:
    """The bundled sample under backfill with the FGD scorer (what-if planning, a scorer)."""
    config = SimulationConfig(policy="backfill", scorer="fgd", seed=42)
    with recording_reserves() as records:
        simulate(load_trace(SAMPLE_TRACE), resolve_cluster(SAMPLE_CLUSTER), config)
    return records


def philly_replay() -> list[Record] | None:
    """The first ``PHILLY_JOBS`` jobs of the Philly slice on its 352 nodes, FIFO."""
    path = trace_path("philly")
    if missing_reason(path):
        return None
    workload = load_trace(f"philly:{path}")
    part = replace(workload, jobs=workload.jobs[:PHILLY_JOBS])
    assert part.cluster is not None
    with recording_reserves() as records:
        simulate(part, part.cluster, SimulationConfig())
    return records


def openb_fill(policy: str) -> Callable[[], list[Record] | None]:
    """The openb fill protocol to 130 % demand on its first ``OPENB_NODES`` nodes."""

    def run() -> list[Record] | None:
        path = trace_path("alibaba-gpu-v2023-openb")
        if missing_reason(path):
            return None
        workload = load_trace(f"openb:{path}")
        assert workload.cluster is not None
        nodes = [replace(n, domains={}) for n in workload.cluster.nodes[:OPENB_NODES]]
        cluster = flat_cluster(f"openb-{OPENB_NODES}", nodes)
        config = SimulationConfig(policy=policy, seed=42)
        with recording_reserves() as records:
            simulate(workload, cluster, config, demand=FGD_DEMAND)
        return records

    return run


def instance_placements() -> list[Record]:
    """The fast path's answer to each generated optimality instance."""
    return [
        placement_record(inst.name, place(inst.gang, inst.state)) for inst in generate(INSTANCES)
    ]


def fragmented_placements() -> list[Record]:
    """Gangs of several shapes, each placed alone on a half-full fragmented cluster, and a
    sequence of one-member placements taken one after another (the state moves)."""
    state = fragmented_state(FRAGMENTED_NODES)
    records = []
    for members, gpus in FRAGMENTED_GANGS:
        gang = Gang.uniform(f"g{members}x{gpus}", members, MemberRequest(gpus=gpus))
        records.append(placement_record(gang.name, place(gang, state)))
    rng = np.random.default_rng(0)
    for i in range(200):
        gang = Gang.uniform(f"seq{i}", 1, MemberRequest(gpus=int(rng.choice([1, 2, 4, 8]))))
        result = place(gang, state)
        records.append(placement_record(gang.name, result))
        if isinstance(result, Placement):
            state.assign(result, float(i))
    return records


SCENARIOS: dict[str, Callable[[], list[Record] | None]] = {
    "sample-fifo": sample_replay,
    "sample-backfill-fgd": sample_backfill_replay,
    "instances": instance_placements,
    "fragmented": fragmented_placements,
    "philly-prefix": philly_replay,
    "openb-fill-fgd": openb_fill("fgd"),
    "openb-fill-bestfit": openb_fill("bestfit"),
}


def load_fixture() -> dict[str, list[Record]]:
    with gzip.open(FIXTURE, "rt") as f:
        return json.load(f)


def normalised(records: list[Record]) -> list[Record]:
    """Records as JSON reads them back (tuples become lists)."""
    return json.loads(json.dumps(records))


def main() -> None:
    stored = load_fixture() if FIXTURE.exists() else {}
    for name, run in SCENARIOS.items():
        records = run()
        if records is None:
            print(f"{name}: data absent, kept as stored")
            continue
        stored[name] = normalised(records)
        print(f"{name}: {len(records)} decisions")
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(FIXTURE, "wt") as f:
        json.dump(stored, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
