"""The reservation book shared by the simulator and the extender: deadlines on time, restarts,
and the queue place of a gang whose reservation expired."""

from __future__ import annotations

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
