"""Random sequences of place/reserve/commit/shrink/release/expire over random clusters, with the
ledger's invariants checked after every step: no GPU over-allocated (whole or milli), node cpu
and memory never exceeded, ledger and compiled arrays in agreement, and every reservation
either wholly taken or leaving the state byte-for-byte unchanged."""

import math

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, GangSpecError, MemberRequest
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.scheduler.state import ClusterState, HoldingPhase, LedgerError
from phalanx.topology.compiled import CapacityError
from phalanx.topology.model import MILLI_PER_GPU
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import assert_valid_placement
from tests.topology_strategies import clusters

TTLS_S = (None, 1.0, 5.0, 30.0)
"""None: assign (reserve and commit at once)."""


def snapshot(state: ClusterState) -> tuple[bytes, dict]:
    holdings = {
        g: (h.phase, h.expires_at_s, frozenset(h.bound_members)) for g, h in state.holdings.items()
    }
    return state.compiled.mutable_state_bytes(), holdings


@st.composite
def requests(draw):
    kind = draw(st.sampled_from(["whole", "whole", "fractional", "cpu"]))
    return MemberRequest(
        gpus=draw(st.integers(1, 8)) if kind == "whole" else 0,
        gpu_milli=draw(st.sampled_from([100, 250, 500, 999])) if kind == "fractional" else 0,
        cpu_milli=draw(st.sampled_from([0, 2000, 24_000])),
        memory_mib=draw(st.sampled_from([0, 4096])),
    )


