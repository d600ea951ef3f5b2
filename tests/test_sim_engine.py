"""Engine internals: the placement memo changes nothing but speed; events keep their order."""

from __future__ import annotations

import itertools

import pytest
from phalanx.scheduler.engine import place
from phalanx.simulator.clusters import resolve_cluster
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.engine import Simulation
from phalanx.simulator.events import EventKind, EventQueue
from phalanx.simulator.placement_memo import PlacementMemo
from phalanx.simulator.traces.synthetic import generate, parse_spec


def starts(result) -> list[tuple[str, float, float]]:
    return [(r.job.name, r.first_start_s, r.end_s) for r in result.runs]


@pytest.mark.parametrize("policy", ["fifo", "backfill", "sjf"])
def test_memo_gives_the_same_run_as_searching_every_time(policy, monkeypatch):
    # A queue of like gangs on a small cluster: most placements fail, and are memoised.
    workload = generate(parse_spec("jobs=100,rate_per_h=400,gpus=1:4/2:1/8:2/16:1,seed=3"))
    cluster = resolve_cluster("dgx-h100:2")
    config = SimulationConfig(policy=policy, oracle_estimates=True)
    memoised = Simulation(workload, cluster, config).run()
    assert memoised.cycles > 0

    def search_always(self, gang, state):
        return place(gang, state, solver=self.solver, scorer=self.scorer)

    monkeypatch.setattr(PlacementMemo, "place", search_always)
    searched = Simulation(workload, cluster, config).run()
    assert starts(memoised) == starts(searched)
    assert max(r.first_start_s - r.job.submit_time_s for r in memoised.runs) > 0


def test_same_time_events_free_resources_before_arrivals_and_ticks():
    queue = EventQueue()
    queue.push(5.0, EventKind.SCHEDULE_TICK)
    queue.push(5.0, EventKind.ARRIVAL, job=1)
    queue.push(5.0, EventKind.COMPLETION, job=2)
    queue.push(5.0, EventKind.BIND, job=3)
    queue.push(5.0, EventKind.RESERVATION_EXPIRY, job=4)
    queue.push(4.0, EventKind.SCHEDULE_TICK)
    kinds = [queue.pop().kind for _ in range(len(queue))]
    assert kinds == [
        EventKind.SCHEDULE_TICK,
        EventKind.COMPLETION,
        EventKind.RESERVATION_EXPIRY,
        EventKind.BIND,
        EventKind.ARRIVAL,
        EventKind.SCHEDULE_TICK,
    ]


def test_runs_are_reproducible_for_a_seed():
    workload = generate(parse_spec("jobs=120,rate_per_h=300,seed=9"))
    cluster = resolve_cluster("dgx-h100:2")
    config = SimulationConfig(scorer="fgd", seed=4)
    first = Simulation(workload, cluster, config).run()
    again = Simulation(workload, cluster, config).run()
    assert starts(first) == starts(again)


def test_time_series_stays_bounded_on_a_regular_grid():
    # Arrivals over ~20 minutes, but jobs run for days: the series is thinned, not grown.
    workload = generate(parse_spec("jobs=60,rate_per_h=180,duration_median_s=400000,seed=1"))
    result = Simulation(workload, resolve_cluster("dgx-h100:1"), SimulationConfig()).run()
    times = [row[0] for row in result.timeline.samples]
    assert len(times) < result.timeline.max_samples
    steps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
    assert len(steps) == 1
    assert times[-1] <= result.timeline.last_s
