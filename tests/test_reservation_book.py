"""The reservation book shared by the simulator and the extender: deadlines on time, restarts,
and the queue place of a gang whose reservation expired."""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.scheduler.reservations import ReservationBook
from phalanx.scheduler.state import ClusterState
from phalanx.simulator.config import SimulationConfig
from phalanx.topology.presets import cluster_preset

from tests.test_state_ledger import placement


def book() -> ReservationBook:
    return ReservationBook(ClusterState(cluster_preset("dgx-h100:4").compile()))


def test_due_names_each_passed_deadline_once_and_nothing_early():
    b = book()
    b.reserve(placement("a", (0, (0,), 1000)), now_s=0, ttl_s=10)
    b.reserve(placement("b", (1, (0,), 1000)), now_s=0, ttl_s=100)
    b.restart("a", 10.0)  # the same deadline pushed twice
    assert b.due(5) == [] and b.next_deadline() == 10
    assert b.due(10) == ["a"]
    assert b.due(1e9) == ["b"], "named once: the caller gives 'a' back or defers it"
    b.defer("a")
    assert b.due(1e9) == ["a"]


def test_a_restarted_deadline_replaces_the_old_one():
    b = book()
    b.reserve(placement("a", (0, (0,), 1000)), now_s=0, ttl_s=10)
    b.restart("a", 50.0)
    assert b.due(20) == [] and b.next_deadline() == 50
    b.state.commit("a")
    b.restart("a", 60.0)  # committed: no deadline any more
    assert b.due(1e9) == [] and b.next_deadline() is None


def test_an_expired_gang_queues_from_its_expiry():
    b = book()
    assert b.queue_time("g", 3.0) == 3.0
    b.requeue("g", 40.0)
    assert b.queue_time("g", 3.0) == 40.0
    b.forget("g")
    assert b.queue_time("g", 3.0) == 3.0


def test_the_simulator_puts_an_expired_gang_behind_the_gangs_that_waited():
    """Two gangs that each fill the one node: 'late' is reserved first, its pods bind too
    slowly (seed 0: the first draw passes the 5 s TTL) and the reservation expires at 5 s;
    'next', which waited meanwhile, is reserved then, before 'late' is planned again."""
    from tests.test_sim_golden import Job, by_name, cluster, simulate, workload

    trace = workload(Job("late", 0.0, 10.0, gpus=4, pods=2), Job("next", 1.0, 10.0, gpus=4, pods=2))
    config = SimulationConfig(
        seed=0, reserve_ttl_s=5.0, bind_delay_s=5.0, bind_delay_distribution="exponential"
    )
    runs = by_name(simulate(trace, cluster(1, 4), config))
    assert runs["late"].reservation_expiries == 1
    assert 5.0 <= runs["next"].first_start_s < runs["late"].first_start_s


ops = st.lists(
    st.tuples(
        # restarts and releases leave stale entries; few gangs, so that they pile up
        st.sampled_from(["reserve", "restart", "restart", "commit", "release", "defer", "due"]),
        st.integers(0, 2),
        st.integers(1, 40),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_dropping_stale_deadlines_changes_no_answer(sequence):
    """A book that drops its stale heap entries at every push answers as one that keeps them
    all, through reserves, restarts, commits, releases, deferrals and due times."""
    books = [book(), book()]
    keep_all = books[1]
    keep_all._drop_stale = lambda: None  # type: ignore[method-assign]
    now = 0.0
    for kind, gang, amount in sequence:
        key = f"g{gang}"
        answers = []
        heap = books[0]._deadlines
        before = len(heap)
        for b in books:
            with mock.patch("phalanx.scheduler.reservations.STALE_DEADLINES_KEPT", 0):
                held = b.state.holdings.get(key)
                if kind == "reserve" and held is None:
                    b.reserve(placement(key, (gang % 4, (gang // 4,), 1000)), now, amount)
                elif kind == "restart" and held is not None:
                    b.restart(key, now + amount)
                elif kind == "commit" and held is not None:
                    b.state.commit(key)
                elif kind == "release" and held is not None:
                    b.state.release(key)
                elif kind == "defer" and held is not None:
                    b.defer(key)
                elif kind == "due":
                    answers.append(b.due(now + amount))
                answers.append(b.next_deadline())
        assert answers[: len(answers) // 2] == answers[len(answers) // 2 :]
        if kind == "due":
            now += amount
        pushed = kind in ("reserve", "restart") and (
            books[0]._deadlines is not heap or len(heap) > before
        )
        if pushed:  # right after a push the stale entries are bounded
            assert len(books[0]._deadlines) <= 2 * len(books[0].state.holdings)
