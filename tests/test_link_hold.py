"""The link-hold permit (issue 14, goal 5): a gang that fits only on slower links than on the
empty cluster waits at most the run time those links would cost it, only while a better
domain is expected in time, and the cycle and the simulator honour the hold."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner
from phalanx.bench.topology_across_nodes import rail_fat_tree_cluster
from phalanx.policies.permit.link_hold import DEFAULT_SHARE, LinkHold
from phalanx.policies.queue.simple import FifoPolicy
from phalanx.policies.registry import PolicyOptionError, get_permit, get_scorer
from phalanx.scheduler.cost import bottleneck_comm_cost
from phalanx.scheduler.cycle import SchedulingCycle
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import QueueContext, RunningGang
from phalanx.scheduler.link_stretch import link_stretch
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.reasons import Reason
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.run import simulate
from phalanx.simulator.slowdown import SlowdownModel
from phalanx.simulator.traces import load_trace

from phalanx.cli import main as cli_main

RUN_S = 36_000.0
"""The held gang's own run-time estimate (10 h): its loss on slower links is minutes."""
NODE = MemberRequest(gpus=8)


def two_node_gang(name: str = "g", submit_s: float = 0.0, run_s: float | None = RUN_S) -> Gang:
    return Gang.uniform(
        name, 2, NODE, comm_intensity=1.0, submit_time_s=submit_s, runtime_estimate_s=run_s
    )


def split_cluster() -> tuple[ClusterState, list[RunningGang]]:
    """Two scalable units of 4 DGX nodes; one free node in each (nodes 0 and 4), the other
    six run one-node gangs ending at 100 s (node 1), 200 s, ... (binpack fills in order)."""
    state = ClusterState(rail_fat_tree_cluster(8, 4, 2.0).compile())
    running = []
    binpack = get_scorer("binpack")
    for i in range(8):
        gang = Gang.uniform(f"r{i}", 1, NODE)
        result = place(gang, state, scorer=binpack)
        assert isinstance(result, Placement)
        assert [m.node_index for m in result.members] == [i]
        state.assign(result, 0.0)
        running.append(RunningGang(gang, result, 0.0, 100.0 * i))
    for name in ("r0", "r4"):
        state.release(name)
    return state, [r for r in running if r.gang.name not in ("r0", "r4")]


def ctx(state: ClusterState, running: list[RunningGang], now_s: float, *gangs: Gang):
    return QueueContext(now_s=now_s, state=state, running=running, pending=list(gangs))


def crossing(state: ClusterState, gang: Gang) -> Placement:
    result = place(gang, state)
    assert isinstance(result, Placement)
    assert {m.node_index for m in result.members} == {0, 4}
    return result


def expected_hold_s(state: ClusterState, placement: Placement, gang: Gang) -> float:
    hold = LinkHold()
    best, _ = hold.best_case(gang, state.compiled)
    ratio = bottleneck_comm_cost(state.compiled, placement.members) / best
    assert ratio > 1.0
    return DEFAULT_SHARE * RUN_S * (link_stretch(gang.comm_intensity, ratio) - 1.0)


def test_a_gang_that_crosses_units_is_held_until_its_loss_is_spent() -> None:
    state, running = split_cluster()
    gang = two_node_gang()
    placement = crossing(state, gang)
    hold_s = expected_hold_s(state, placement, gang)
    assert 100.0 < hold_s < RUN_S
    permit = LinkHold(look_ahead=False)
    why = permit.permit(gang, placement, ctx(state, running, 0.0, gang))
    assert why is not None and "faster links" in why
    assert permit.next_change_s(ctx(state, running, 0.0, gang)) == pytest.approx(hold_s)
    assert permit.permit(gang, placement, ctx(state, running, hold_s - 1.0, gang)) is not None
    assert permit.permit(gang, placement, ctx(state, running, hold_s, gang)) is None
    assert permit.next_change_s(ctx(state, running, hold_s, gang)) is None


def test_no_hold_when_no_better_domain_is_expected_before_the_hold_ends() -> None:
    state, running = split_cluster()
    gang = two_node_gang()
    placement = crossing(state, gang)
    never_ending = [RunningGang(r.gang, r.placement, 0.0, math.inf) for r in running]
    blind = LinkHold(look_ahead=False, default_runtime_s=1e9)
    ahead = LinkHold(default_runtime_s=1e9)
    for permit in (blind, ahead):
        permit.estimates.record_completion(Gang.uniform("x", 1, NODE), 1e9)
    assert blind.permit(gang, placement, ctx(state, never_ending, 0.0, gang)) is not None
    assert ahead.permit(gang, placement, ctx(state, never_ending, 0.0, gang)) is None
    # a unit frees at 100 s (node 1 joins node 0): worth holding for
    assert ahead.permit(gang, placement, ctx(state, running, 0.0, gang)) is not None


def test_no_hold_when_links_are_already_the_best_or_there_are_none() -> None:
    state, running = split_cluster()
    state.release("r1")  # node 1 frees: unit 0 has two free nodes
    permit = LinkHold()
    gang = two_node_gang()
    inside = place(gang, state)
    assert isinstance(inside, Placement)
    assert {m.node_index for m in inside.members} <= {0, 1, 2, 3}
    assert permit.permit(gang, inside, ctx(state, running, 0.0, gang)) is None
    single = Gang.uniform("one", 1, MemberRequest(gpus=1), runtime_estimate_s=RUN_S)
    alone = place(single, state)
    assert isinstance(alone, Placement)
    assert permit.permit(single, alone, ctx(state, running, 0.0, single)) is None


