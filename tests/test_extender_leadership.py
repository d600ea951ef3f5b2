"""Leader election's gate in front of the backend (the Lease itself is exercised against the
real apiserver in tests/cluster)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from phalanx.extender.config import ConfigError, LeaderElectionConfig, parse_config
from phalanx.extender.leadership import LeaderElectedBackend, _TimedLeaseApi


class FakeInner:
    def __init__(self) -> None:
        self.planner: Any = object()
        self.binder: Any = object()
        self.rebuilt = 0
        self.started = False

    def ready(self) -> tuple[bool, str]:
        return True, "synced"

    def debug_extra(self) -> dict[str, Any]:
        return {"mode": "kubernetes"}

    def start(self) -> None:
        self.started = True

    def rebuild_plans(self) -> None:
        self.rebuilt += 1


def backend(lost: list[int]) -> tuple[LeaderElectedBackend, FakeInner]:
    inner = FakeInner()
    settings = LeaderElectionConfig(enabled=True, identity="replica-a", lease_namespace="ns")
    return LeaderElectedBackend(inner, None, settings, on_lost=lambda: lost.append(1)), inner


def test_a_standby_serves_nothing_and_is_not_ready():
    elected, _ = backend([])
    assert elected.planner is None
    ready, why = elected.ready()
    assert not ready and "standby" in why
    assert elected.debug_extra()["leader_election"] == {
        "identity": "replica-a",
        "lease": "ns/phalanx-extender",
        "leading": False,
    }


def test_taking_the_lease_rebuilds_the_plans_before_serving():
    elected, inner = backend([])
    elected._lead()
    assert inner.rebuilt == 1
    assert elected.planner is inner.planner
    assert elected.ready() == (True, "synced")


def test_losing_the_lease_stops_serving_at_once():
    lost: list[int] = []
    elected, _ = backend(lost)
    elected._lead()
    elected._lost()
    assert elected.planner is None and lost == [1]


class Hanging:
    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        assert kwargs["_request_timeout"] == 2.0
        raise TimeoutError("read timed out")

    def create_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        raise ApiException(status=409, reason="Conflict")


def test_lease_calls_time_out_as_api_errors_the_lock_handles():
    api = _TimedLeaseApi(Hanging(), 2.0)
    with pytest.raises(ApiException, match="TimeoutError"):
        api.read_namespaced_lease("phalanx-extender", "ns")
    with pytest.raises(ApiException) as err:
        api.create_namespaced_lease("ns", {})
    assert err.value.status == 409


def test_lease_timing_is_checked_with_the_settings():
    cfg = parse_config({"leaderElection": {"enabled": True}}, "serve.yaml").leader_election
    assert cfg.enabled and cfg.lease_duration_s > cfg.renew_deadline_s
    with pytest.raises(ConfigError, match="leaseDurationSeconds > renewDeadlineSeconds"):
        parse_config({"leaderElection": {"leaseDurationSeconds": 5, "renewDeadlineSeconds": 7}})