class LedgerMachine(RuleBasedStateMachine):
    @initialize(cluster=clusters(max_nodes=8))
    def build(self, cluster):
        self.state = ClusterState(cluster.compile())
        self.now_s = 0.0
        self.serial = 0

    def _name(self) -> str:
        self.serial += 1
        return f"g{self.serial}"

    @rule(data=st.data())
    def place_and_take(self, data):
        levels = self.state.compiled.level_names
        gang = Gang.uniform(
            self._name(),
            data.draw(st.integers(1, 5)),
            data.draw(requests()),
            required_level=data.draw(st.none() | st.sampled_from(levels)),
            nvlink_group=data.draw(st.sampled_from([0, 0, 2])),
        )
        before = snapshot(self.state)
        try:
            result = place(gang, self.state)
        except GangSpecError:
            assert snapshot(self.state) == before
            return
        assert snapshot(self.state) == before, "place() mutated the state"
        if not isinstance(result, Placement):
            assert result.reason
            return
        assert_valid_placement(gang, result, self.state)
        ttl = data.draw(st.sampled_from(TTLS_S))
        if ttl is None:
            self.state.assign(result, self.now_s)
        else:
            self.state.reserve(result, self.now_s, ttl)
        assert self.state.holdings[gang.name].placement == result

    @rule(data=st.data())
    def reserve_arbitrary(self, data):
        """A hand-made placement that may collide with holdings or exceed a node: taken whole
        or not at all."""
        c = self.state.compiled
        members = []
        for i in range(data.draw(st.integers(1, 3))):
            node = data.draw(st.integers(0, c.n_nodes - 1))
            count = int(c.gpu_count[node])
            gpu_index = st.integers(0, max(count - 1, 0))
            gpus = data.draw(st.lists(gpu_index, max_size=min(count, 3), unique=True))
            milli = data.draw(st.sampled_from([MILLI_PER_GPU, 300, 700]))
            members.append(
                MemberPlacement(
                    f"m{i}",
                    c.node_names[node],
                    node,
                    tuple(gpus),
                    milli,
                    cpu_milli=data.draw(st.sampled_from([0, 1000, 10**6])),
                    memory_mib=data.draw(st.sampled_from([0, 1024])),
                )
            )
        placement = Placement(self._name(), tuple(members), "node", "", CostBreakdown())
        before = snapshot(self.state)
        try:
            self.state.reserve(placement, self.now_s, data.draw(st.sampled_from([1.0, 10.0])))
        except (CapacityError, LedgerError):
            assert snapshot(self.state) == before, "a failed reserve changed the state"
        else:
            assert placement.gang in self.state.holdings

    @precondition(lambda self: self.state.holdings)
    @rule(data=st.data())
    def reserve_again_is_refused(self, data):
        gang = data.draw(st.sampled_from(sorted(self.state.holdings)))
        before = snapshot(self.state)
        with pytest.raises(LedgerError, match="already holds"):
            self.state.reserve(self.state.holdings[gang].placement, self.now_s, 1.0)
        assert snapshot(self.state) == before

    @precondition(lambda self: self.state.holdings)
    @rule(data=st.data())
    def commit(self, data):
        gang = data.draw(st.sampled_from(sorted(self.state.holdings)))
        holding = self.state.holdings[gang]
        names = [m.member for m in holding.placement.members]
        member = data.draw(st.none() | st.sampled_from(names))
        before = self.state.compiled.mutable_state_bytes()
        self.state.commit(gang, member)
        assert self.state.compiled.mutable_state_bytes() == before
        if member is None or holding.bound_members == set(names):
            assert holding.phase is HoldingPhase.COMMITTED
            assert holding.expires_at_s == math.inf

    @precondition(lambda self: self.state.holdings)
    @rule(data=st.data())
    def release(self, data):
        gang = data.draw(st.sampled_from(sorted(self.state.holdings)))
        self.state.release(gang)
        assert gang not in self.state.holdings

    @precondition(
        lambda self: any(len(h.placement.members) > 1 for h in self.state.holdings.values())
    )
    @rule(data=st.data())
    def shrink(self, data):
        """Some members leave a held plan: the same free capacity as releasing it and
        reserving the rest again (checked on a copy), the rest still held."""
        several = sorted(g for g, h in self.state.holdings.items() if len(h.placement.members) > 1)
        gang = data.draw(st.sampled_from(several))
        holding = self.state.holdings[gang]
        names = [m.member for m in holding.placement.members]
        leaving = set(
            data.draw(
                st.lists(st.sampled_from(names), min_size=1, max_size=len(names) - 1, unique=True)
            )
        )
        again = self.state.copy()
        kept = tuple(m for m in holding.placement.members if m.member not in leaving)
        again.release(gang)
        again.reserve(Placement(gang, kept, "node", "", CostBreakdown()), self.now_s, 1.0)
        self.state.shrink(gang, leaving, self.now_s)
        assert self.state.compiled.mutable_state_bytes() == again.compiled.mutable_state_bytes()
        assert [m.member for m in self.state.holdings[gang].placement.members] == [
            m.member for m in kept
        ]

    @rule(data=st.data())
    def take_and_give_back_restores_bytes(self, data):
        gang = Gang.uniform(self._name(), data.draw(st.integers(1, 4)), data.draw(requests()))
        try:
            result = place(gang, self.state)
        except GangSpecError:
            return
        if not isinstance(result, Placement):
            return
        before = snapshot(self.state)
        self.state.reserve(result, self.now_s, 5.0)
        self.state.release(gang.name)
        assert snapshot(self.state) == before

    @rule()
    def release_unknown_is_refused(self):
        before = snapshot(self.state)
        with pytest.raises(LedgerError):
            self.state.release("nobody")
        assert snapshot(self.state) == before

    @rule(dt_s=st.floats(0.0, 20.0))
    def advance_and_expire(self, dt_s):
        self.now_s += dt_s
        due = {g for g, h in self.state.holdings.items() if h.expires_at_s <= self.now_s}
        assert set(self.state.expire(self.now_s)) == due
        assert all(h.expires_at_s > self.now_s for h in self.state.holdings.values())

    @invariant()
    def ledger_matches_arrays(self):
        if not hasattr(self, "state"):
            return
        self.state.check_invariants()
        c = self.state.compiled
        assert (c.gpu_used_milli <= MILLI_PER_GPU).all()
        assert (c.cpu_free_milli >= 0).all() and (c.memory_free_mib >= 0).all()
        for h in self.state.holdings.values():
            committed = h.phase is HoldingPhase.COMMITTED
            assert committed == (h.expires_at_s == math.inf), "only commits end the TTL"


LedgerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerMachine = LedgerMachine.TestCase


def test_a_nan_ttl_is_refused():
    """NaN compares false with every time, so such a reservation would never expire."""
    state = ClusterState(cluster_preset("dgx-h100:1").compile())
    member = MemberPlacement("a-0", "h100-00000", 0, (0,), MILLI_PER_GPU)
    placement = Placement("a", (member,), "node", "node:h100-00000", CostBreakdown())
    before = snapshot(state)
    with pytest.raises(LedgerError, match="must be positive"):
        state.reserve(placement, 0.0, math.nan)
    assert snapshot(state) == before
