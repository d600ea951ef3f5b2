"""Multi-node gangs and the scorer (issue 14, goal 5): the ``topology`` scorer keeps a
scalable unit whole for a gang where ``binpack`` breaks it, a gang that must cross the spine
takes the smallest pieces, and the simulator's JSON reports the mean slowdown of the jobs that
span nodes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from phalanx.bench.topology_across_nodes import rail_fat_tree_cluster, workload_spec
from phalanx.policies.registry import get_scorer
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.metrics import summarize
from phalanx.simulator.run import simulate
from phalanx.simulator.slowdown import SlowdownModel
from phalanx.simulator.traces import load_trace
from phalanx.topology.clusterfile import load_cluster_file

from phalanx.cli import main as cli_main
from tests.placement_helpers import assert_valid_placement, fill_nodes

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "clusters" / "rail-fat-tree-32.yaml"


def two_units(busy: list[int], units: int = 2) -> ClusterState:
    """DGX H100 nodes in SUs of 4 under a 2:1 spine, ``busy`` nodes full."""
    state = ClusterState(rail_fat_tree_cluster(4 * units, 4, 2.0).compile())
    fill_nodes(state, busy)
    return state


def start(state: ClusterState, gang: Gang, scorer: str, now_s: float) -> Placement:
    result = place(gang, state, scorer=get_scorer(scorer))
    assert isinstance(result, Placement), result
    assert_valid_placement(gang, result, state)
    state.assign(result, now_s)
    return result


def unit_of(state: ClusterState) -> np.ndarray:
    """Each node's scalable unit, numbered from 0."""
    compiled = state.compiled
    return compiled.node_domain[1] - compiled.level_domain_range[1][0]


def units(state: ClusterState, placement: Placement) -> set[int]:
    return {int(unit_of(state)[m.node_index]) for m in placement.members}


@pytest.mark.parametrize(("scorer", "gang_units"), [("binpack", 2), ("topology", 1)])
def test_topology_keeps_a_unit_whole_for_the_next_multi_node_gang(scorer, gang_units):
    # su0 has two free nodes (2, 3), su1 one (7); an 8-GPU job comes first, then 2 x 8 GPUs
    state = two_units(busy=[0, 1, 4, 5, 6])
    single = start(state, Gang.uniform("one", 1, MemberRequest(gpus=8)), scorer, 0.0)
    gang = start(state, Gang.uniform("two", 2, MemberRequest(gpus=8)), scorer, 1.0)
    # binpack takes the first empty node (su0's) and leaves the gang to cross the spine;
    # topology takes su1's lone node, so the gang stays inside su0's leaf
    assert len(units(state, gang)) == gang_units
    assert gang.level == ("su" if gang_units == 1 else "spine")
    assert units(state, single) == ({1} if scorer == "topology" else {0})


def test_a_gang_across_the_spine_takes_the_smallest_pieces_under_topology():
    # whole free nodes per SU: su0 3 (1, 2, 3), su1 to su3 one each; a 4-node gang fits in none
    busy = [0, 4, 5, 6, 8, 9, 10, 12, 13, 14]
    gang = Gang.uniform("four", 4, MemberRequest(gpus=8))
    free_after = {}
    for scorer in ("binpack", "topology"):
        state = two_units(busy, units=4)
        placed = start(state, gang, scorer, 0.0)
        assert placed.level == "spine"
        c = state.compiled
        whole = c.free_gpu_count == c.gpu_count
        free_after[scorer] = sorted(np.bincount(unit_of(state), weights=whole).tolist())
    # binpack: the fewest units (3 of su0 + 1), leaving two units with one node each;
    # topology: one node from each small unit, then one of su0's, which keeps two together
    assert free_after["binpack"] == [0, 0, 1, 1]
    assert free_after["topology"] == [0, 0, 0, 2]


def test_a_weighted_mix_keeps_topologys_view_on_domains():
    busy = [0, 4, 5, 6, 8, 9, 10, 12, 13, 14]
    gang = Gang.uniform("four", 4, MemberRequest(gpus=8))
    alone = place(gang, two_units(busy, units=4), scorer=get_scorer("topology"))
    mixed = place(gang, two_units(busy, units=4), scorer=get_scorer("0.5*topology+0.5*binpack"))
    assert isinstance(alone, Placement) and isinstance(mixed, Placement)
    assert sorted(m.node_index for m in mixed.members) == sorted(
        m.node_index for m in alone.members
    )


def test_binpack_keeps_the_engines_own_split_across_units():
    busy = [0, 4, 5, 6, 8, 9, 10, 12, 13, 14]
    gang = Gang.uniform("four", 4, MemberRequest(gpus=8))
    with_binpack = place(gang, two_units(busy, units=4), scorer=get_scorer("binpack"))
    without = place(gang, two_units(busy, units=4))
    assert isinstance(with_binpack, Placement) and isinstance(without, Placement)
    assert sorted(m.node_index for m in with_binpack.members) == sorted(
        m.node_index for m in without.members
    )


def test_json_reports_the_mean_slowdown_of_multi_node_jobs():
    workload = load_trace(workload_spec(jobs=150, rate_per_h=40.0, seed=3))
    config = SimulationConfig(scorer="binpack", slowdown=SlowdownModel(enabled=True))
    result = simulate(workload, rail_fat_tree_cluster(), config)
    summary = summarize(result)
    spans = [r for r in result.runs if not math.isnan(r.first_start_s) and r.nodes > 1]
    assert summary["jobs_multinode"] == len(spans) > 0
    want = np.mean([r.stretch - 1.0 for r in spans])  # --slowdown on: the applied stretch
    assert summary["mean_comm_slowdown_multinode"] == pytest.approx(want, abs=1e-12)
    json.dumps(summary)


def test_simulate_json_has_the_field_without_slowdown():
    # the bundled sample on one SU: its five 16-GPU jobs span nodes and get the best links
    out = CliRunner().invoke(cli_main, ["simulate", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["jobs_multinode"] == 5
    assert summary["mean_comm_slowdown_multinode"] == 0.0


def test_example_cluster_file_is_the_benchmarks_cluster():
    from_file = load_cluster_file(EXAMPLE).compile()
    built = rail_fat_tree_cluster().compile()
    assert from_file.level_names == built.level_names
    assert np.array_equal(from_file.node_domain, built.node_domain)
    assert np.array_equal(from_file.level_cost, built.level_cost, equal_nan=True)
    assert np.array_equal(from_file.node_egress_cost, built.node_egress_cost)
