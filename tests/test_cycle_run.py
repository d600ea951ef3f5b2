"""The scheduling cycle: ordering, admission, starting, reservations, preemption, reasons."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from phalanx.policies.registry import get_preemption_policy, get_queue_policy, get_scorer
from phalanx.scheduler.cycle import SchedulingCycle
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import (
    PlaceFunction,
    PreemptionDecision,
    QueueContext,
    RunningGang,
)
from phalanx.scheduler.placement import Placement, PlacementResult
from phalanx.scheduler.state import ClusterState, HoldingPhase
from phalanx.topology.presets import cluster_preset


def fresh_state(nodes: int = 2) -> ClusterState:
    return ClusterState(cluster_preset(f"dgx-h100:{nodes}").compile())


def gang(name: str, members: int, gpus: int, submit_s: float = 0.0, **kw: object) -> Gang:
    return Gang.uniform(name, members, MemberRequest(gpus=gpus), submit_time_s=submit_s, **kw)


def running(state: ClusterState, g: Gang, start_s: float = 0.0) -> RunningGang:
    placement = place(g, state)
    assert isinstance(placement, Placement)
    state.assign(placement, start_s)
    return RunningGang(g, placement, start_s, float("inf"))


def test_starts_in_order_and_explains_the_rest() -> None:
    state = fresh_state(2)
    cycle = SchedulingCycle(state, get_queue_policy("fifo"))
    a, b, c = gang("a", 1, 8, 0), gang("b", 1, 8, 1), gang("c", 1, 4, 2)
    out = cycle.run([c, b, a], [], now_s=5.0)
    assert [g.name for g, _ in out.started] == ["a", "b"]
    assert set(out.waiting) == {"c"}
    assert "capacity" in out.waiting["c"]
    assert state.holdings["a"].phase is HoldingPhase.COMMITTED
    assert not out.preempted
    state.check_invariants()


def test_reserve_ttl_holds_instead_of_committing() -> None:
    state = fresh_state(1)
    out = SchedulingCycle(state, get_queue_policy("fifo")).run(
        [gang("a", 1, 4)], [], now_s=10.0, reserve_ttl_s=30.0
    )
    assert out.started
    holding = state.holdings["a"]
    assert holding.phase is HoldingPhase.RESERVED
    assert holding.expires_at_s == 40.0


def test_strict_fifo_blocks_behind_the_head_best_effort_does_not() -> None:
    head, small = gang("head", 2, 8, 0), gang("small", 1, 2, 1)
    for strict, started in ((True, []), (False, ["small"])):
        state = fresh_state(2)
        holder = running(state, gang("holder", 1, 4))
        out = SchedulingCycle(state, get_queue_policy("fifo", strict=strict)).run(
            [head, small], [holder], now_s=1.0
        )
        assert [g.name for g, _ in out.started] == started
        if strict:
            assert out.waiting["small"] == (
                "waiting behind blocked gang 'head' (position 2 of 2 in the queue)"
            )
            assert out.codes == {"head": "capacity", "small": "waiting_behind"}
            assert set(out.unplaced) == {"head"}


class RecordingQueue:
    """FIFO that refuses gangs named ``no-*`` and records what admit saw running."""

    name = "recording"

    def __init__(self) -> None:
        self.seen_running: list[list[str]] = []

    def order(self, pending: Sequence[Gang], ctx: QueueContext) -> list[Gang]:
        return sorted(pending, key=lambda g: g.submit_time_s)

    def admit(self, g: Gang, ctx: QueueContext) -> str | None:
        self.seen_running.append([r.gang.name for r in ctx.running])
        assert {p.name for p in ctx.pending} >= {g.name}
        return "quota says no" if g.name.startswith("no-") else None

    def accept(self, g: Gang, placement: Placement, ctx: QueueContext) -> str | None:
        return None

    def after_blocked(self, g: Gang, result: PlacementResult, ctx: QueueContext) -> bool:
        return True


def test_admission_refusals_wait_and_later_gangs_see_earlier_starts() -> None:
    queue = RecordingQueue()
    out = SchedulingCycle(fresh_state(2), queue).run(
        [gang("a", 1, 2, 0), gang("no-b", 1, 2, 1), gang("c", 1, 2, 2)], [], now_s=0.0
    )
    assert [g.name for g, _ in out.started] == ["a", "c"]
    assert out.waiting == {"no-b": "quota says no"}
    assert queue.seen_running == [[], ["a"], ["a"]]


def test_invalid_gangs_wait_with_the_spec_error_and_do_not_block() -> None:
    bad = Gang.uniform("bad", 1, MemberRequest(gpus=1, gpu_products=("NVIDIA-NOPE",)))
    out = SchedulingCycle(fresh_state(1), get_queue_policy("fifo", strict=True)).run(
        [bad, gang("ok", 1, 1, 1)], [], now_s=0.0
    )
    assert out.waiting["bad"].startswith("invalid gang:")
    assert "NVIDIA-NOPE" in out.waiting["bad"]
    assert [g.name for g, _ in out.started] == ["ok"]


def test_a_gang_already_holding_is_not_placed_twice() -> None:
    state = fresh_state(1)
    held = running(state, gang("a", 1, 2))
    out = SchedulingCycle(state, get_queue_policy("fifo")).run([held.gang], [held], now_s=0.0)
    assert out.waiting == {"a": "already holds a placement"}


def test_preemption_releases_whole_victims_and_starts_the_preemptor() -> None:
    state = fresh_state(2)
    low1 = running(state, gang("low1", 1, 8, priority=0))
    low2 = running(state, gang("low2", 2, 4, priority=1))
    hi = gang("hi", 1, 8, priority=5)
    cycle = SchedulingCycle(
        state, get_queue_policy("priority"), get_preemption_policy("priority", min_runtime_s=0)
    )
    out = cycle.run([hi], [low1, low2], now_s=1000.0)
    assert [g.name for g, _ in out.started] == ["hi"]
    (decision,) = out.preempted
    assert decision.victims == ("low1",)
    assert out.evicted == ["low1"]
    assert "low1" not in state.holdings and "low2" in state.holdings
    assert "priority preemption" in decision.reason
    state.check_invariants()


class FixedPreemption:
    """Returns a canned decision, to check the cycle's own plan check."""

    name = "fixed"

    def __init__(self, decision: PreemptionDecision) -> None:
        self.decision = decision

    def select_victims(
        self, preemptor: Gang, ctx: QueueContext, place: PlaceFunction
    ) -> PreemptionDecision | None:
        return self.decision


