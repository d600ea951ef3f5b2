"""Unit tests of the allocation ledger's phases; the random-sequence state machine lives in
test_state_machine.py."""

import pytest
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.scheduler.state import ClusterState, HoldingPhase, LedgerError
from phalanx.topology.compiled import CapacityError
from phalanx.topology.presets import cluster_preset


def placement(gang: str, *members: tuple[int, tuple[int, ...], int]) -> Placement:
    parts = tuple(
        MemberPlacement(f"{gang}-{i}", f"n{node}", node, gpus, milli, cpu_milli=1000, memory_mib=10)
        for i, (node, gpus, milli) in enumerate(members)
    )
    return Placement(gang, parts, "node", "node:n0", CostBreakdown())


@pytest.fixture
def state() -> ClusterState:
    return ClusterState(cluster_preset("dgx-h100:4").compile())


def test_reserve_commit_release_restores_state(state):
    before = state.compiled.mutable_state_bytes()
    state.reserve(placement("a", (0, (0, 1), 1000), (1, (2,), 500)), now_s=0, ttl_s=30)
    assert state.holdings["a"].phase is HoldingPhase.RESERVED
    state.commit("a", "a-0")
    assert state.holdings["a"].phase is HoldingPhase.RESERVED
    state.commit("a", "a-1")
    assert state.holdings["a"].phase is HoldingPhase.COMMITTED
    state.check_invariants()
    state.release("a")
    assert state.compiled.mutable_state_bytes() == before
    state.check_invariants()


def test_failed_reserve_changes_nothing(state):
    state.assign(placement("a", (0, (0,), 1000)), now_s=0)
    before = state.compiled.mutable_state_bytes()
    with pytest.raises(CapacityError):
        state.reserve(placement("b", (1, (0,), 1000), (0, (0,), 1000)), now_s=0, ttl_s=10)
    assert state.compiled.mutable_state_bytes() == before
    assert "b" not in state.holdings


def test_expire_releases_only_due_uncommitted_reservations(state):
    state.reserve(placement("a", (0, (0,), 1000)), now_s=0, ttl_s=10)
    state.reserve(placement("b", (1, (0,), 1000)), now_s=0, ttl_s=100)
    state.assign(placement("c", (2, (0,), 1000)), now_s=0)
    assert state.expire(now_s=50) == ["a"]
    assert set(state.holdings) == {"b", "c"}
    assert state.expire(now_s=1e9) == ["b"]
    state.check_invariants()


def test_fractional_shares_fill_one_gpu(state):
    state.assign(placement("a", (0, (3,), 600)), now_s=0)
    state.assign(placement("b", (0, (3,), 400)), now_s=0)
    with pytest.raises(CapacityError):
        state.assign(placement("c", (0, (3,), 1)), now_s=0)
    assert sorted(state.holders(0, 3)) == ["a", "b"]
    state.check_invariants()


def test_ledger_errors_name_the_gang(state):
    with pytest.raises(LedgerError, match="'ghost'"):
        state.release("ghost")
    state.assign(placement("a", (0, (0,), 1000)), now_s=0)
    with pytest.raises(LedgerError, match="already holds"):
        state.reserve(placement("a", (1, (0,), 1000)), now_s=0)


def test_copy_is_independent(state):
    clone = state.copy()
    clone.assign(placement("a", (0, (0,), 1000)), now_s=0)
    assert "a" not in state.holdings
    assert state.compiled.free_gpu_count[0] == 8


@pytest.mark.parametrize("bound", [(), ("a-0",), ("a-0", "a-2"), ("a-0", "a-1", "a-2")])
@pytest.mark.parametrize("gone", [("a-1",), ("a-1", "a-3"), ("a-3",)])
def test_shrink_leaves_what_release_and_reserving_the_rest_leave(bound, gone):
    """Giving back some members in place equals releasing the plan and reserving the rest
    again: the same free capacity and holding (reserved now, the same deadline, committed
    once every member left is bound), last in order; the old holding is left whole."""
    whole = placement("a", (0, (0, 1), 1000), (1, (2,), 500), (2, (0,), 1000), (3, (4,), 1000))
    shrunk = ClusterState(cluster_preset("dgx-h100:4").compile())
    again = ClusterState(cluster_preset("dgx-h100:4").compile())
    for st in (shrunk, again):
        st.reserve(whole, now_s=0, ttl_s=30)
        st.reserve(placement("b", (3, (0,), 1000)), now_s=0, ttl_s=30)
        for name in bound:
            st.commit("a", name)
    old = shrunk.holdings["a"]
    kept = shrunk.shrink("a", set(gone), now_s=5)
    assert old.placement == whole and shrunk.holdings["a"] is kept
    keep = tuple(m for m in whole.members if m.member not in gone)
    held_bound = set(bound) - set(gone)
    again.release("a")
    again.reserve(Placement("a", keep, whole.level, whole.domain, whole.cost), now_s=5, ttl_s=25)
    for name in held_bound:
        again.commit("a", name)
    redone = again.holdings["a"]
    assert shrunk.compiled.mutable_state_bytes() == again.compiled.mutable_state_bytes()
    assert list(shrunk.holdings) == list(again.holdings) == ["b", "a"]
    assert (kept.placement, kept.phase, kept.bound_members, kept.reserved_at_s) == (
        redone.placement,
        redone.phase,
        redone.bound_members,
        redone.reserved_at_s,
    )
    assert kept.expires_at_s == redone.expires_at_s
    shrunk.check_invariants()


def test_shrink_to_nothing_is_refused(state):
    state.reserve(placement("a", (0, (0,), 1000)), now_s=0, ttl_s=10)
    with pytest.raises(LedgerError, match="release it instead"):
        state.shrink("a", {"a-0"}, now_s=1)
    assert "a" in state.holdings