def test_share_and_cap_bound_the_hold() -> None:
    state, running = split_cluster()
    gang = two_node_gang()
    placement = crossing(state, gang)
    hold_s = expected_hold_s(state, placement, gang)
    now = ctx(state, running, hold_s / 2, gang)
    blind = {"look_ahead": False, "since_fit": False}  # counted from submission (0 s)
    assert LinkHold(**blind).permit(gang, placement, now) is not None
    assert LinkHold(share=0.25, **blind).permit(gang, placement, now) is None
    assert LinkHold(max_hold_s=hold_s / 4, **blind).permit(gang, placement, now) is None
    since_fit = LinkHold(look_ahead=False)  # counted from the first slow fit
    assert since_fit.permit(gang, placement, now) is not None
    assert since_fit.permit(gang, placement, ctx(state, running, hold_s, gang)) is not None
    assert since_fit.permit(gang, placement, ctx(state, running, 1.5 * hold_s, gang)) is None
    assert LinkHold(share=0).permit(gang, placement, ctx(state, running, 0.0, gang)) is None


def test_the_cycle_reports_a_held_gang_and_starts_it_once_the_hold_ends() -> None:
    state, running = split_cluster()
    gang = two_node_gang()
    hold_s = expected_hold_s(state, crossing(state, gang), gang)
    cycle = SchedulingCycle(state, FifoPolicy(), permit=LinkHold(look_ahead=False))
    outcome = cycle.run([gang], running, now_s=10.0)
    assert outcome.codes == {"g": Reason.LINK_HOLD}
    assert "g" not in state.holdings
    outcome = cycle.run([gang], running, now_s=10.0 + hold_s)
    assert [g.name for g, _ in outcome.started] == ["g"]


@pytest.mark.parametrize(
    ("options", "problem"),
    [({"share": "lots"}, "share"), ({"max_hold_s": -1}, "max_hold_s"), ({"wait": 1}, "wait")],
)
def test_bad_options_are_named(options, problem) -> None:
    with pytest.raises((PolicyOptionError, ValueError), match=problem):
        get_permit("link-hold", **options)


def test_the_simulator_runs_with_the_hold_and_completes_every_job() -> None:
    spec = (
        "synthetic:jobs=150,rate_per_h=10,gpus=1:70/8:10/16:15/32:5,classes=LM:1/ResNet-50:1,seed=3"
    )
    workload = load_trace(spec)
    cluster = rail_fat_tree_cluster(8, 4, 2.0)
    base = SimulationConfig(slowdown=SlowdownModel(enabled=True), oracle_estimates=True)
    held = SimulationConfig(
        slowdown=SlowdownModel(enabled=True), oracle_estimates=True, permit="link-hold"
    )
    results = [simulate(workload, cluster, c) for c in (base, held)]
    for result in results:
        assert all(r.status == "completed" for r in result.runs)
    waited = [
        r for r in results[1].runs if r.wait_s_by_code and Reason.LINK_HOLD in r.wait_s_by_code
    ]
    assert waited, "no gang was ever held on a contended two-unit cluster"


def test_simulate_names_an_unknown_permit_in_one_line() -> None:
    out = CliRunner().invoke(cli_main, ["simulate", "--permit", "wait-forever"])
    assert out.exit_code == 2
    assert "wait-forever" in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1


def test_the_topology_report_runs_every_variant_on_a_small_workload(capsys) -> None:
    from phalanx.bench import topology_across_nodes as report

    assert report.main(["--seeds", "0", "--jobs", "120"]) == 0
    out = capsys.readouterr().out
    for variant in report.VARIANTS:
        assert f"| {variant.label} |" in out
    assert f"{report.GOAL_VARIANT.label}: slowdown binpack / it" in out


def test_the_nodes_a_held_gang_waits_for_are_kept_from_gangs_that_fit_elsewhere() -> None:
    """The gang is held for unit 0 (node 0 free, node 1 freeing at 100 s): a one-node gang
    arriving meanwhile goes to node 4 instead of node 0, the next one, which fits nowhere
    else, takes node 0 after all, and nothing is kept once the hold is over."""
    state, running = split_cluster()
    gang = two_node_gang()
    permit = LinkHold()
    cycle = SchedulingCycle(state, FifoPolicy(), permit=permit)
    first = Gang.uniform("first", 1, NODE, submit_time_s=1.0)
    outcome = cycle.run([gang, first], running, now_s=1.0)
    assert outcome.codes == {"g": Reason.LINK_HOLD}
    assert permit.kept_nodes(gang, 1.0) is None  # nothing is kept from the held gang itself
    assert permit.kept_nodes(first, 1.0).tolist() == [0, 1]
    assert [m.node_index for _, p in outcome.started for m in p.members] == [4]
    second = Gang.uniform("second", 1, NODE, submit_time_s=2.0)
    outcome = cycle.run([gang, second], running, now_s=2.0)
    assert [m.node_index for _, p in outcome.started for m in p.members] == [0]
    hold_end_s = permit.next_change_s(ctx(state, running, 2.0, gang))
    assert permit.kept_nodes(second, hold_end_s) is None


def test_without_keeping_nodes_a_one_node_gang_takes_the_first_free_node() -> None:
    state, running = split_cluster()
    cycle = SchedulingCycle(state, FifoPolicy(), permit=LinkHold(keep_nodes=False))
    first = Gang.uniform("first", 1, NODE, submit_time_s=1.0)
    outcome = cycle.run([two_node_gang(), first], running, now_s=1.0)
    assert outcome.codes == {"g": Reason.LINK_HOLD}
    assert [m.node_index for _, p in outcome.started for m in p.members] == [0]
