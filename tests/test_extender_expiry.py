"""Reservations expire on a timer, not on the next filter, and an expired gang goes to the back
of the queue (issue #12, defect 5)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
from phalanx.extender.app import ExtenderApp
from phalanx.extender.binding import RecordingBinder
from phalanx.extender.expiry_timer import ExpiryTimer
from phalanx.extender.runtime import DryRunBackend

from tests.fake_apiserver import kube_pod, phalanx_gang, serve_app, wait_until
from tests.test_extender_planner import member, planner


def test_tick_expires_a_due_reservation_with_no_filter_and_says_when_the_next_is_due():
    p, names, clock = planner(ttl=30)
    timer = ExpiryTimer(lambda: p)
    assert timer.tick() is None, "nothing reserved: nothing to wait for"
    for i in range(2):
        p.observe_pod(member("e", i, 2))
    p.filter(member("e", 0, 2), names)
    clock.now += 10
    assert timer.tick() == 20.0
    assert "ml/e" in p.state.holdings
    clock.now += 20
    assert timer.tick() is None
    assert p.state.holdings == {} and p.stats.reservation_expiries == 1
    assert int(p.compiled.free_gpu_count.sum()) == 32


def test_a_bind_restarts_the_clock_the_timer_waits_for():
    p, names, clock = planner(ttl=30)
    timer = ExpiryTimer(lambda: p)
    for i in range(2):
        p.observe_pod(member("b", i, 2))
    node = p.filter(member("b", 0, 2), names).passing[0]
    assert timer.tick() == 30.0
    clock.now += 25
    assert p.bind("ml", "b-0", "uid-ml-b-0", node, RecordingBinder()) == ""
    assert timer.tick() == 30.0, "the bind moved the deadline to now + TTL"
    clock.now += 31
    assert timer.tick() is None
    holding = p.state.holdings["ml/b"]
    assert [m.member for m in holding.placement.members] == ["b-0"], "the bound member stays"


def test_new_deadlines_wake_the_timer():
    p, names, _ = planner(ttl=30)
    timer = ExpiryTimer(lambda: p)
    timer.tick()  # attaches to the planner
    p.filter(kube_pod("s"), names)
    assert timer._poked, "a reservation's deadline pokes the sleeping timer"


def test_the_thread_expires_on_time_and_stops():
    p, names, _ = planner(ttl=0.3)
    p.clock = time.time
    timer = ExpiryTimer(lambda: p)
    timer.start()
    try:
        for i in range(2):
            p.observe_pod(member("t", i, 2))
        p.filter(member("t", 0, 2), names)
        assert "ml/t" in p.state.holdings
        wait_until(lambda: not p.state.holdings, timeout_s=3.0, what="the timer's expiry")
        assert p.stats.reservation_expiries == 1
    finally:
        timer.stop()
    assert timer._thread is None


def test_the_server_runs_the_timer_for_the_dry_run_backend():
    p, names, _ = planner(ttl=0.3)
    p.clock = time.time
    with serve_app(ExtenderApp(DryRunBackend(p))) as url, httpx.Client(base_url=url) as http:
        waiting = kube_pod("g-1", annotations=phalanx_gang("g", 2))
        assert (
            http.post("/filter", json={"Pod": waiting, "NodeNames": names}).json()["NodeNames"]
            == []
        )
        pod = kube_pod("g-0", annotations=phalanx_gang("g", 2))
        reply = http.post("/filter", json={"Pod": pod, "NodeNames": names}).json()
        assert len(reply["NodeNames"]) == 1
        wait_until(
            lambda: http.get("/debug/state").json()["reservations"] == [],
            timeout_s=3.0,
            what="the reservation given back with no further request",
        )
        assert http.get("/debug/state").json()["stats"]["reservation_expiries"] == 1


def test_an_expired_gang_goes_behind_the_gangs_that_waited():
    p, names, clock = planner(nodes=1, ttl=30)
    timer = ExpiryTimer(lambda: p)
    early = {"creationTimestamp": "2026-01-01T00:00:00Z"}
    late = {"creationTimestamp": "2026-01-01T00:05:00Z"}

    def pod(name: str, created: dict[str, str]) -> dict:
        pod = kube_pod(name, annotations=phalanx_gang(name.rsplit("-", 1)[0], 1))
        pod["metadata"].update(created)
        return pod

    clock.now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC).timestamp()
    first, second = pod("first-0", early), pod("second-0", late)
    assert p.filter(first, names).passing == names, "the only node, reserved for 'first'"
    assert p.filter(second, names).passing == [], "'second' waits for it"
    clock.now += 31
    timer.tick()
    assert p.state.holdings == {}
    # kube-scheduler retries 'first' before 'second': without the requeue the older gang would
    # take the node again at once, ahead of the gang that waited
    again = p.filter(first, names)
    assert again.passing == []
    assert "ml/second" in p.state.holdings, "the gang that waited is planned first"
    assert p.filter(second, names).passing == names


def test_a_partly_bound_gang_keeps_its_queue_place():
    p, names, clock = planner(ttl=30)
    for i in range(2):
        p.observe_pod(member("k", i, 2))
    node = p.filter(member("k", 0, 2), names).passing[0]
    assert p.bind("ml", "k-0", "uid-ml-k-0", node, RecordingBinder()) == ""
    clock.now += 31
    ExpiryTimer(lambda: p).tick()
    assert p.book.queue_time("ml/k", 5.0) == 5.0, "its submission time still stands"


def test_only_a_deadline_before_its_wake_up_wakes_the_sleeping_timer():
    p, names, clock = planner(ttl=30)
    timer = ExpiryTimer(lambda: p)
    timer.tick()
    timer._asleep_until_s = clock.now + 10
    p.filter(kube_pod("s-0"), names)
    assert not timer._poked, "the thread wakes before the new deadline anyway"
    timer._asleep_until_s = clock.now + 60
    p.filter(kube_pod("s-1"), names)
    assert timer._poked, "the earliest deadline now comes before the thread would wake"