@pytest.mark.parametrize("flaw", ["stranger", "no-room", "wrong-gang"])
def test_a_bad_preemption_plan_evicts_nothing(flaw: str) -> None:
    state = fresh_state(2)
    a = running(state, gang("a", 1, 8))
    b = running(state, gang("b", 1, 8))
    hi = gang("hi", 2, 8, priority=9)
    fits = place(hi, ClusterState(cluster_preset("dgx-h100:2").compile()))
    assert isinstance(fits, Placement)
    victims = {"stranger": ("a", "zzz"), "no-room": ("a",), "wrong-gang": ("a", "b")}[flaw]
    preemptor = "other" if flaw == "wrong-gang" else "hi"
    decision = PreemptionDecision(preemptor, victims, fits, "canned")
    before = state.compiled.mutable_state_bytes()
    out = SchedulingCycle(state, get_queue_policy("fifo"), FixedPreemption(decision)).run(
        [hi], [a, b], now_s=0.0
    )
    assert not out.started and not out.preempted
    assert "preemption not taken" in out.waiting["hi"]
    assert state.compiled.mutable_state_bytes() == before


def test_injected_place_function_is_used_for_placement_and_planning() -> None:
    calls: list[str] = []

    def fake(g: Gang, s: ClusterState) -> PlacementResult:
        calls.append(g.name)
        return place(g, s)

    out = SchedulingCycle(fresh_state(1), get_queue_policy("fifo"), place=fake).run(
        [gang("a", 1, 1)], [], now_s=0.0
    )
    assert calls == ["a"] and out.started


def test_state_observing_scorers_are_bound_to_the_cycle_state() -> None:
    state = fresh_state(2)
    scorer = get_scorer("gpu-clustering")
    SchedulingCycle(state, get_queue_policy("fifo"), scorer=scorer).run(
        [gang("a", 1, 1), gang("b", 1, 1, 1)], [], now_s=0.0
    )
    assert scorer.state is state  # type: ignore[attr-defined]
    nodes = {state.holdings[n].placement.members[0].node for n in ("a", "b")}
    assert len(nodes) == 1, "gpu-clustering puts the second 1-GPU pod next to the first"
