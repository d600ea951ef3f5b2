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
