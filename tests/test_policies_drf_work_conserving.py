"""DRF is work conserving: after a scheduling cycle, no gang waits while free room fits it."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phalanx.policies.queue.drf import DrfPolicy
from phalanx.scheduler.cycle import SchedulingCycle
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.interfaces import RunningGang
from phalanx.scheduler.placement import Placement
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

shapes = st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from([1, 2, 4, 8, 16]))


def job(name: str, gpus: int, tenant: str, at: float = 0.0) -> Gang:
    pods, per_pod = (gpus // 8, 8) if gpus > 8 else (1, gpus)
    return Gang.uniform(
        name, pods, MemberRequest(gpus=per_pod), tenant=tenant, queue=tenant, submit_time_s=at
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(shapes, max_size=6),
    st.lists(shapes, min_size=1, max_size=10),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from([1.0, 2.0, 3.0])),
)
def test_drf_leaves_no_gang_waiting_that_fits_the_free_room(
    running: list[tuple[str, int]], pending: list[tuple[str, int]], weights: dict[str, float]
) -> None:
    state = ClusterState(cluster_preset("dgx-h100:3").compile())
    live = []
    for i, (tenant, gpus) in enumerate(running):
        g = job(f"run{i}", gpus, tenant)
        result = place(g, state)
        if isinstance(result, Placement):
            state.assign(result, 0.0)
            live.append(RunningGang(g, result, 0.0, math.inf))
    gangs = [job(f"p{i}", gpus, t, at=i) for i, (t, gpus) in enumerate(pending)]
    out = SchedulingCycle(state, DrfPolicy(weights=weights)).run(gangs, live, now_s=0.0)
    assert set(out.waiting) | {g.name for g, _ in out.started} == {g.name for g in gangs}
    for g in gangs:
        if g.name in out.waiting:
            fits = place(g, state)
            assert not isinstance(fits, Placement), (
                f"{g.name} ({g.tenant}) waits with room for it: {out.waiting[g.name]}"
            )


def test_a_borrower_is_not_refused_for_an_entitled_gang_that_cannot_start() -> None:
    # 3 nodes x 8 GPUs; a runs three 5-GPU gangs (3 GPUs free per node). b's 8-GPU pod is
    # within b's half of the cluster but fits no node; a's 1-GPU gang would borrow past a's
    # half. The old gate kept a's gang waiting for b with 9 GPUs free.
    state = ClusterState(cluster_preset("dgx-h100:3").compile())
    live = []
    for i in range(3):
        g = job(f"a-run{i}", 5, "a")
        result = place(g, state)
        assert isinstance(result, Placement)
        state.assign(result, 0.0)
        live.append(RunningGang(g, result, 0.0, math.inf))
    a_small, b_wide = job("a-small", 1, "a"), job("b-wide", 8, "b")
    out = SchedulingCycle(state, DrfPolicy()).run([a_small, b_wide], live, now_s=0.0)
    assert [g.name for g, _ in out.started] == ["a-small"]
    assert "b-wide" in out.waiting
